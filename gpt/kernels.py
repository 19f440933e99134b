"""Speed paths around the functions of gpt/functional.py: the lesson's math stays there, and this module
makes it fast without changing what it computes.

- Backward passes written out (autograd.Function): LayerNorm, GELU and cross-entropy each save one or two
  tensors and run a few fused operations, where autograd would record a dozen small ones and keep their
  temporaries (GELU runs on the widest activations, (B, T, 4C); cross-entropy's (N, V) is the largest).
- bf16/fp16: LayerNorm's means and variances are computed in fp32 (as nn.LayerNorm does inside).
- Generation: inside `fused_inference()` and without gradients, LayerNorm and GELU run as PyTorch's
  fused kernels (F.layer_norm, F.gelu), the same function in one operation each. At batch 1 a generation
  step is a few hundred tiny operations whose fixed cost, not arithmetic, is its time.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F

from gpt import functional

LOW_PRECISION = (torch.float16, torch.bfloat16)


class _FusedSwitch(threading.local):
    on = False


_fused = _FusedSwitch()


@contextlib.contextmanager
def fused_inference():
    """Inside, without gradients, layer_norm and gelu run as PyTorch's fused kernels. GPT.next_logits
    (a generation step) runs under it; training, evaluation and the tests of the written-out versions
    never do."""
    before, _fused.on = _fused.on, True
    try:
        yield
    finally:
        _fused.on = before


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """functional.layer_norm's y, differentiable."""
    if _fused.on and not torch.is_grad_enabled():   # generation (see fused_inference)
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)
    return LayerNormFunction.apply(x, weight, bias, eps)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """functional.gelu, differentiable (its derivative from functional.gelu_derivative)."""
    if _fused.on and not torch.is_grad_enabled():   # generation (see fused_inference)
        return F.gelu(x, approximate="tanh")
    return GELUFunction.apply(x)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over the positions where mask is 1 (all when mask is None).

    logits (B, T, V), targets (B, T), mask (B, T). Computed in fp32 even under autocast.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()      # (N, V), N = B * T
    flat_mask = None if mask is None else mask.reshape(-1)         # (N,)
    return CrossEntropyFunction.apply(flat_logits, targets.reshape(-1), flat_mask)


class LayerNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dtype = x.dtype
        if dtype in LOW_PRECISION:   # means and variances of bf16/fp16 values lose digits: compute in fp32
            x, weight = x.float(), weight.float()
            bias = None if bias is None else bias.float()
        y, xhat, rstd = functional.layer_norm(x, weight, bias, eps)
        # kept in the input's dtype, as nn.LayerNorm keeps its input: a bf16 run stores bf16 activations
        ctx.save_for_backward(xhat.to(dtype), rstd, weight)
        ctx.has_bias = bias is not None
        return y.to(dtype)

    @staticmethod
    def backward(ctx, grad_y):
        """With g = grad_y * weight, dL/dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), means over the last
        dim; dL/dweight and dL/dbias sum grad_y * xhat and grad_y over every position. The two means are
        matrix-vector products: mean(g) = grad_y @ weight / C, mean(g * xhat) = (grad_y * xhat) @ weight / C."""
        xhat, rstd, weight = ctx.saved_tensors
        if xhat.dtype in LOW_PRECISION:   # in fp32, like the forward pass (autograd casts grad_x back)
            xhat, grad_y = xhat.float(), grad_y.float()
        C = grad_y.size(-1)
        gy_xhat = grad_y * xhat                                                     # (..., C)
        grad_weight = gy_xhat.reshape(-1, C).sum(0) if ctx.needs_input_grad[1] else None
        grad_bias = grad_y.reshape(-1, C).sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        mean_g = (grad_y @ weight).unsqueeze(-1) / C                                 # (..., 1)
        mean_g_xhat = (gy_xhat @ weight).unsqueeze(-1) / C                           # (..., 1)
        grad_x = torch.addcmul(-mean_g, grad_y, weight)                              # g - mean(g)
        grad_x.addcmul_(xhat, mean_g_xhat, value=-1.0).mul_(rstd)
        return grad_x, grad_weight, grad_bias, None


class GELUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return functional.gelu(x)

    @staticmethod
    def backward(ctx, grad_y):
        x, = ctx.saved_tensors
        return functional.gelu_derivative(x) * grad_y


class CrossEntropyFunction(torch.autograd.Function):
    """dL/dlogits = weight * (softmax - one_hot): one (N, V) tensor where autograd would need several."""

    @staticmethod
    def forward(ctx, logits, targets, mask):
        loss, weights = functional.cross_entropy(logits, targets, mask)
        ctx.save_for_backward(logits, targets, weights)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        logits, targets, weights = ctx.saved_tensors
        w = (grad_loss * weights)[:, None]                              # (N, 1)
        # torch.softmax is one fused pass per row and subtracts the row's max (exp(logits - lse) would
        # not do: for logits ~ 1e4 the subtraction loses the digits of float32)
        grad = torch.softmax(logits, dim=-1).mul_(w)                    # (N, V) w * softmax
        grad.scatter_add_(1, targets[:, None], -w)                      # w * (softmax - one_hot)
        return grad, None, None
