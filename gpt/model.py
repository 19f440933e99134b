"""GPT, a decoder-only transformer language model, written out in full. GPT-2's architecture, so
GPT-2 weights load exactly: token + learned position embeddings, n_layer x Block (pre-LayerNorm:
x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))), a final LayerNorm, and an output layer tied to the
token embedding. Shapes: B batch, T sequence length, C = n_embd, nh = n_head, hs = C // nh, V vocab.
LayerNorm, GELU and the loss are the functions of gpt/functional.py (through gpt/kernels.py, which
gives them fast backward passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt import kernels
from gpt.kernels import fused_inference, gelu, lm_loss  # noqa: F401  (gelu and lm_loss: the model's own)
from gpt.sampling import generate
from gpt.sizing import PRESETS, check_sizes, count_parameters, flops_per_token, preset_sizes  # noqa: F401

ATTN_IMPLS = ("manual", "sdpa")


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
            y = self.attend(q, k, v, past)                          # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)             # heads side by side: (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def attend(self, q, k, v, past: int) -> torch.Tensor:
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
        # TODO(mlp-forward): x (B, T, C) -> self.c_fc -> (B, T, 4C) -> gelu -> self.c_proj -> (B, T, C)
        # -> self.dropout; return that. `gelu` is the one imported above (gpt/functional.py's GELU with
        # its backward pass, from gpt/kernels.py). Pitfall: GELU sits between the two layers (not after
        # c_proj), and dropout comes last.
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


class LayerNorm(nn.Module):
    """Layer normalization over the last dimension (nn.LayerNorm's computation and parameter names, so
    GPT-2 checkpoints load): y = (x - mean) / sqrt(var + eps) * weight + bias, per position."""

    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_embd))                      # gain, starts at 1
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None      # shift, starts at 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.layer_norm(x, self.weight, self.bias, self.eps)   # gpt/functional.py's layer_norm


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

    def hidden_states(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
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
        # TODO(gpt-forward): logits = self.lm_head(hidden states of idx from self.hidden_states) -> (B, T, V)
        # (lm_head shares its matrix with wte when tie_weights: use self.lm_head, not a new layer); loss is
        # None without targets, else lm_loss(logits, targets, mask) (mask: padding does not count).
        ### BEGIN SOLUTION
        logits = self.lm_head(self.hidden_states(idx))                            # (B, T, V)
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
                h = self.hidden_states(idx[:, -block:])
            elif 0 < cache.length and idx.size(1) <= block:
                h = self.hidden_states(idx[:, cache.length:], cache)      # only the new tokens
            else:
                cache.reset()
                h = self.hidden_states(idx[:, -block:], cache)
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
