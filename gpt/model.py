"""GPT, a decoder-only transformer language model, written out in full. GPT-2's architecture, so
GPT-2 weights load exactly: token + learned position embeddings, n_layer x Block (pre-LayerNorm:
x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))), a final LayerNorm, and an output layer tied to the
token embedding. Shapes: B batch, T sequence length, C = n_embd, nh = n_head, hs = C // nh, V vocab.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.sampling import generate
from gpt.sizing import PRESETS, check_sizes, count_parameters, flops_per_token, preset_sizes  # noqa: F401

ATTN_IMPLS = ("manual", "sdpa")
LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int            # longest context the model sees (size of the position table)
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.1
    bias: bool = True          # biases in Linear and LayerNorm layers (GPT-2 has them)
    tie_weights: bool = True   # output layer shares the token embedding matrix (GPT-2 does)
    attn_impl: str = "manual"  # "manual": attention written out; "sdpa": fused scaled_dot_product_attention

    def __post_init__(self):
        check_sizes(self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.attn_impl not in ATTN_IMPLS:
            raise ValueError(f"GPTConfig.attn_impl must be one of {ATTN_IMPLS}, got {self.attn_impl!r}")

    @classmethod
    def preset(cls, name: str, vocab_size: int = 50257, block_size: int | None = None, **overrides) -> "GPTConfig":
        """A named size (gpt.sizing.PRESETS): gpt-nano, gpt-micro, gpt-mini, gopher-44m, gpt2..gpt2-xl, gpt3."""
        return cls(vocab_size=vocab_size, **{**preset_sizes(name, block_size), **overrides})


class _FusedSwitch(threading.local):
    on = False


_fused = _FusedSwitch()


@contextlib.contextmanager
def fused_inference():
    """Inside, without gradients, LayerNorm and gelu run as PyTorch's fused kernels (F.layer_norm,
    F.gelu): the same function in one operation each instead of the ten small ones written out below.
    GPT.next_logits (a generation step) runs under it: at batch 1 a step is a few hundred tiny
    operations, and their fixed cost of several microseconds each, not arithmetic, was its time
    (LayerNorm alone was a fifth of it). Training, evaluation and the tests of the written-out
    versions never run under it."""
    before, _fused.on = _fused.on, True
    try:
        yield
    finally:
        _fused.on = before


class LayerNorm(nn.Module):
    """Layer normalization over the last dimension (nn.LayerNorm's computation and parameter names, so
    GPT-2 checkpoints load): y = (x - mean) / sqrt(var + eps) * weight + bias, per position."""

    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))                      # gain, starts at 1
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None      # shift, starts at 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fused.on and not torch.is_grad_enabled():   # generation (see fused_inference)
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return _LayerNormFunction.apply(x, self.weight, self.bias, self.eps)


class _LayerNormFunction(torch.autograd.Function):
    """LayerNorm with its backward pass written out (given), which is several times faster on a CPU
    than letting autograd record the dozen small operations of the forward pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dtype = x.dtype
        if dtype in LOW_PRECISION:   # means and variances of bf16/fp16 values lose digits: compute in fp32
            x, weight = x.float(), weight.float()
            bias = None if bias is None else bias.float()
        # TODO(layer-norm): normalize each position's vector x[..., :] (the last dimension, size C),
        # then scale and shift it. x: (..., C), weight: (C,), bias: (C,) or None. Define:
        #   mean = average of x over the last dim                      -> (..., 1)  (keepdim=True)
        #   var  = average of (x - mean)^2 over the last dim            -> (..., 1)  divide by C, not
        #          C - 1 (the *biased* variance, as nn.LayerNorm; x.var() is unbiased by default)
        #   rstd = 1 / sqrt(var + eps)                                  -> (..., 1)  eps goes *inside* the
        #          square root (torch.rsqrt); it keeps a constant vector (var 0) finite
        #   xhat = (x - mean) * rstd                                    -> (..., C)  mean 0, variance 1
        #   y    = xhat * weight + bias (no "+ bias" when bias is None) -> (..., C)
        # The backward pass below needs your `xhat` and `rstd`: keep those names.
        # Speed: torch.var / torch.var_mean are slow on a CPU for short rows; (xc * xc).mean() is not.
        ### BEGIN SOLUTION
        mean = x.mean(dim=-1, keepdim=True)                    # (..., 1)
        xc = x - mean                                          # (..., C) centred
        var = (xc * xc).mean(dim=-1, keepdim=True)             # (..., 1) biased variance
        rstd = torch.rsqrt(var + eps)                          # (..., 1)
        xhat = xc.mul_(rstd)                                   # (..., C) in place: xc is ours
        y = xhat * weight if bias is None else torch.addcmul(bias, xhat, weight)   # (..., C)
        ### END SOLUTION
        # kept in the input's dtype, as nn.LayerNorm keeps its input: a bf16 run stores bf16 activations
        ctx.save_for_backward(xhat.to(dtype), rstd, weight)
        ctx.has_bias = bias is not None
        return y.to(dtype)

    @staticmethod
    def backward(ctx, grad_y):
        """Given: with g = grad_y * weight, dL/dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), means over
        the last dim; dL/dweight and dL/dbias sum grad_y * xhat and grad_y over every position. The two
        means are matrix-vector products: mean(g) = grad_y @ weight / C, mean(g * xhat) = (grad_y * xhat) @ weight / C."""
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


GELU_C = math.sqrt(2.0 / math.pi)   # 0.7978845608...


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU (the tanh approximation): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if _fused.on and not torch.is_grad_enabled():   # generation (see fused_inference)
        return F.gelu(x, approximate="tanh")
    return _GELUFunction.apply(x)


class _GELUFunction(torch.autograd.Function):
    """GELU with a written-out derivative: one saved tensor and a few in-place operations instead of the
    many temporaries autograd would keep (GELU runs on the widest activations, (B, T, 4C))."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        # TODO(gelu): set y = 0.5 * x * (1 + tanh(GELU_C * (x + 0.044715 * x^3))), elementwise, same
        # shape as x (GELU_C = sqrt(2/pi) is defined above). Pitfalls: the 0.5; x^3, not x^2; the constant
        # is sqrt(2 / pi), not sqrt(2) / pi. Faster, and the same number: 0.5 * (1 + tanh(z)) equals
        # sigmoid(2z), so y = x * sigmoid(2 * GELU_C * (x + 0.044715 * x^3)). This runs outside autograd,
        # so in-place operations on your own temporaries (t.mul_(2.0), t.sigmoid_()) are allowed and save
        # memory traffic; never modify x itself.
        ### BEGIN SOLUTION
        z = x * x                                                    # x^2
        z = z.mul_(2.0 * GELU_C * 0.044715).add_(2.0 * GELU_C).mul_(x)  # 2 sqrt(2/pi) (x + 0.044715 x^3)
        y = z.sigmoid_().mul_(x)                                     # x * sigmoid(2z) = 0.5 x (1 + tanh(z))
        ### END SOLUTION
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, = ctx.saved_tensors
        # TODO(gelu): return grad_y * dy/dx, the chain rule through your forward pass. With
        # u = 2 * GELU_C * (x + 0.044715 x^3) and s = sigmoid(u), y = x * s and
        #   dy/dx = s + x * s * (1 - s) * du/dx,   du/dx = 2 * GELU_C * (1 + 3 * 0.044715 x^2)
        # (sigmoid' = s (1 - s)). The test compares it with autograd through F.gelu(approximate="tanh").
        ### BEGIN SOLUTION
        x2 = x * x                                                           # x^2
        s = (x2 * (2.0 * GELU_C * 0.044715)).add_(2.0 * GELU_C).mul_(x).sigmoid_()  # s = sigmoid(u)
        du = x2.mul_(2.0 * GELU_C * 3 * 0.044715).add_(2.0 * GELU_C)         # du/dx
        dy = (1.0 - s).mul_(x).mul_(du).add_(1.0).mul_(s)                    # s (1 + x (1 - s) du/dx)
        return dy.mul_(grad_y)
        ### END SOLUTION


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t may only look at positions <= t."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        # TODO(attention-mask): build `causal_mask`, a (block_size, block_size) tensor with True
        # on and below the diagonal and False above it (row t = query position t; True in column s
        # means "t may attend to s"). Then view it as (1, 1, block_size, block_size) so it
        # broadcasts over batch and heads. Hint: torch.tril of torch.ones(..., dtype=torch.bool)
        # (one byte per entry; float32 would take four).
        ### BEGIN SOLUTION
        causal_mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        causal_mask = causal_mask.view(1, 1, config.block_size, config.block_size)
        ### END SOLUTION
        # A buffer moves with .to(device) but is not trained; not saved (it is rebuilt from the config).
        self.register_buffer("causal_mask", causal_mask.bool(), persistent=False)

    def forward(self, x: torch.Tensor, kv_cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)          # each (B, T, C)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)            # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)            # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)            # (B, nh, T, hs)
        past = 0
        if kv_cache is not None:                                     # generation: earlier keys and values
            past = kv_cache.length
            k, v = kv_cache.append(layer, k, v)                      # (B, nh, past + T, hs)
        if self.attn_impl == "sdpa":
            y = self._sdpa(q, k, v, past)
        else:
            y = self._manual(q, k, v, past)                          # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)             # heads side by side: (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _manual(self, q, k, v, past: int) -> torch.Tensor:
        """softmax(q k^T / sqrt(hs) + causal mask) v, written out.

        q: (B, nh, T, hs) for the T new positions past..past+T-1; k, v: (B, nh, S, hs) for all
        S = past + T positions seen so far (S == T when there is no cache).
        """
        T, S = q.size(2), k.size(2)
        # TODO(attention-forward): compute the attention output y of shape (B, nh, T, hs):
        #  1. scores att = q @ k^T scaled by 1/sqrt(hs)                   -> (B, nh, T, S)
        #  2. set scores where the query may not see the key to -inf, using the rows
        #     past..past+T-1 and columns 0..S-1 of self.causal_mask (masked_fill)
        #  3. softmax over the keys (the last dimension), then self.attn_dropout
        #  4. y = att @ v                                                  -> (B, nh, T, hs)
        ### BEGIN SOLUTION
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))   # (B, nh, T, S)
        mask = self.causal_mask[:, :, past:past + T, :S]                   # (1, 1, T, S)
        att = att.masked_fill(mask == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v                                                        # (B, nh, T, hs)
        ### END SOLUTION
        return y

    def _sdpa(self, q, k, v, past: int) -> torch.Tensor:
        """The same computation through PyTorch's fused kernel (flash / memory-efficient attention)."""
        T, S = q.size(2), k.size(2)
        dropout = self.dropout if self.training else 0.0
        if past == 0:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        if T == 1:   # a generation step: the one new query comes after every key, so nothing is masked
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        mask = self.causal_mask[:, :, past:past + T, :S].bool()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> 4C -> GELU (tanh form, as GPT-2) -> C."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TODO(mlp-forward): x (B, T, C) -> self.c_fc -> (B, T, 4C) -> gelu (the function above, not
        # F.gelu) -> self.c_proj -> (B, T, C) -> self.dropout; return that. Pitfall: GELU sits between the
        # two layers (not after c_proj), and dropout comes last.
        ### BEGIN SOLUTION
        return self.dropout(self.c_proj(gelu(self.c_fc(x))))
        ### END SOLUTION


class Block(nn.Module):
    """One transformer layer: attention then MLP, each with a pre-LayerNorm and a residual connection."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: "KVCache | None" = None, layer: int = 0) -> torch.Tensor:
        # TODO(block-forward): x (B, T, C) -> (B, T, C), pre-LayerNorm with residual connections:
        #   x = x + attn(ln_1(x))      (call self.attn(..., kv_cache, layer): generation needs the cache)
        #   x = x + mlp(ln_2(x))
        # Pitfalls: the LayerNorm goes on the branch's input, not on the sum (that is post-LN, the original
        # Transformer; GPT-2's weights would not load right); keep the "x +" (the residual stream).
        ### BEGIN SOLUTION
        x = x + self.attn(self.ln_1(x), kv_cache, layer)
        x = x + self.mlp(self.ln_2(x))
        return x
        ### END SOLUTION


class KVCache:
    """Keys and values of the positions already processed, for every layer.

    In generation each new token only needs its own query against all earlier keys/values,
    which do not change, so keeping them turns each step from O(T) tokens of work into one.
    Buffers are allocated once at full size: (B, nh, capacity, hs) per layer. Each layer's
    attention appends at position `length`; the model calls advance(T) once all layers have.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, capacity: int, head_size: int,
                 device, dtype):
        shape = (batch, n_head, capacity, head_size)
        self.k = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.empty(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.capacity = capacity
        self.length = 0   # positions stored and complete in every layer

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, nh, T, hs) after the past; return all keys and values (B, nh, length + T, hs)."""
        # TODO(kv-cache-append): self.k[layer] and self.v[layer] are (B, nh, capacity, hs) buffers whose
        # positions 0..self.length-1 already hold the past. Copy k and v (B, nh, T, hs) into positions
        # self.length .. self.length + T - 1 (dim 2) by slice assignment, then return the views
        # self.k[layer][:, :, :end] and self.v[layer][:, :, :end], end = self.length + T.
        # Pitfalls: write after the past, not at 0; do not change self.length here (every layer appends
        # at the same position; the model calls advance(T) once all have); return slices of the buffers
        # (views, no copy), not torch.cat (that would allocate at every step).
        ### BEGIN SOLUTION
        end = self.length + k.size(2)
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]
        ### END SOLUTION

    def advance(self, T: int) -> None:
        """The T positions every layer has just appended become part of the past."""
        self.length += T

    def reset(self) -> None:
        self.length = 0


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),   # token embeddings
            wpe=nn.Embedding(config.block_size, config.n_embd),   # position embeddings
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        for _ in range(config.n_layer):   # one at a time, so that at most two masks exist at once
            self.transformer.h.append(Block(config))
            self._share_causal_mask()
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            # The same matrix reads tokens in and scores them out (Press & Wolf, 2017).
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the init of layers that write into the residual stream by 1/sqrt(2 * n_layer),
        # so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _share_causal_mask(self) -> None:
        """Every layer uses the same block_size x block_size mask: keep one tensor, not n_layer copies."""
        first = self.transformer.h[0].attn.causal_mask
        for block in self.transformer.h:
            block.attn.causal_mask = first

    def _apply(self, fn, *args, **kwargs):
        # .to(device) and .half() convert each layer's buffer separately: share the result again.
        super()._apply(fn, *args, **kwargs)
        self._share_causal_mask()
        return self

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _hidden(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) -> final hidden states (B, T, C), after ln_f."""
        B, T = idx.shape
        past = kv_cache.length if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of length {past + T} is longer than block_size={self.config.block_size}")
        # TODO(gpt-forward): the hidden states x (B, T, C):
        #  1. positions pos = past, past+1, ..., past+T-1 (torch.arange on idx.device): with a KV cache
        #     the T tokens come after the `past` ones already seen, so they do not start at 0
        #  2. x = self.transformer.wte(idx) (B, T, C) + self.transformer.wpe(pos) (T, C, broadcast over B)
        #  3. x = self.transformer.drop(x)
        #  4. each block of self.transformer.h in turn: x = block(x, kv_cache, i) (i = the layer's index)
        #  5. the final LayerNorm: x = self.transformer.ln_f(x) (easy to forget: GPT-2 has it)
        ### BEGIN SOLUTION
        pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)   # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)                 # (B, T, C)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, i)                                             # (B, T, C)
        x = self.transformer.ln_f(x)
        ### END SOLUTION
        if kv_cache is not None:
            kv_cache.advance(T)
        return x

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                mask: torch.Tensor | None = None):
        """idx: (B, T) token ids. targets: (B, T), the next token at each position.
        mask: (B, T) of 0/1; positions with 0 (padding) do not count in the loss.

        Returns logits (B, T, V) and the mean cross-entropy over counted positions (or None).
        """
        # TODO(gpt-forward): logits = self.lm_head(hidden states of idx from self._hidden) -> (B, T, V)
        # (lm_head shares its matrix with wte when tie_weights: use self.lm_head, not a new layer); loss is
        # None without targets, else lm_loss(logits, targets, mask) (mask: padding does not count).
        ### BEGIN SOLUTION
        logits = self.lm_head(self._hidden(idx))                                  # (B, T, V)
        loss = None
        if targets is not None:
            loss = lm_loss(logits, targets, mask)
        ### END SOLUTION
        return logits, loss

    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 do_sample: bool = False, top_k: int | None = None, top_p: float | None = None,
                 eos_id: int | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend idx (B, T) by up to max_new_tokens tokens; returns (B, T + new).

        Greedy (argmax) unless do_sample; sampling uses temperature, then top-k, then top-p.
        With eos_id, a row that has produced it keeps producing it, and generation stops once
        every row has. Contexts longer than block_size are cropped from the left.

        The KV cache gives exactly the tokens of recomputation. While the context fits in
        block_size each step feeds only the newest token; once it no longer fits, every
        position shifts (positions are learned, absolute), so the cache is rebuilt from the
        cropped context at each step, which costs what recomputation costs.
        """
        return generate(self, idx, max_new_tokens, temperature, do_sample, top_k, top_p, eos_id, use_cache,
                        generator)

    def new_cache(self, batch: int) -> KVCache:
        """An empty KV cache for generating `batch` sequences (gpt.sampling.generate asks for it)."""
        cfg = self.config
        p = self.transformer.wte.weight
        return KVCache(cfg.n_layer, batch, cfg.n_head, cfg.block_size, cfg.n_embd // cfg.n_head,
                       p.device, p.dtype)

    def next_logits(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (B, V) of the token after idx (B, T): the step of gpt.sampling.generate.

        Without a cache the last block_size tokens are run through the model. With one, only the
        tokens it has not seen yet are fed (one per step) while the context fits in block_size;
        past that, positions shift, so the cache is refilled from the cropped context.
        """
        block = self.config.block_size
        with fused_inference():
            if cache is None:
                h = self._hidden(idx[:, -block:])
            elif 0 < cache.length and idx.size(1) <= block:
                h = self._hidden(idx[:, cache.length:], cache)      # only the new tokens
            else:
                cache.reset()
                h = self._hidden(idx[:, -block:], cache)
            return self.lm_head(h[:, -1, :])                         # (B, V): only the last position

    @classmethod
    def from_hf_gpt2(cls, state_dict: dict, cfg: GPTConfig) -> "GPT":
        """Build a GPT from a transformers GPT2LMHeadModel (or GPT2Model) state dict.

        The names already match ours; transformers stores the four projection matrices as
        Conv1D weights of shape (in, out), so those are transposed into Linear's (out, in).
        """
        model = cls(cfg)
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        sd = {}
        for name, tensor in state_dict.items():
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # transformers' own mask buffers
            if not name.startswith(("transformer.", "lm_head.")):
                name = "transformer." + name
            sd[name] = tensor.t() if name.endswith(conv1d) else tensor
        if "lm_head.weight" not in sd and cfg.tie_weights:
            sd["lm_head.weight"] = sd.get("transformer.wte.weight")
        own = model.state_dict()
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        if missing or unexpected:
            raise ValueError(f"state dict does not fit GPTConfig: missing {missing[:4]}, unexpected {unexpected[:4]}")
        for name, tensor in sd.items():
            if tuple(tensor.shape) != tuple(own[name].shape):
                raise ValueError(f"{name}: shape {tuple(tensor.shape)} in the state dict, "
                                 f"{tuple(own[name].shape)} for this GPTConfig")
        model.load_state_dict(sd)
        return model


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over the positions where mask is 1 (all when mask is None).

    logits (B, T, V), targets (B, T), mask (B, T). Computed in fp32 even under autocast.
    """
    flat_logits = logits.reshape(-1, logits.size(-1)).float()      # (N, V), N = B * T
    flat_mask = None if mask is None else mask.reshape(-1)         # (N,)
    return _CrossEntropyFunction.apply(flat_logits, targets.reshape(-1), flat_mask)


class _CrossEntropyFunction(torch.autograd.Function):
    """Cross-entropy with its gradient written out (given): dL/dlogits = weight * (softmax - one_hot),
    one (N, V) tensor in the backward pass where autograd would need several (V = 4096 makes them big)."""

    @staticmethod
    def forward(ctx, logits, targets, mask):
        # TODO(cross-entropy): the loss from logits (N, V), targets (N,) (token ids) and mask (N,) of 0/1
        # or None. Define (the backward pass below needs your `weights`):
        #   lse[n] = log(sum_v exp(logits[n, v]))                     -> (N,). Numerically stable: with
        #            top = the row's largest logit (amax, keepdim=True), lse = log(sum exp(logits - top)) + top
        #            (exp(1e4) overflows to inf; exp(logits - top) <= 1). torch.logsumexp also does this.
        #   nll[n] = lse[n] - logits[n, targets[n]]                   -> (N,)  (gather along dim 1)
        #   weights = 1/N everywhere without a mask, else mask / (number of ones in mask) -> (N,),
        #            so that padding (mask 0) counts neither in the sum nor in the count; if the mask has
        #            no ones at all, divide by 1 instead of 0 (the loss is then 0)
        #   loss = sum of nll * weights                                -> a 0-dim tensor
        # Not allowed here: F.cross_entropy, F.log_softmax, F.nll_loss. This runs outside autograd: an
        # in-place exp_() on your own (N, V) temporary saves one copy of it.
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
        loss = (nll * weights).sum()
        ### END SOLUTION
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
