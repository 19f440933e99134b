"""Graded, hidden from students (removed from the handout; run by the autograder only):
the same TODOs on inputs the public tests do not show."""

import math
from collections import Counter

import numpy as np
import pytest
import regex
import torch

from conftest import GPT2_PATTERN_TIKTOKEN as GPT2_SPLIT_PATTERN   # the grader never imports gpt.bpe
from graded import reference
from graded.helpers import expect


def probe_train_and_encode(text, vocab_size):
    from gpt.bpe import BPETokenizer
    tok = BPETokenizer.train(text, vocab_size, special_tokens=())
    ids = tok.encode(text)
    return {"ids": ids, "decoded": tok.decode(ids), "merges": dict(tok.merges)}


def probe_attention(cfg, weights, x):
    from gpt.model import CausalSelfAttention, GPTConfig
    attn = CausalSelfAttention(GPTConfig(**cfg)).eval()
    attn.load_state_dict(weights, strict=False)
    with torch.no_grad():
        return attn(x)


class Uniform(torch.nn.Module):
    def forward(self, idx, targets=None, mask=None):
        return torch.zeros(*idx.shape, 37), None


def probe_uniform_perplexity(ids):
    from gpt.trainer import evaluate
    res = evaluate(Uniform(), ids.numpy(), block_size=7, batch_size=3)
    return {"ppl": res.ppl, "tokens": res.tokens, "loss": res.loss}


@pytest.mark.points(3, todo="bpe-merge", visibility="after_published")
def test_hidden_training_on_other_text_round_trips(student):
    """a tokenizer trained on other text round-trips and compresses it"""
    text = "low lower lowest newer newest wider widest " * 10
    got = student.call(probe_train_and_encode, text, 256 + 20)
    expect(got["decoded"] == text, "round trip", "the text", "something else")
    expect(len(got["ids"]) < len(text.encode()) / 2.5, "compression", f"< {len(text.encode()) / 2.5:.0f} tokens",
           len(got["ids"]))
    # the first merge is the most frequent adjacent byte pair (ties: smallest bytes), counted here directly
    pairs = Counter(p for w in regex.findall(GPT2_SPLIT_PATTERN, text) for p in zip(w.encode(), w.encode()[1:]))
    want = min(pairs, key=lambda p: (-pairs[p], bytes([p[0]]), bytes([p[1]])))
    expect(got["merges"].get(want) == 256, "the first merge (id 256)", want,
           next((p for p, i in got["merges"].items() if i == 256), None))


@pytest.mark.points(4, todo="attention-forward", visibility="after_published")
def test_hidden_attention_with_one_head_and_many_heads(student):
    """attention matches the fused kernel for 1 head and for 8 heads"""
    for n_head in (1, 8):
        g = torch.Generator().manual_seed(n_head)
        weights = {"c_attn.weight": torch.randn(96, 32, generator=g) * 0.3, "c_attn.bias": torch.randn(96, generator=g),
                   "c_proj.weight": torch.randn(32, 32, generator=g) * 0.3, "c_proj.bias": torch.randn(32, generator=g)}
        x = torch.randn(2, 12, 32, generator=g)
        cfg = dict(vocab_size=10, block_size=12, n_layer=1, n_head=n_head, n_embd=32, dropout=0.0)
        got = student.call(probe_attention, cfg, weights, x)
        want = reference.attention(x, weights, "", n_head)
        err = (got - want).abs().max().item() if got.shape == want.shape else float("inf")
        expect(err < 1e-5, f"attention with {n_head} heads", "< 1e-5", f"{err:.3g}")


@pytest.mark.points(3, todo="perplexity", visibility="after_published")
def test_hidden_perplexity_of_a_uniform_model_is_the_vocabulary_size(student):
    """a model that predicts uniformly has perplexity exactly |V|"""
    res = student.call(probe_uniform_perplexity, np.arange(101) % 37, helpers=[Uniform])
    expect(abs(res["ppl"] - 37) < 1e-6 * 37 and res["tokens"] == 100, "perplexity and tokens", (37, 100),
           (res["ppl"], res["tokens"]))
    expect(abs(res["loss"] - math.log(37)) < 1e-6, "loss", math.log(37), res["loss"])


def probe_top_p(logits, p):
    from gpt.sampling import filter_top_p
    return filter_top_p(logits.clone(), p)


@pytest.mark.points(3, todo="sample-top-p", visibility="after_published")
def test_hidden_top_p_on_a_3d_batch_with_ties_and_p_of_one(student):
    """top-p on (batch, time, vocab) logits: a tie at the boundary, p = 1 keeps everything"""
    logits = torch.tensor([[[2.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]).repeat(2, 1, 1)   # (2, 2, 4)
    out = student.call(probe_top_p, logits, 1.0)
    expect(isinstance(out, torch.Tensor) and out.shape == logits.shape and bool(torch.isfinite(out).all()),
           "top_p=1.0 keeps every token of every row of a (2, 2, 4) batch", "all finite", "some removed",
           "filter along the last dimension only, and keep a token while the mass above it is < p")
    probs = torch.softmax(logits, -1)
    p = (probs[0, 0, 0] + probs[0, 0, 1]).item() + 1e-4     # just past two tokens: one of the tied pair is needed
    out = student.call(probe_top_p, logits, p)
    kept_first = torch.isfinite(out[:, 0]).sum(-1).tolist()
    kept_uniform = torch.isfinite(out[:, 1]).sum(-1).tolist()
    expect(kept_first == [3, 3], "tokens kept in the first row of each sequence (probabilities .53, .20, .20, .07)", [3, 3],
           kept_first, "the mass above the third token is just below p, so it is kept")
    expect(kept_uniform == [3, 3], "tokens kept of four equally likely ones", [3, 3], kept_uniform,
           "decide per row: rows of a 3-d batch are independent")
