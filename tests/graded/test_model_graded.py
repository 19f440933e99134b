"""Graded: causal self-attention (gpt/model.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from graded.helpers import FIXTURES, expect


def config(**kw):
    from gpt.model import GPTConfig
    return GPTConfig(**{**dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0), **kw})


@pytest.mark.points(5, todo="attention-mask")
def test_causal_mask_is_lower_triangular():
    """causal_mask has shape (1, 1, block_size, block_size) with ones on and below the diagonal"""
    from gpt.model import CausalSelfAttention
    attn = CausalSelfAttention(config(block_size=6))
    m = attn.causal_mask
    expect(tuple(m.shape) == (1, 1, 6, 6), "causal_mask.shape", (1, 1, 6, 6), tuple(m.shape))
    want = torch.tril(torch.ones(6, 6))
    expect(torch.equal((m[0, 0] != 0).float(), want), "causal_mask[0, 0] (1 = may attend)", want, m[0, 0],
           "row t (a query) may see columns 0..t (keys up to itself)")


def attention_reference(attn, x):
    """The same computation through PyTorch's own fused attention."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, attn.n_head, hs).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))


@pytest.mark.points(5, todo="attention-forward")
def test_attention_matches_pytorch_scaled_dot_product_attention():
    """manual attention equals torch.nn.functional.scaled_dot_product_attention (causal)"""
    from gpt.model import CausalSelfAttention
    torch.manual_seed(0)
    attn = CausalSelfAttention(config()).eval()
    for T in (1, 5, 16):
        x = torch.randn(3, T, 32) * 2
        with torch.no_grad():
            got, want = attn(x), attention_reference(attn, x)
        err = (got - want).abs().max().item()
        expect(err < 1e-5, f"max |ours - reference| for T={T}", "< 1e-5", f"{err:.3g}",
               "scores = q @ k^T / sqrt(head size); mask the future with -inf; softmax over the last dim")


@pytest.mark.points(5, todo="attention-forward")
def test_kv_cache_generation_equals_recomputation():
    """generation with the KV cache (queries at positions past..past+T-1) gives the tokens of recomputation"""
    from gpt.model import GPT
    torch.manual_seed(0)
    model = GPT(config())
    with torch.no_grad():   # larger weights than the init, so that attention decides the next token
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    for prompt_len in (1, 3, 9):
        prompt = torch.randint(0, 50, (4, prompt_len))
        got = model.generate(prompt, 12, use_cache=True)
        want = model.generate(prompt, 12, use_cache=False)
        expect(torch.equal(got, want), f"greedy tokens with use_cache=True (prompt of {prompt_len})",
               want.tolist(), got.tolist(),
               "with a cache, the T new queries are rows past..past+T-1 of the mask, over all S keys")


@pytest.mark.points(5, todo="attention-forward")
def test_gpt2_logits_match_transformers():
    """our GPT, loaded with transformers' GPT-2 weights, gives transformers' logits"""
    from gpt.model import GPT, GPTConfig
    ref = torch.load(FIXTURES / "gpt2_tiny.pt", weights_only=True)
    model = GPT.from_hf_gpt2(ref["state_dict"], GPTConfig(**ref["config"])).eval()
    with torch.no_grad():
        logits, _ = model(ref["idx"])
    err = (logits - ref["logits"]).abs().max().item()
    expect(err < 1e-4, "max |our logits - transformers' logits|", "< 1e-4", f"{err:.3g}")
