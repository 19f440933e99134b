"""Graded, hidden from students (removed from the handout; run by the autograder only): the advanced
level's model TODOs on inputs and configurations the public tests do not show."""

import pytest
import torch
import torch.nn.functional as F

from graded import reference
from graded.helpers import expect
from graded.test_advanced_model_graded import (ce_reference, gelu_reference, layer_weights, ln_reference, ln_weights,
                                               max_err, probe_block, probe_gelu, probe_gpt_forward, probe_layer_norm,
                                               probe_lm_loss, probe_mlp)


def probe_kv_two_layers(shape, k0, v0, k1, v1):
    from gpt.model import KVCache
    B, nh, cap, hs = shape
    cache = KVCache(2, B, nh, cap, hs, torch.device("cpu"), torch.float32)
    out = []
    for step in range(k0.size(2)):              # one position at a time, as in generation, both layers
        sl = slice(step, step + 1)
        a = [t.clone() for t in cache.append(0, k0[:, :, sl], v0[:, :, sl])]
        b = [t.clone() for t in cache.append(1, k1[:, :, sl], v1[:, :, sl])]
        cache.advance(1)
        out.append((a, b))
    return out


@pytest.mark.points(3, todo="layer-norm", visibility="after_published")
def test_hidden_layer_norm_3d_wide_and_without_bias(student):
    """LayerNorm on (B, T, 48) inputs with large offsets, with and without bias, values and gradients"""
    g = torch.Generator().manual_seed(10)
    xs = [torch.randn(2, 7, 48, generator=g) * 5 + 10, torch.randn(3, 1, 48, generator=g) * 0.01 - 3]
    grads = [torch.randn(x.shape, generator=g) for x in xs]
    for bias in (False, True):
        weights = ln_weights(48, bias, seed=11)
        got = student.call(probe_layer_norm, 48, bias, weights, xs, grads)
        for x, gr, out in zip(xs, grads, got["out"]):
            want = ln_reference(x, gr, weights)
            for key in ("y", "dx", "dweight") + (("dbias",) if bias else ()):
                err = max_err(out[key], want[key])
                tol = 1e-4 * max(1.0, want[key].abs().max().item())
                expect(err < tol, f"{key} (bias={bias}, x {tuple(x.shape)})", f"< {tol:.3g}", f"{err:.3g}")


@pytest.mark.points(2, todo="gelu", visibility="after_published")
def test_hidden_gelu_in_float64(student):
    """gelu in float64 equals F.gelu(approximate="tanh") to 1e-9, value and gradient"""
    g = torch.Generator().manual_seed(12)
    x = (torch.rand(64, 33, generator=g, dtype=torch.float64) - 0.5) * 16
    gr = torch.randn(x.shape, generator=g, dtype=torch.float64)
    got = student.call(probe_gelu, x, gr)
    y, dx = gelu_reference(x, gr)
    expect(got["y"].dtype == torch.float64, "dtype of gelu(float64 x)", torch.float64, got["y"].dtype)
    expect(max_err(got["y"], y) < 1e-9, "max |gelu - reference| (float64)", "< 1e-9", f"{max_err(got['y'], y):.3g}")
    expect(max_err(got["dx"], dx) < 1e-9, "max |gradient - reference| (float64)", "< 1e-9",
           f"{max_err(got['dx'], dx):.3g}")


@pytest.mark.points(2, todo="mlp-forward", visibility="after_published")
def test_hidden_mlp_without_biases(student):
    """the MLP of a bias=False configuration, width 24"""
    cfg = dict(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=24, dropout=0.0, bias=False)
    w = {k[len("mlp."):]: v for k, v in layer_weights(cfg, seed=13, bias=False).items() if k.startswith("mlp.")}
    x = torch.randn(4, 5, 24, generator=torch.Generator().manual_seed(14))
    got = student.call(probe_mlp, cfg, w, x, 0)
    err = max_err(got["eval"], reference.mlp(x, w, ""))
    expect(err < 1e-4, "max |MLP(x) - reference| (no biases)", "< 1e-4", f"{err:.3g}")


@pytest.mark.points(3, todo="block-forward", visibility="after_published")
def test_hidden_block_other_head_counts_and_no_bias(student):
    """a block with 1 and with 8 heads, no biases, T = block_size, split into 9 + 7 with the cache"""
    for n_head in (1, 8):
        cfg = dict(vocab_size=10, block_size=16, n_layer=1, n_head=n_head, n_embd=32, dropout=0.0, bias=False)
        w = layer_weights(cfg, seed=15 + n_head, bias=False)
        x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(n_head))
        got = student.call(probe_block, cfg, w, x, 9)
        want = reference.block(x, w, "", n_head)
        for key in ("full", "cached"):
            err = max_err(got[key], want)
            expect(err < 1e-4, f"{key}: max |Block(x) - reference| with {n_head} head(s)", "< 1e-4", f"{err:.3g}")


@pytest.mark.points(3, todo="gpt-forward", visibility="after_published")
def test_hidden_gpt_three_layers_untied_without_bias(student):
    """a 3-layer GPT without biases and with an untied head, on a full block, with a masked loss"""
    cfg = dict(vocab_size=37, block_size=12, n_layer=3, n_head=2, n_embd=16, dropout=0.0, bias=False,
               tie_weights=False)
    sd = {k: v for k, v in reference.random_gpt_weights(cfg, seed=20).items() if not k.endswith(".bias")}
    sd["lm_head.weight"] = torch.randn(37, 16, generator=torch.Generator().manual_seed(21)) * 0.3
    g = torch.Generator().manual_seed(22)
    idx, targets = torch.randint(0, 37, (3, 12), generator=g), torch.randint(0, 37, (3, 12), generator=g)
    mask = (torch.rand(3, 12, generator=g) > 0.5).long()
    got = student.call(probe_gpt_forward, cfg, sd, idx, targets, mask)
    logits = reference.gpt2_logits(sd, cfg, idx)
    expect(max_err(got["logits"], logits) < 1e-4, "max |logits - reference|", "< 1e-4",
           f"{max_err(got['logits'], logits):.3g}")
    nll = F.cross_entropy(logits.reshape(-1, 37), targets.reshape(-1), reduction="none")
    want = (nll * mask.reshape(-1)).sum() / mask.sum()
    expect(abs(got["loss"].item() - want.item()) < 1e-4, "masked loss", f"{want.item():.5f}", got["loss"].item())


@pytest.mark.points(3, todo="cross-entropy", visibility="after_published")
def test_hidden_cross_entropy_bool_mask_empty_mask_and_offsets(student):
    """a bool mask, rows shifted by -1e4 and +5e3, and a mask with no ones (loss 0, gradient 0)"""
    g = torch.Generator().manual_seed(30)
    logits = torch.randn(2, 9, 300, generator=g) * 4
    logits[0] -= 1e4
    logits[1, :4] += 5e3
    targets = torch.randint(0, 300, (2, 9), generator=g)
    mask = torch.rand(2, 9, generator=g) > 0.4
    got = student.call(probe_lm_loss, logits, targets, mask)
    loss, grad = ce_reference(logits, targets, mask)
    expect(abs(got["loss"].item() - loss.item()) < 1e-4 * max(1.0, loss.item()), "loss with a bool mask",
           f"{loss.item():.5f}", got["loss"].item())
    expect(max_err(got["grad"], grad) < 1e-6, "gradient with a bool mask", "< 1e-6", f"{max_err(got['grad'], grad):.3g}")
    empty = student.call(probe_lm_loss, logits, targets, torch.zeros(2, 9, dtype=torch.long))
    expect(empty["loss"].item() == 0.0 and bool((empty["grad"] == 0).all()), "loss and gradient for a mask of zeros",
           "0 and 0 (nothing counts; no division by zero)", (empty["loss"].item(), empty["grad"].abs().max().item()))


@pytest.mark.points(2, todo="kv-cache-append", visibility="after_published")
def test_hidden_kv_cache_layers_are_independent_up_to_capacity(student):
    """two layers appended one position at a time up to the full capacity keep their own keys and values"""
    B, nh, cap, hs = 2, 2, 5, 3
    g = torch.Generator().manual_seed(40)
    k0, v0, k1, v1 = (torch.randn(B, nh, cap, hs, generator=g) for _ in range(4))
    got = student.call(probe_kv_two_layers, (B, nh, cap, hs), k0, v0, k1, v1)
    for step, ((a_k, a_v), (b_k, b_v)) in enumerate(got):
        n = step + 1
        ok = all(torch.equal(t, w[:, :, :n]) for t, w in ((a_k, k0), (a_v, v0), (b_k, k1), (b_v, v1)))
        expect(ok, f"keys and values of both layers after {n} appends", "each layer's own first n positions",
               "something else")
