"""Graded: the advanced level's model pieces (gpt/model.py): LayerNorm, GELU, the MLP, the block, the
GPT's forward pass, the cross-entropy loss and the KV cache.

Each `probe_*` function runs in a separate process on your code (see sandbox.py); the references are
computed here with PyTorch's own ops (F.layer_norm, F.gelu, F.cross_entropy, the fused attention kernel,
autograd for the gradients) and transformers' GPT-2 logits, from the same weights and inputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from graded import reference
from graded.helpers import FIXTURES, expect

CFG = dict(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)


def max_err(got, want) -> float:
    """max |got - want|, inf when the shapes differ or got is not a tensor (so the message shows it)."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape:
        return float("inf")
    return (got.double() - want.double()).abs().max().item()


def shape_of(t):
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


# -- probes (run on the student's code) -----------------------------------------------------------

def probe_layer_norm(n_embd, bias, weights, xs, grads):
    from gpt.model import LayerNorm
    ln = LayerNorm(n_embd, bias=bias)
    names = sorted(ln.state_dict())
    ln.load_state_dict(weights)
    out = []
    for x, g in zip(xs, grads):
        x = x.clone().requires_grad_()
        ln.zero_grad()
        y = ln(x)
        y.backward(g)
        out.append({"y": y.detach(), "dx": x.grad, "dweight": ln.weight.grad,
                    "dbias": None if ln.bias is None else ln.bias.grad})
    return {"names": names, "eps": getattr(ln, "eps", None), "out": out}


def probe_gelu(x, g):
    from gpt.model import gelu
    x = x.clone().requires_grad_()
    y = gelu(x)
    y.backward(g)
    return {"y": y.detach(), "dx": x.grad, "x_after": x.detach()}


def probe_mlp(cfg, weights, x, seed):
    from gpt.model import MLP, GPTConfig
    mlp = MLP(GPTConfig(**cfg))
    mlp.load_state_dict(weights)
    torch.manual_seed(seed)
    with torch.no_grad():
        return {"eval": mlp.eval()(x), "train": [mlp.train()(x) for _ in range(2)]}


def probe_block(cfg, weights, x, split):
    from gpt.model import Block, GPTConfig, KVCache
    c = GPTConfig(**cfg)
    block = Block(c).eval()
    block.load_state_dict(weights, strict=False)
    with torch.no_grad():
        full = block(x)
        cache = KVCache(1, x.size(0), c.n_head, c.block_size, c.n_embd // c.n_head, x.device, x.dtype)
        first = block(x[:, :split], cache, 0)
        cache.advance(split)
        second = block(x[:, split:], cache, 0)
    return {"full": full, "cached": torch.cat([first, second], dim=1)}


def probe_hf_logits(hf_state_dict, cfg, idx):
    from gpt.model import GPT, GPTConfig
    model = GPT.from_hf_gpt2(hf_state_dict, GPTConfig(**cfg)).eval()
    with torch.no_grad():
        return model(idx)[0]


def probe_gpt_forward(cfg, state_dict, idx, targets, mask):
    from gpt.model import GPT, GPTConfig
    model = GPT(GPTConfig(**cfg)).eval()
    model.load_state_dict(state_dict)
    with torch.no_grad():
        logits, none_loss = model(idx)
        _, loss = model(idx, targets, mask)
        _, loss_all = model(idx, targets)
    return {"logits": logits, "no_targets": none_loss, "loss": loss, "loss_all": loss_all}


def probe_gpt_cached(cfg, state_dict, idx, split):
    from gpt.model import GPT, GPTConfig
    model = GPT(GPTConfig(**cfg)).eval()
    model.load_state_dict(state_dict)
    with torch.no_grad():
        cache = model.new_cache(idx.size(0))
        first = model.lm_head(model.hidden_states(idx[:, :split], cache))
        second = model.lm_head(model.hidden_states(idx[:, split:], cache))
    return torch.cat([first, second], dim=1)


def probe_lm_loss(logits, targets, mask):
    from gpt.model import lm_loss
    logits = logits.clone().requires_grad_()
    loss = lm_loss(logits, targets, mask)
    loss.backward()
    return {"loss": loss.detach(), "grad": logits.grad}


def probe_kv_append(shape, chunks):
    from gpt.model import KVCache
    B, nh, cap, hs = shape
    cache = KVCache(2, B, nh, cap, hs, torch.device("cpu"), torch.float32)
    out = []
    for k, v in chunks:
        length_before = cache.length
        k_all, v_all = cache.append(0, k, v)
        out.append({"k": k_all.clone(), "v": v_all.clone(), "length_after_append": cache.length,
                    "length_before": length_before,
                    "is_view": k_all.data_ptr() == cache.k[0].data_ptr() and v_all.data_ptr() == cache.v[0].data_ptr()})
        cache.advance(k.size(2))
    return out


def probe_generate(cfg, state_dict, prompts, new_tokens):
    from gpt.model import GPT, GPTConfig
    model = GPT(GPTConfig(**cfg))
    model.load_state_dict(state_dict)
    return [model.generate(p, new_tokens, use_cache=True) for p in prompts]


# -- references and inputs (here, in the grader) --------------------------------------------------

def ln_weights(C: int, bias: bool, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    w = {"weight": 1 + 0.5 * torch.randn(C, generator=g)}
    if bias:
        w["bias"] = 0.5 * torch.randn(C, generator=g)
    return w


def ln_reference(x, g, weights, var_fn=None):
    """Output and gradients of F.layer_norm via autograd (var_fn: a wrong variant, for the hints)."""
    x = x.clone().requires_grad_()
    w = weights["weight"].clone().requires_grad_()
    b = weights["bias"].clone().requires_grad_() if "bias" in weights else None
    if var_fn is None:
        y = F.layer_norm(x, (x.size(-1),), w, b, 1e-5)
    else:
        y = var_fn(x) * w + (b if b is not None else 0)
    y.backward(g)
    return {"y": y.detach(), "dx": x.grad, "dweight": w.grad, "dbias": None if b is None else b.grad}


LN_MISTAKES = {
    "the unbiased variance (divided by C - 1; x.var() does that unless correction=0 / unbiased=False)":
        lambda x: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=True) + 1e-5),
    "eps outside the square root (it belongs inside: 1 / sqrt(var + eps))":
        lambda x: (x - x.mean(-1, keepdim=True)) / (torch.sqrt(x.var(-1, keepdim=True, unbiased=False)) + 1e-5),
    "the standard deviation without eps":
        lambda x: (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False)),
    "no division by the standard deviation":
        lambda x: x - x.mean(-1, keepdim=True),
    "statistics over the wrong dimension (they are over the last one, C)":
        lambda x: (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True, unbiased=False) + 1e-5),
}


def which_mistake(got, x, g, weights, mistakes, key="y"):
    for name, fn in mistakes.items():
        try:
            alt = ln_reference(x, g, weights, fn)[key]
        except RuntimeError:
            continue
        if max_err(got, alt) < 1e-4:
            return f"your output matches {name}"
    return ""


def ln_inputs(C: int, seed: int):
    """Inputs with means and scales far from 0 and 1, and one of tiny variance (where eps matters)."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(6, C, generator=g) * 3 + 2, torch.randn(2, 5, C, generator=g) * 0.5 - 1,
          torch.randn(4, C, generator=g) * 1e-3 + 0.5]
    grads = [torch.randn(x.shape, generator=g) for x in xs]
    return xs, grads


def gelu_inputs(seed: int, n: int = 3999, spread: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.linspace(-10, 10, 401), torch.randn(n, generator=g) * spread]).view(-1, 8)
    return x, torch.randn(x.shape, generator=g)


GELU_MISTAKES = {
    "the GELU without the factor 0.5 (twice the right value)":
        lambda x: x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
    "x^2 where GPT-2 has x^3": lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 2))),
    "sqrt(2) / pi where the constant is sqrt(2 / pi)":
        lambda x: 0.5 * x * (1 + torch.tanh(math.sqrt(2) / math.pi * (x + 0.044715 * x ** 3))),
    "the exact (erf) GELU; GPT-2 uses the tanh approximation": lambda x: F.gelu(x),
    "x * sigmoid(z) where it is x * sigmoid(2z) (0.5 (1 + tanh(z)) = sigmoid(2z))":
        lambda x: x * torch.sigmoid(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)),
}


def gelu_hint(got, x):
    for name, fn in GELU_MISTAKES.items():
        if max_err(got, fn(x)) < 1e-5:
            return f"your output matches {name}"
    return "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))"


def gelu_reference(x, g):
    x = x.clone().requires_grad_()
    y = F.gelu(x, approximate="tanh")
    y.backward(g)
    return y.detach(), x.grad


def layer_weights(cfg: dict, seed: int, bias: bool = True) -> dict:
    """Weights of one Block (names as in gpt.model.Block), from the random GPT weights of the reference."""
    sd = reference.random_gpt_weights({**cfg, "n_layer": 1}, seed=seed)
    w = {k[len("transformer.h.0."):]: v for k, v in sd.items() if k.startswith("transformer.h.0.")}
    return w if bias else {k: v for k, v in w.items() if not k.endswith(".bias")}


def ce_reference(logits, targets, mask):
    logits = logits.clone().requires_grad_()
    flat = logits.reshape(-1, logits.size(-1))
    nll = F.cross_entropy(flat, targets.reshape(-1), reduction="none")
    if mask is None:
        loss = nll.mean()
    else:
        m = mask.reshape(-1).float()
        loss = (nll * m).sum() / m.sum().clamp(min=1.0)
    loss.backward()
    return loss.detach(), logits.grad


def ce_inputs(B, T, V, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, T, V, generator=g) * scale, torch.randint(0, V, (B, T), generator=g),
            (torch.rand(B, T, generator=g) > 0.3).long())


def check_ce(got, want_loss, want_grad, what, hint):
    expect(isinstance(got["loss"], torch.Tensor) and got["loss"].dim() == 0, f"{what}: the loss", "a 0-dim tensor",
           shape_of(got["loss"]))
    err = abs(got["loss"].item() - want_loss.item())
    expect(err < 1e-4 * max(1.0, abs(want_loss.item())), f"{what}: the loss", f"{want_loss.item():.6f}",
           f"{got['loss'].item():.6f}", hint)
    gerr = max_err(got["grad"], want_grad)
    expect(gerr < 1e-6, f"{what}: max |d loss / d logits - F.cross_entropy's|", "< 1e-6", f"{gerr:.3g}",
           "the gradient comes from your `weights`: 1/N each, or mask / (number of ones in the mask)")


# -- layer-norm -----------------------------------------------------------------------------------

@pytest.mark.points(4, todo="layer-norm")
def test_layer_norm_matches_pytorch(student):
    """LayerNorm(C) equals F.layer_norm (eps 1e-5) on inputs far from mean 0 / variance 1, and on a tiny-variance one"""
    C = 24
    weights = ln_weights(C, True, seed=0)
    xs, grads = ln_inputs(C, seed=1)
    got = student.call(probe_layer_norm, C, True, weights, xs, grads)
    for x, g, out in zip(xs, grads, got["out"]):
        want = ln_reference(x, g, weights)
        err = max_err(out["y"], want["y"])
        hint = which_mistake(out["y"], x, g, weights, LN_MISTAKES) or \
            "mean and biased variance over the last dim, (x - mean) / sqrt(var + eps), then * weight + bias"
        expect(err < 1e-4, f"max |LayerNorm(x) - F.layer_norm(x)| for x of shape {tuple(x.shape)}, std "
               f"{x.std().item():.2g}", "< 1e-4", f"{err:.3g}", hint)


@pytest.mark.points(3, todo="layer-norm")
def test_layer_norm_gradients_match_autograd(student):
    """the gradients with respect to x, weight and bias equal autograd's through F.layer_norm"""
    C = 24
    weights = ln_weights(C, True, seed=2)
    xs, grads = ln_inputs(C, seed=3)
    got = student.call(probe_layer_norm, C, True, weights, xs, grads)
    for x, g, out in zip(xs, grads, got["out"]):
        want = ln_reference(x, g, weights)
        for key in ("dx", "dweight", "dbias"):
            scale = want[key].abs().max().item()
            err = max_err(out[key], want[key])
            expect(err < 1e-4 * max(1.0, scale), f"{key} for x of shape {tuple(x.shape)}: max |ours - autograd's|",
                   f"< {1e-4 * max(1.0, scale):.3g}", f"{err:.3g}",
                   "the backward pass uses your `xhat` ((x - mean) * rstd) and `rstd` (1 / sqrt(var + eps), "
                   "shape (..., 1)): check those two")


@pytest.mark.points(2, todo="layer-norm")
def test_layer_norm_parameters_and_no_bias(student):
    """parameters are named weight and bias as in nn.LayerNorm; with bias=False there is no bias and no shift"""
    C = 16
    weights = ln_weights(C, False, seed=4)
    xs, grads = ln_inputs(C, seed=5)
    got = student.call(probe_layer_norm, C, False, weights, xs[:1], grads[:1])
    expect(got["names"] == ["weight"], "LayerNorm(C, bias=False).state_dict() keys", ["weight"], got["names"])
    want = ln_reference(xs[0], grads[0], weights)
    err = max_err(got["out"][0]["y"], want["y"])
    expect(err < 1e-4, "max |LayerNorm(x) - F.layer_norm(x, bias=None)|", "< 1e-4", f"{err:.3g}",
           "when bias is None, y = xhat * weight (no shift)")
    with_bias = student.call(probe_layer_norm, C, True, ln_weights(C, True, seed=4), xs[:1], grads[:1])
    expect(with_bias["names"] == ["bias", "weight"], "LayerNorm(C).state_dict() keys", ["bias", "weight"],
           with_bias["names"])


# -- gelu -----------------------------------------------------------------------------------------

@pytest.mark.points(4, todo="gelu")
def test_gelu_matches_pytorch_tanh_gelu(student):
    """gelu(x) equals F.gelu(x, approximate="tanh") from -10 to 10, and leaves x unchanged"""
    x, g = gelu_inputs(seed=0)
    got = student.call(probe_gelu, x, g)
    want, _ = gelu_reference(x, g)
    err = max_err(got["y"], want)
    expect(err < 1e-5, "max |gelu(x) - F.gelu(x, approximate='tanh')|", "< 1e-5", f"{err:.3g}", gelu_hint(got["y"], x))
    expect(torch.equal(got["x_after"], x), "x after gelu(x)", "unchanged", "modified in place",
           "in-place operations only on your own temporaries, never on x (autograd saved it for backward)")


@pytest.mark.points(4, todo="gelu")
def test_gelu_gradient_matches_autograd(student):
    """the backward pass of gelu equals autograd's through F.gelu(approximate="tanh")"""
    x, g = gelu_inputs(seed=1)
    got = student.call(probe_gelu, x, g)
    _, want = gelu_reference(x, g)
    err = max_err(got["dx"], want)
    bad = (got["dx"] - want).abs().argmax().item() if err < float("inf") else 0
    expect(err < 1e-4, "max |d gelu / dx * grad - autograd's|", "< 1e-4",
           f"{err:.3g} (worst at x = {x.reshape(-1)[bad].item():.3g})",
           "dy/dx = s + x * s * (1 - s) * du/dx with s = sigmoid(u), u = 2 sqrt(2/pi) (x + 0.044715 x^3), "
           "du/dx = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2); multiply by grad_y")


# -- mlp-forward ----------------------------------------------------------------------------------

@pytest.mark.points(5, todo="mlp-forward")
def test_mlp_matches_linear_gelu_linear(student):
    """MLP(x) (eval mode) equals c_proj(gelu_tanh(c_fc(x))) built from torch ops with the same weights"""
    weights = {k[len("mlp."):]: v for k, v in layer_weights(CFG, seed=0).items() if k.startswith("mlp.")}
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(1))
    got = student.call(probe_mlp, CFG, weights, x, 0)
    want = reference.mlp(x, weights, "")
    err = max_err(got["eval"], want)
    no_gelu = F.linear(F.linear(x, weights["c_fc.weight"], weights["c_fc.bias"]), weights["c_proj.weight"],
                       weights["c_proj.bias"])
    hint = "the GELU is missing: c_fc -> gelu -> c_proj" if max_err(got["eval"], no_gelu) < 1e-4 else \
        "c_fc (C -> 4C), then gelu, then c_proj (4C -> C), then dropout"
    expect(err < 1e-4, "max |MLP(x) - reference|", "< 1e-4", f"{err:.3g} (shape {shape_of(got['eval'])})", hint)


@pytest.mark.points(2, todo="mlp-forward")
def test_mlp_applies_dropout_in_training(student):
    """in training mode (dropout 0.5) the MLP's output goes through self.dropout"""
    weights = {k[len("mlp."):]: v for k, v in layer_weights(CFG, seed=2).items() if k.startswith("mlp.")}
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(3))
    got = student.call(probe_mlp, {**CFG, "dropout": 0.5}, weights, x, 0)
    zeros = min((t == 0).float().mean().item() for t in got["train"])
    expect(zeros > 0.3, "fraction of exact zeros in the output in training mode, dropout 0.5", "about 0.5",
           f"{zeros:.2f}", "apply self.dropout last, to the output of c_proj")


# -- block-forward --------------------------------------------------------------------------------

def block_hint(got, x, w, n_head):
    ln1 = lambda h: reference.layer_norm(h, w, "ln_1.")
    ln2 = lambda h: reference.layer_norm(h, w, "ln_2.")
    attn = lambda h: reference.attention(h, w, "attn.", n_head)
    mlp = lambda h: reference.mlp(h, w, "mlp.")
    h = ln1(x + attn(x))
    post = ln2(h + mlp(h))
    a = x + attn(ln1(x))
    if max_err(got, post) < 1e-4:
        return "your block is post-LN (LayerNorm after the sum); GPT-2 normalizes the branch's input: x + attn(ln_1(x))"
    if max_err(got, attn(ln1(x)) + mlp(ln2(a))) < 1e-4 or max_err(got, mlp(ln2(attn(ln1(x))))) < 1e-4:
        return "a residual connection is missing: x = x + attn(...), then x = x + mlp(...)"
    if max_err(got, a) < 1e-4:
        return "the MLP half is missing: x = x + mlp(ln_2(x))"
    return "x = x + attn(ln_1(x), kv_cache, layer); x = x + mlp(ln_2(x))"


@pytest.mark.points(6, todo="block-forward")
def test_block_matches_pre_layernorm_reference(student):
    """Block(x) equals x + attn(ln_1(x)), then + mlp(ln_2(x)), built from torch ops with the same weights"""
    w = layer_weights(CFG, seed=0)
    x = torch.randn(3, 11, 32, generator=torch.Generator().manual_seed(1)) * 2
    got = student.call(probe_block, CFG, w, x, 4)
    want = reference.block(x, w, "", CFG["n_head"])
    err = max_err(got["full"], want)
    expect(err < 1e-4, "max |Block(x) - reference|", "< 1e-4", f"{err:.3g}", block_hint(got["full"], x, w, 4))


@pytest.mark.points(3, todo="block-forward")
def test_block_passes_the_kv_cache_to_attention(student):
    """a block fed 4 positions, then 7 more with a KV cache, gives the outputs of all 11 at once"""
    w = layer_weights(CFG, seed=2)
    x = torch.randn(2, 11, 32, generator=torch.Generator().manual_seed(3))
    got = student.call(probe_block, CFG, w, x, 4)
    want = reference.block(x, w, "", CFG["n_head"])
    err = max_err(got["cached"], want)
    expect(err < 1e-4, "max |Block in two chunks with a KV cache - reference|", "< 1e-4", f"{err:.3g}",
           "call self.attn(self.ln_1(x), kv_cache, layer): without the cache the second chunk sees only itself")


# -- gpt-forward ----------------------------------------------------------------------------------

@pytest.mark.points(3, todo="gpt-forward")
def test_gpt_logits_match_transformers(student):
    """our GPT, loaded with transformers' GPT-2 weights, gives transformers' logits"""
    ref = torch.load(FIXTURES / "gpt2_tiny.pt", weights_only=True)
    logits = student.call(probe_hf_logits, ref["state_dict"], ref["config"], ref["idx"])
    err = max_err(logits, ref["logits"])
    expect(err < 1e-4, "max |our logits - transformers' logits|", "< 1e-4", f"{err:.3g}",
           "token + position embeddings, dropout, the blocks, then ln_f (the final LayerNorm), then lm_head")


@pytest.mark.points(3, todo="gpt-forward")
def test_gpt_loss_with_and_without_mask(student):
    """model(idx) returns loss None; model(idx, targets, mask) returns the cross-entropy over mask == 1 only"""
    sd = reference.random_gpt_weights(CFG, seed=1)
    g = torch.Generator().manual_seed(2)
    idx, targets = torch.randint(0, 50, (3, 9), generator=g), torch.randint(0, 50, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    got = student.call(probe_gpt_forward, CFG, sd, idx, targets, mask)
    logits = reference.gpt2_logits(sd, CFG, idx)
    err = max_err(got["logits"], logits)
    expect(err < 1e-4, "max |logits - reference|", "< 1e-4", f"{err:.3g}",
           "embeddings (positions 0..T-1), dropout, blocks, ln_f, then self.lm_head")
    expect(got["no_targets"] is None, "the loss of model(idx) without targets", None, got["no_targets"])
    flat = F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1), reduction="none")
    want = (flat * mask.reshape(-1)).sum() / mask.sum()
    expect(isinstance(got["loss"], torch.Tensor) and abs(got["loss"].item() - want.item()) < 1e-4,
           "the loss of model(idx, targets, mask)", f"{want.item():.5f}",
           got["loss"].item() if isinstance(got["loss"], torch.Tensor) else got["loss"],
           "loss = lm_loss(logits, targets, mask): pass the mask on (padding must not count)")
    expect(isinstance(got["loss_all"], torch.Tensor) and abs(got["loss_all"].item() - flat.mean().item()) < 1e-4,
           "the loss of model(idx, targets) (no mask)", f"{flat.mean().item():.5f}",
           got["loss_all"].item() if isinstance(got["loss_all"], torch.Tensor) else got["loss_all"])


@pytest.mark.points(2, todo="gpt-forward")
def test_gpt_positions_continue_after_the_cache(student):
    """with a KV cache, tokens fed after `past` earlier ones get positions past, past+1, ...: the logits of
    6 tokens, then 5 more, equal those of all 11 at once"""
    sd = reference.random_gpt_weights(CFG, seed=3)
    idx = torch.randint(0, 50, (2, 11), generator=torch.Generator().manual_seed(4))
    got = student.call(probe_gpt_cached, CFG, sd, idx, 6)
    want = reference.gpt2_logits(sd, CFG, idx)
    err = max_err(got, want)
    first = max_err(got[:, :6], want[:, :6]) if err < float("inf") else err
    expect(err < 1e-4, "max |logits in two chunks with a KV cache - all at once|", "< 1e-4",
           f"{err:.3g} (first chunk: {first:.3g})",
           "positions are torch.arange(past, past + T): the second chunk starts at past = 6, not 0")


@pytest.mark.points(2, todo="gpt-forward")
def test_gpt_untied_head_uses_lm_head(student):
    """with tie_weights=False the logits come from lm_head's own matrix (self.lm_head, not wte)"""
    cfg = {**CFG, "tie_weights": False}
    sd = reference.random_gpt_weights(cfg, seed=5)
    sd["lm_head.weight"] = torch.randn(50, 32, generator=torch.Generator().manual_seed(6)) * 0.3
    idx = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(7))
    got = student.call(probe_gpt_forward, cfg, sd, idx, idx, None)
    err = max_err(got["logits"], reference.gpt2_logits(sd, cfg, idx))
    expect(err < 1e-4, "max |logits - reference| with tie_weights=False", "< 1e-4", f"{err:.3g}",
           "logits = self.lm_head(hidden states): lm_head equals wte only when the weights are tied")


# -- cross-entropy --------------------------------------------------------------------------------

@pytest.mark.points(3, todo="cross-entropy")
def test_cross_entropy_matches_pytorch(student):
    """lm_loss(logits, targets) and its gradient equal F.cross_entropy's (mean over all positions)"""
    logits, targets, _ = ce_inputs(3, 7, 40, seed=0)
    got = student.call(probe_lm_loss, logits, targets, None)
    loss, grad = ce_reference(logits, targets, None)
    check_ce(got, loss, grad, "no mask", "nll = logsumexp(logits) - logits[target], averaged over the B * T positions")


@pytest.mark.points(3, todo="cross-entropy")
def test_cross_entropy_with_a_mask(student):
    """with a mask, the loss and gradient are the mean over mask == 1 positions only"""
    logits, targets, mask = ce_inputs(4, 6, 30, seed=1)
    got = student.call(probe_lm_loss, logits, targets, mask)
    loss, grad = ce_reference(logits, targets, mask)
    flat = F.cross_entropy(logits.reshape(-1, 30), targets.reshape(-1), reduction="none")
    hint = "divide by the number of ones in the mask, not by B * T" \
        if abs(got["loss"].item() - (flat * mask.reshape(-1)).sum().item() / flat.numel()) < 1e-5 else \
        "the padding (mask 0) counts in neither the sum nor the count" \
        if abs(got["loss"].item() - flat.mean().item()) < 1e-5 else \
        "sum of nll * mask, divided by the number of ones in the mask"
    check_ce(got, loss, grad, "with a mask", hint)


@pytest.mark.points(3, todo="cross-entropy")
def test_cross_entropy_does_not_overflow(student):
    """logits of size 1e4 (exp overflows float32) still give F.cross_entropy's finite loss and gradient"""
    logits, targets, mask = ce_inputs(2, 5, 20, seed=2, scale=1.0)
    logits = logits * 1e4
    logits[0, 0] += 2e4     # one row far above the others, another far below
    logits[1, 1] -= 3e4
    got = student.call(probe_lm_loss, logits, targets, mask)
    expect(bool(torch.isfinite(got["loss"])), "the loss for logits ~ 1e4", "a finite number", got["loss"].item(),
           "exp(1e4) is inf in float32: subtract each row's largest logit before exp, add it back after the log")
    loss, grad = ce_reference(logits, targets, mask)
    check_ce(got, loss, grad, "logits ~ 1e4", "lse = log(sum(exp(logits - top))) + top, top = the row's max")


# -- kv-cache-append ------------------------------------------------------------------------------

@pytest.mark.points(4, todo="kv-cache-append")
def test_kv_cache_append_stores_after_the_past(student):
    """appending 3, then 2, then 1 positions returns all keys and values so far, as views of the buffers"""
    B, nh, cap, hs = 2, 3, 8, 4
    g = torch.Generator().manual_seed(0)
    chunks = [(torch.randn(B, nh, T, hs, generator=g), torch.randn(B, nh, T, hs, generator=g)) for T in (3, 2, 1)]
    got = student.call(probe_kv_append, (B, nh, cap, hs), chunks)
    for i, out in enumerate(got):
        want_k = torch.cat([k for k, _ in chunks[:i + 1]], dim=2)
        want_v = torch.cat([v for _, v in chunks[:i + 1]], dim=2)
        what = f"append number {i + 1} (length {out['length_before']} before it)"
        expect(shape_of(out["k"]) == tuple(want_k.shape), f"{what}: shape of the returned keys",
               tuple(want_k.shape), shape_of(out["k"]), "return self.k[layer][:, :, :self.length + T]")
        expect(torch.equal(out["k"], want_k) and torch.equal(out["v"], want_v), f"{what}: returned keys and values",
               "the earlier ones followed by the new ones", "something else",
               "write the new k, v at positions self.length .. self.length + T - 1, not at 0")
        expect(out["length_after_append"] == out["length_before"], f"{what}: cache.length right after append",
               out["length_before"], out["length_after_append"],
               "append must not change self.length: every layer appends at the same place; advance(T) moves it")
        expect(out["is_view"], f"{what}: the returned tensors", "views of the buffers (slices)", "new tensors",
               "return slices of self.k[layer] and self.v[layer] (no torch.cat: that copies at every step)")


@pytest.mark.points(4, todo="kv-cache-append")
def test_kv_cache_generation_equals_recomputation(student):
    """greedy generation with the KV cache gives the tokens of recomputing the whole context each step"""
    sd = reference.random_gpt_weights(CFG, seed=7)
    g = torch.Generator().manual_seed(8)
    prompts = [torch.randint(0, 50, (3, n), generator=g) for n in (1, 4)]
    got = student.call(probe_generate, CFG, sd, prompts, 10)
    for p, out in zip(prompts, got):
        want = reference.greedy(sd, CFG, p, 10)
        expect(torch.equal(out, want), f"greedy tokens with use_cache=True (prompt of {p.size(1)})",
               want.tolist(), out.tolist(), "the cache must hold every earlier key and value of each layer")
