"""Graded, hidden from students (advanced level; run by the autograder only): the BPE training loop, AdamW,
the schedule and clipping on inputs the public tests do not show."""

import math
from collections import Counter

import pytest
import regex
import torch

from conftest import GPT2_PATTERN_TIKTOKEN as GPT2_SPLIT_PATTERN   # the grader never imports gpt.bpe
from graded.helpers import expect
from graded.test_advanced_training_graded import (compare_adamw, compare_clip, probe_adamw, probe_bpe_train, probe_clip,
                                                  probe_lr, torch_clip)


def reference_bpe(text, n_merges):
    """A plain BPE trainer: recount every pair each step; most frequent first, ties to the smallest bytes."""
    words = Counter(tuple(w.encode("utf-8")) for w in regex.findall(GPT2_SPLIT_PATTERN, text))
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for k in range(n_merges):
        counts = Counter()
        for w, f in words.items():
            for p in zip(w, w[1:]):
                counts[p] += f
        if not counts:
            break
        a, b = min(counts, key=lambda p: (-counts[p], vocab[p[0]], vocab[p[1]]))
        new = 256 + k
        merges.append([a, b, new])
        vocab[new] = vocab[a] + vocab[b]
        merged = Counter()
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == (a, b):
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += f
        words = merged
    return merges


@pytest.mark.points(3, todo="bpe-train", visibility="after_published")
def test_hidden_bpe_train_matches_a_plain_trainer(student):
    """on text with repeats, ties and multi-byte characters: the merges of a plain reference trainer"""
    text = ("naïve café, naïve cafés; the théâtre! aaaa aaaaa baaab 12 123 1234 " * 3
            + "zz yy zz yy xx ww ww xx über über übel")
    want = reference_bpe(text, 45)
    got = student.call(probe_bpe_train, text, 256 + 45)
    first_bad = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    expect(got == want, f"the {len(want)} merges learned from a text of {len(text)} characters",
           f"merge {first_bad}: {want[first_bad] if first_bad < len(want) else '(none)'}",
           f"merge {first_bad}: {got[first_bad] if first_bad < len(got) else '(none)'}")


@pytest.mark.points(3, todo="adamw-step", visibility="after_published")
def test_hidden_adamw_other_hyperparameters(student):
    """three groups with their own lr, betas, eps and weight decay; shapes 1-3 dimensions; five steps"""
    g = torch.Generator().manual_seed(7)
    shapes = [(3, 2, 4), (5,), (2, 6), (1,)]
    init = [torch.randn(*s, generator=g) for s in shapes]
    grads = [[torch.randn(*s, generator=g) * (0.01 if i == 1 else 3.0) for i, s in enumerate(shapes)] for _ in range(5)]
    hyper = dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6)
    groups = [([0, 3], 0.5), ([1], 0.0), ([2], 0.05)]
    got = student.call(probe_adamw, init, groups, grads, hyper)
    compare_adamw(got["after"], init, groups, grads, hyper, "AdamW (lr 3e-3, betas (0.8, 0.99), eps 1e-6)")


@pytest.mark.points(2, todo="lr-schedule", visibility="after_published")
def test_hidden_lr_other_settings(student):
    """another warm-up length, floor and horizon, against the formula"""
    cfg = dict(learning_rate=3e-3, warmup_iters=7, max_iters=57, min_lr_ratio=0.2)
    its = [0, 3, 6, 7, 20, 32, 45, 56, 57, 58, 1000]
    floor = 3e-3 * 0.2

    def want(it):
        if it < 7:
            return 3e-3 * (it + 1) / 7
        return floor + 0.5 * (3e-3 - floor) * (1 + math.cos(math.pi * min(1.0, (it - 7) / 50)))
    got = student.call(probe_lr, cfg, its)
    for it, value in zip(its, got):
        expect(abs(float(value) - want(it)) < 1e-12, f"lr_at({it}) with {cfg}", want(it), value)
    got = student.call(probe_lr, dict(learning_rate=1.0, warmup_iters=5, max_iters=6, min_lr_ratio=0.0), [4, 5, 6, 9])
    expect([float(v) for v in got] == [1.0, 1.0, 0.0, 0.0],
           "lr_at(4, 5, 6, 9) with warmup_iters 5, max_iters 6, floor 0 (a cosine of one step)", [1.0, 1.0, 0.0, 0.0],
           got)


@pytest.mark.points(2, todo="clip-grad-norm", visibility="after_published")
def test_hidden_clip_many_gradients(student):
    """many gradients of several shapes (some zero, some without gradient), max_norm 0.3"""
    g = torch.Generator().manual_seed(3)
    grads = [torch.randn(2, 3, 4, generator=g), torch.zeros(7), None, torch.randn(1, generator=g) * 100,
             torch.randn(9, 2, generator=g) * 1e-3, None]
    got = student.call(probe_clip, grads, 0.3)
    compare_clip(got, torch_clip(grads, 0.3), grads, "clip_grad_norm(params, 0.3)")
