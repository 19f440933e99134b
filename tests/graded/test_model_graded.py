"""Graded: causal self-attention (gpt/model.py).

Each `probe_*` function runs in a separate process on your code (see sandbox.py); the references
(PyTorch's fused attention, transformers' GPT-2 logits, greedy decoding by recomputation) are
computed here from the same weights."""

import pytest
import torch

from graded import reference
from graded.helpers import FIXTURES, expect

CFG = dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


def probe_mask(cfg):
    from gpt.model import CausalSelfAttention, GPTConfig
    return CausalSelfAttention(GPTConfig(**cfg)).causal_mask


def probe_attention(cfg, weights, xs):
    from gpt.model import CausalSelfAttention, GPTConfig
    attn = CausalSelfAttention(GPTConfig(**cfg)).eval()
    attn.load_state_dict(weights, strict=False)
    with torch.no_grad():
        return [attn(x) for x in xs]


def probe_attention_train_mode(cfg, weights, x, seed):
    from gpt.model import CausalSelfAttention, GPTConfig
    attn = CausalSelfAttention(GPTConfig(**cfg))
    attn.load_state_dict(weights, strict=False)
    attn.resid_dropout.p = 0.0          # only the dropout on the attention weights is left
    torch.manual_seed(seed)
    with torch.no_grad():
        return {"eval": attn.eval()(x), "train": [attn.train()(x) for _ in range(3)]}


def probe_generate(cfg, state_dict, prompts, new_tokens):
    from gpt.model import GPT, GPTConfig
    model = GPT(GPTConfig(**cfg))
    model.load_state_dict(state_dict)
    return [model.generate(p, new_tokens, use_cache=True) for p in prompts]


def probe_hf_logits(hf_state_dict, cfg, idx):
    from gpt.model import GPT, GPTConfig
    model = GPT.from_hf_gpt2(hf_state_dict, GPTConfig(**cfg)).eval()
    with torch.no_grad():
        return model(idx)[0]


def attention_weights(n_embd: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"c_attn.weight": torch.randn(3 * n_embd, n_embd, generator=g) * 0.3,
            "c_attn.bias": torch.randn(3 * n_embd, generator=g) * 0.1,
            "c_proj.weight": torch.randn(n_embd, n_embd, generator=g) * 0.3,
            "c_proj.bias": torch.randn(n_embd, generator=g) * 0.1}


@pytest.mark.points(5, todo="attention-mask")
def test_causal_mask_is_lower_triangular(student):
    """causal_mask has shape (1, 1, block_size, block_size) with ones on and below the diagonal"""
    m = student.call(probe_mask, {**CFG, "block_size": 6})
    expect(isinstance(m, torch.Tensor) and tuple(m.shape) == (1, 1, 6, 6), "causal_mask.shape", (1, 1, 6, 6),
           tuple(m.shape) if isinstance(m, torch.Tensor) else m)
    want = torch.tril(torch.ones(6, 6))
    expect(torch.equal((m[0, 0] != 0).float(), want), "causal_mask[0, 0] (1 = may attend)", want, m[0, 0],
           "row t (a query) may see columns 0..t (keys up to itself)")


@pytest.mark.points(5, todo="attention-forward")
def test_attention_matches_pytorch_scaled_dot_product_attention(student):
    """manual attention equals torch.nn.functional.scaled_dot_product_attention (causal)"""
    weights = attention_weights(32, seed=0)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(3, T, 32, generator=g) * 2 for T in (1, 5, 16)]
    got = student.call(probe_attention, CFG, weights, xs)
    for x, y in zip(xs, got):
        want = reference.attention(x, weights, "", CFG["n_head"])
        err = (y - want).abs().max().item() if y.shape == want.shape else float("inf")
        expect(err < 1e-5, f"max |ours - reference| for T={x.size(1)}", "< 1e-5", f"{err:.3g}",
               "scores = q @ k^T / sqrt(head size); mask the future with -inf; softmax over the last dim")


@pytest.mark.points(3, todo="attention-forward")
def test_attention_applies_dropout_to_the_weights_in_training(student):
    """in training mode (dropout 0.5) the attention weights go through self.attn_dropout"""
    weights = attention_weights(32, seed=3)
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(4))
    got = student.call(probe_attention_train_mode, {**CFG, "dropout": 0.5}, weights, x, 0)
    want = reference.attention(x, weights, "", CFG["n_head"])
    err = (got["eval"] - want).abs().max().item()
    expect(err < 1e-5, "eval mode: max |ours - reference|", "< 1e-5", f"{err:.3g}", "eval mode has no dropout")
    changed = min((t - got["eval"]).abs().max().item() for t in got["train"])
    expect(changed > 1e-3, "training mode with dropout 0.5 (and no residual dropout)", "an output that differs "
           "from eval mode", f"the same output (max difference {changed:.3g})",
           "apply self.attn_dropout to the attention weights after the softmax, before multiplying by v")


@pytest.mark.points(5, todo="attention-forward")
def test_kv_cache_generation_equals_recomputation(student):
    """generation with the KV cache (queries at positions past..past+T-1) gives the tokens of recomputation"""
    sd = reference.random_gpt_weights(CFG, seed=0)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(0, 50, (4, n), generator=g) for n in (1, 3, 9)]
    got = student.call(probe_generate, CFG, sd, prompts, 12)
    for p, out in zip(prompts, got):
        want = reference.greedy(sd, CFG, p, 12)
        expect(torch.equal(out, want), f"greedy tokens with use_cache=True (prompt of {p.size(1)})",
               want.tolist(), out.tolist(),
               "with a cache, the T new queries are rows past..past+T-1 of the mask, over all S keys")


@pytest.mark.points(5, todo="attention-forward")
def test_gpt2_logits_match_transformers(student):
    """our GPT, loaded with transformers' GPT-2 weights, gives transformers' logits"""
    ref = torch.load(FIXTURES / "gpt2_tiny.pt", weights_only=True)
    logits = student.call(probe_hf_logits, ref["state_dict"], ref["config"], ref["idx"])
    err = (logits - ref["logits"]).abs().max().item() if logits.shape == ref["logits"].shape else float("inf")
    expect(err < 1e-4, "max |our logits - transformers' logits|", "< 1e-4", f"{err:.3g}",
           "if your level also has you write the model's other pieces, make their tests pass first; then compare "
           "attention with the fused kernel")
