"""Graded, hidden from students (removed from the handout; run by the autograder only):
the same TODOs on inputs the public tests do not show."""

import math

import numpy as np
import pytest
import torch

from graded.helpers import expect


@pytest.mark.points(3, todo="bpe-merge", visibility="after_published")
def test_hidden_training_on_other_text_round_trips():
    """a tokenizer trained on other text round-trips and compresses it"""
    from gpt.bpe import BPETokenizer
    text = "low lower lowest newer newest wider widest " * 10
    tok = BPETokenizer.train(text, 256 + 20, special_tokens=())
    ids = tok.encode(text)
    expect(tok.decode(ids) == text, "round trip", "the text", "something else")
    expect(len(ids) < len(text.encode()) / 2.5, "compression", f"< {len(text.encode()) / 2.5:.0f} tokens", len(ids))
    # the first merge is the most frequent adjacent byte pair (ties: smallest bytes), counted here directly
    import regex
    from collections import Counter
    from gpt.bpe import GPT2_SPLIT_PATTERN
    pairs = Counter(p for w in regex.findall(GPT2_SPLIT_PATTERN, text) for p in zip(w.encode(), w.encode()[1:]))
    want = min(pairs, key=lambda p: (-pairs[p], bytes([p[0]]), bytes([p[1]])))
    expect(tok.merges.get(want) == 256, "the first merge (id 256)", want,
           next((p for p, i in tok.merges.items() if i == 256), None))


@pytest.mark.points(4, todo="attention-forward", visibility="after_published")
def test_hidden_attention_with_one_head_and_many_heads():
    """attention matches the fused kernel for 1 head and for 8 heads"""
    import torch.nn.functional as F
    from gpt.model import CausalSelfAttention, GPTConfig
    for n_head in (1, 8):
        torch.manual_seed(n_head)
        attn = CausalSelfAttention(GPTConfig(10, 12, 1, n_head, 32, dropout=0.0)).eval()
        x = torch.randn(2, 12, 32)
        q, k, v = attn.c_attn(x).split(32, dim=2)
        q, k, v = (t.view(2, 12, n_head, 32 // n_head).transpose(1, 2) for t in (q, k, v))
        want = attn.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 12, 32))
        err = (attn(x) - want).abs().max().item()
        expect(err < 1e-5, f"attention with {n_head} heads", "< 1e-5", f"{err:.3g}")


@pytest.mark.points(3, todo="perplexity", visibility="after_published")
def test_hidden_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    """a model that predicts uniformly has perplexity exactly |V|"""
    from gpt.trainer import evaluate

    class Uniform(torch.nn.Module):
        def forward(self, idx, targets=None, mask=None):
            return torch.zeros(*idx.shape, 37), None
    res = evaluate(Uniform(), np.arange(101) % 37, block_size=7, batch_size=3)
    expect(abs(res.ppl - 37) < 1e-6 * 37 and res.tokens == 100, "perplexity and tokens", (37, 100), (res.ppl, res.tokens))
    expect(abs(res.loss - math.log(37)) < 1e-6, "loss", math.log(37), res.loss)
