"""Trusted references for the graded tests, computed here with PyTorch's own ops, never with the
student's code: GPT-2's forward pass through torch.nn.functional (fused attention, LayerNorm, GELU),
greedy decoding by recomputation, and a tiny language model for the training tests."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention(x: torch.Tensor, sd: dict, prefix: str, n_head: int) -> torch.Tensor:
    """Causal self-attention of GPT-2 (weights named as in gpt.model) via scaled_dot_product_attention."""
    B, T, C = x.shape
    q, k, v = F.linear(x, sd[prefix + "c_attn.weight"], sd.get(prefix + "c_attn.bias")).split(C, dim=2)
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
    return F.linear(y, sd[prefix + "c_proj.weight"], sd.get(prefix + "c_proj.bias"))


def layer_norm(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    """nn.LayerNorm (eps 1e-5) with weights sd[prefix + "weight"] and, if present, sd[prefix + "bias"]."""
    return F.layer_norm(x, (x.size(-1),), sd[prefix + "weight"], sd.get(prefix + "bias"), 1e-5)


def mlp(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    """GPT-2's MLP: c_fc -> tanh GELU -> c_proj (no dropout: eval mode)."""
    h = F.gelu(F.linear(x, sd[prefix + "c_fc.weight"], sd.get(prefix + "c_fc.bias")), approximate="tanh")
    return F.linear(h, sd[prefix + "c_proj.weight"], sd.get(prefix + "c_proj.bias"))


def block(x: torch.Tensor, sd: dict, prefix: str, n_head: int) -> torch.Tensor:
    """One pre-LayerNorm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""
    x = x + attention(layer_norm(x, sd, prefix + "ln_1."), sd, prefix + "attn.", n_head)
    return x + mlp(layer_norm(x, sd, prefix + "ln_2."), sd, prefix + "mlp.")


def gpt2_logits(sd: dict, cfg: dict, idx: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) of a GPT with state dict `sd` (gpt.model's names) and config `cfg`; positions
    start at 0."""
    T = idx.size(1)
    x = sd["transformer.wte.weight"][idx] + sd["transformer.wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        x = block(x, sd, f"transformer.h.{i}.", cfg["n_head"])
    return F.linear(layer_norm(x, sd, "transformer.ln_f."), sd.get("lm_head.weight", sd["transformer.wte.weight"]))


@torch.no_grad()
def greedy(sd: dict, cfg: dict, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy continuation by recomputing the whole (cropped) context at every step."""
    idx = prompt
    for _ in range(new_tokens):
        nxt = gpt2_logits(sd, cfg, idx[:, -cfg["block_size"]:])[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def random_gpt_weights(cfg: dict, seed: int, scale: float = 0.3) -> dict:
    """A state dict for gpt.model.GPT(cfg), random and larger than the usual init, so that attention
    (not just the biases) decides the next token. Built here, so the grader knows it exactly."""
    g = torch.Generator().manual_seed(seed)
    C, V, L = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"]
    r = lambda *shape: torch.randn(*shape, generator=g) * scale
    sd = {"transformer.wte.weight": r(V, C), "transformer.wpe.weight": r(cfg["block_size"], C),
          "transformer.ln_f.weight": 1 + r(C), "transformer.ln_f.bias": r(C)}
    for i in range(L):
        p = f"transformer.h.{i}."
        sd.update({p + "ln_1.weight": 1 + r(C), p + "ln_1.bias": r(C), p + "ln_2.weight": 1 + r(C),
                   p + "ln_2.bias": r(C), p + "attn.c_attn.weight": r(3 * C, C), p + "attn.c_attn.bias": r(3 * C),
                   p + "attn.c_proj.weight": r(C, C), p + "attn.c_proj.bias": r(C),
                   p + "mlp.c_fc.weight": r(4 * C, C), p + "mlp.c_fc.bias": r(4 * C),
                   p + "mlp.c_proj.weight": r(C, 4 * C), p + "mlp.c_proj.bias": r(C)})
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


class TinyLM(nn.Module):
    """A language model that needs none of the student's model code: embedding -> linear, with the
    interface of gpt.model.GPT (`logits, loss = model(idx, targets, mask)`). Also sent to the sandbox
    as a helper, so the student's train_step and evaluation run on exactly this model."""

    def __init__(self, vocab: int = 40, dim: int = 16, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, idx, targets=None, mask=None):
        logits = self.head(torch.tanh(self.emb(idx)))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
