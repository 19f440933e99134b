"""Three functions of torch.nn.functional, written out: layer normalization, GELU (with its derivative)
and cross-entropy. The layers of gpt/model.py call them through gpt/kernels.py, which gives each one a
backward pass (autograd would record a dozen small operations and keep their temporaries) and, during
generation, swaps in PyTorch's fused kernels. So these functions always run outside autograd: in-place
operations on your own temporaries are allowed (and save memory traffic), but never modify an input.
Shapes: C = the last dimension (n_embd), N = positions (B * T), V = vocabulary size.
"""

from __future__ import annotations

import math

import torch

GELU_C = math.sqrt(2.0 / math.pi)   # 0.7978845608...


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float = 1e-5):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last dimension, per position.

    x (..., C), weight (C,), bias (C,) or None. Returns y (..., C) and, for the backward pass,
    xhat = (x - mean) / sqrt(var + eps) (..., C) and rstd = 1 / sqrt(var + eps) (..., 1).
    """
    # TODO(layer-norm): normalize each position's vector x[..., :] (the last dimension, size C),
    # then scale and shift it. Define:
    #   mean = average of x over the last dim                      -> (..., 1)  (keepdim=True)
    #   var  = average of (x - mean)^2 over the last dim            -> (..., 1)  divide by C, not
    #          C - 1 (the *biased* variance, as nn.LayerNorm; x.var() is unbiased by default)
    #   rstd = 1 / sqrt(var + eps)                                  -> (..., 1)  eps goes *inside* the
    #          square root (torch.rsqrt); it keeps a constant vector (var 0) finite
    #   xhat = (x - mean) * rstd                                    -> (..., C)  mean 0, variance 1
    #   y    = xhat * weight + bias (no "+ bias" when bias is None) -> (..., C)
    # Return y, xhat, rstd (the given backward pass needs the last two).
    # Speed: torch.var / torch.var_mean are slow on a CPU for short rows; (xc * xc).mean() is not.
    ### BEGIN SOLUTION
    mean = x.mean(dim=-1, keepdim=True)                    # (..., 1)
    xc = x - mean                                          # (..., C) centred
    var = (xc * xc).mean(dim=-1, keepdim=True)             # (..., 1) biased variance
    rstd = torch.rsqrt(var + eps)                          # (..., 1)
    xhat = xc.mul_(rstd)                                   # (..., C) in place: xc is ours
    y = xhat * weight if bias is None else torch.addcmul(bias, xhat, weight)   # (..., C)
    return y, xhat, rstd
    ### END SOLUTION


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU (the tanh approximation): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), elementwise."""
    # TODO(gelu): set y = 0.5 * x * (1 + tanh(GELU_C * (x + 0.044715 * x^3))), same shape as x
    # (GELU_C = sqrt(2/pi) is defined above). Pitfalls: the 0.5; x^3, not x^2; the constant is
    # sqrt(2 / pi), not sqrt(2) / pi. Faster, and the same number: 0.5 * (1 + tanh(z)) equals
    # sigmoid(2z), so y = x * sigmoid(2 * GELU_C * (x + 0.044715 * x^3)).
    ### BEGIN SOLUTION
    z = x * x                                                    # x^2
    z = z.mul_(2.0 * GELU_C * 0.044715).add_(2.0 * GELU_C).mul_(x)  # 2 sqrt(2/pi) (x + 0.044715 x^3)
    return z.sigmoid_().mul_(x)                                  # x * sigmoid(2z) = 0.5 x (1 + tanh(z))
    ### END SOLUTION


def gelu_derivative(x: torch.Tensor) -> torch.Tensor:
    """dy/dx of gelu at x, elementwise (the backward pass multiplies it by the incoming gradient)."""
    # TODO(gelu): the chain rule through gelu. With u = 2 * GELU_C * (x + 0.044715 x^3) and
    # s = sigmoid(u), y = x * s and
    #   dy/dx = s + x * s * (1 - s) * du/dx,   du/dx = 2 * GELU_C * (1 + 3 * 0.044715 x^2)
    # (sigmoid' = s (1 - s)). The test compares it with autograd through F.gelu(approximate="tanh").
    ### BEGIN SOLUTION
    x2 = x * x                                                           # x^2
    s = (x2 * (2.0 * GELU_C * 0.044715)).add_(2.0 * GELU_C).mul_(x).sigmoid_()  # s = sigmoid(u)
    du = x2.mul_(2.0 * GELU_C * 3 * 0.044715).add_(2.0 * GELU_C)         # du/dx
    return (1.0 - s).mul_(x).mul_(du).add_(1.0).mul_(s)                  # s (1 + x (1 - s) du/dx)
    ### END SOLUTION


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None):
    """Mean next-token cross-entropy in nats over the positions where mask is 1 (all when mask is None).

    logits (N, V), targets (N,) token ids, mask (N,) of 0/1 or None. Returns the loss (a 0-dim tensor)
    and, for the backward pass, each position's weight in the mean (N,).
    """
    # TODO(cross-entropy): define
    #   lse[n] = log(sum_v exp(logits[n, v]))                     -> (N,). Numerically stable: with
    #            top = the row's largest logit (amax, keepdim=True), lse = log(sum exp(logits - top)) + top
    #            (exp(1e4) overflows to inf; exp(logits - top) <= 1). torch.logsumexp also does this.
    #   nll[n] = lse[n] - logits[n, targets[n]]                   -> (N,)  (gather along dim 1)
    #   weights = 1/N everywhere without a mask, else mask / (number of ones in mask) -> (N,),
    #            so that padding (mask 0) counts neither in the sum nor in the count; if the mask has
    #            no ones at all, divide by 1 instead of 0 (the loss is then 0)
    #   loss = sum of nll * weights                                -> a 0-dim tensor
    # Return loss, weights. Not allowed here: F.cross_entropy, F.log_softmax, F.nll_loss. An in-place
    # exp_() on your own (N, V) temporary saves one copy of it.
    ### BEGIN SOLUTION
    # logsumexp subtracts each row's max; taken over blocks of rows, so its exp temporary is a few MB
    # that stay in the cache (for all N rows at once: 1.6 GB at batch 256 x 32, vocab 50257)
    rows = max(1, 2**22 // logits.size(1))
    lse = torch.cat([torch.logsumexp(block, dim=-1) for block in logits.split(rows)])   # (N,)
    nll = lse - logits.gather(1, targets[:, None])[:, 0]            # (N,)
    if mask is None:
        weights = torch.full_like(nll, 1.0 / nll.numel())           # (N,)
    else:
        weights = mask.to(nll.dtype)
        weights = weights / weights.sum().clamp(min=1.0)            # (N,)
    return (nll * weights).sum(), weights
    ### END SOLUTION
