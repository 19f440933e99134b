"""How big a model is and what it costs: named sizes, parameter counts, FLOPs, MFU, training memory.

Everything here is computed from a config alone (no model is built), so it works for GPT-3 too.
The functions take a GPTConfig (or anything with its fields); gpt.model re-exports
`count_parameters`, `flops_per_token` and `PRESETS` as part of its public API.
"""

from __future__ import annotations

import os

import torch

# name -> (n_layer, n_head, n_embd, default block_size)
PRESETS = {
    "gpt-nano": (3, 3, 48, 128),
    "gpt-micro": (4, 4, 128, 128),
    "gpt-mini": (6, 6, 192, 256),
    "gopher-44m": (8, 16, 512, 1024),
    "gpt2": (12, 12, 768, 1024),
    "gpt2-medium": (24, 16, 1024, 1024),
    "gpt2-large": (36, 20, 1280, 1024),
    "gpt2-xl": (48, 25, 1600, 1024),
    "gpt3": (96, 96, 12288, 2048),
}


def preset_sizes(name: str, block_size: int | None = None) -> dict:
    """n_layer, n_head, n_embd and block_size (the preset's unless given) of a named size."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    n_layer, n_head, n_embd, default_block = PRESETS[name]
    return dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size or default_block)


def check_sizes(cfg, names) -> None:
    """ValueError naming the field unless each of `names` is a positive int and dropout is in [0, 1)."""
    kind = type(cfg).__name__
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{kind}.{name} must be a positive integer, got {value!r}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError(f"{kind}.dropout must be in [0, 1), got {cfg.dropout!r}")


def count_parameters(cfg, non_embedding: bool = False) -> int:
    """Exact number of trainable parameters of GPT(cfg), computed from the config alone.

    Per block: two LayerNorms (weight + bias: 2C each), attention (qkv: 3C*C + 3C, output
    projection: C*C + C, that is 4(C^2 + C) in all), MLP (C -> 4C -> C: 8C^2 + 5C).
    Around the blocks: token table V*C, position table T*C, final LayerNorm, and an output
    layer V*C unless it is tied to the token table. non_embedding=True leaves out both tables
    (and the untied output layer), the convention of the scaling-law papers.
    """
    C, V, T, L = cfg.n_embd, cfg.vocab_size, cfg.block_size, cfg.n_layer
    b = 1 if cfg.bias else 0
    layer_norm = C + b * C
    attention = 4 * C * C + b * 4 * C
    mlp = 8 * C * C + b * 5 * C
    blocks = L * (2 * layer_norm + attention + mlp)
    embeddings = V * C + T * C + (0 if cfg.tie_weights else V * C)
    return blocks + layer_norm + (0 if non_embedding else embeddings)


def flops_per_token(cfg, seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token at context seq_len: 6N + 12*L*H*Q*T.

    PaLM's accounting (Chowdhery et al. 2022, appendix B): every weight takes part in one
    multiply-add per token forward (2 FLOPs) and two backward (4 FLOPs), hence 6N; the attention
    scores q.k and the weighted sum of values add 2*2*T*Q per head and layer forward, times 3
    with the backward, hence 12*L*H*Q*T. N leaves out the position table (a lookup costs no
    FLOPs) but keeps the token table, which is also the output layer's matrix when tied.
    Masked (future) positions are counted too, as is the convention.
    """
    T = seq_len or cfg.block_size
    n = count_parameters(cfg) - cfg.block_size * cfg.n_embd
    if not cfg.tie_weights:
        n -= cfg.vocab_size * cfg.n_embd     # the input table is only a lookup; the output layer stays
    head_size = cfg.n_embd // cfg.n_head
    return 6 * n + 12 * cfg.n_layer * cfg.n_head * head_size * T


# -- model FLOPs utilisation -------------------------------------------------------------------

# Dense (no sparsity) bf16/fp16 tensor-core peaks from the vendors' data sheets, TFLOP/s.
# Checked in order: the first name found in the device name wins.
DEVICE_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]


def peak_tflops(device: torch.device) -> float | None:
    """The dense bf16 peak of a known CUDA GPU, else None (CPU, MPS, GPUs not in the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in DEVICE_PEAK_TFLOPS if key in name), None)


def estimate_mfu(cfg, seq_len: int, tokens_per_sec: float, peak: float) -> float:
    """Model FLOPs utilisation: the FLOP/s the model needs at this speed over the device's peak (TFLOP/s).

    tokens_per_sec is one device's share (a job on G GPUs divides its rate by G)."""
    return tokens_per_sec * flops_per_token(cfg, seq_len) / (peak * 1e12)


# -- training-memory estimate ------------------------------------------------------------------

OPTIMIZER_STATE_BYTES = {"sgd": 0, "momentum": 4, "adam": 8, "adamw": 8}   # fp32 state per parameter


def estimate_training_memory(cfg, batch_size: int, seq_len: int | None = None, optimizer: str = "adamw",
                             precision: str = "fp32", attn_impl: str | None = None, device: str = "cuda") -> dict:
    """Peak bytes of one training step of GPT(cfg) on batch_size x seq_len tokens, by component.

    Model states (N parameters): weights 4N and gradients 4N (fp32; under bf16/fp16 autocast PyTorch
    keeps fp32 weights and gradients too), optimizer state (sgd 0, momentum 4N, adam/adamw 8N for the
    two moments); with autocast add 2N for the 16-bit copies of the weights that the matmuls keep
    for the backward pass. Adam in mixed precision is thus 16 (+2) bytes per parameter (ZeRO: 16).

    Activations saved for the backward pass (Korthikanti et al. 2022, "Reducing activation
    recomputation in large transformer models", who count s*b*h*(34 + 5*a*s/h) bytes per layer at 2
    bytes per value), with s = seq_len, b = batch, h = n_embd, a = n_head, w = bytes per activation
    value (2 under autocast, 4 in fp32) and m = bytes per dropout-mask value (1 on CUDA, which keeps
    masks as bools; w on the CPU, which keeps the scaled noise). Per layer:
      16 values of s*b*h: the inputs of both LayerNorms, of the four matmuls (1 + 1 + 1 + 4), of GELU
      (4), and q, k, v. Under autocast the LayerNorm inputs are the fp32 residual stream: 4 more bytes.
      With dropout, the masks of the two residual branches: 2 * m.
      Hand-written attention also keeps the a*s*s*b softmax output (w), and with dropout the mask (m)
      and the dropped-out copy (w) that multiplies v; the fused kernel keeps only O(s) statistics
      (on the CPU it has no dropout: with dropout PyTorch falls back to a path that stores the matrix).
    Around the layers: the final LayerNorm's input (4), the output layer's input (w) and the
    embedding dropout mask (m). With 2 bytes for every value and 1-byte masks this is the paper's
    34*s*b*h + 5*a*s*s*b; under autocast the fp32 LayerNorm inputs make it 38*s*b*h + 5*a*s*s*b.

    Logits: the loss keeps the fp32 log-softmax, b*s*V*4 bytes (train_step drops the logits themselves
    before the backward pass). At the start of the backward pass two fp32 gradients of that size
    exist at once (of the log-softmax and of the logits): b*s*V*8 bytes.

    The peak is at that moment: weights + optimizer state + weight copies + activations + logits +
    logit gradients. Gradients are not there yet (zero_grad sets them to None); they appear as the
    backward pass frees the activations. The other candidate is the optimizer step: weights +
    optimizer state + gradients + the step's temporaries (the foreach Adam used off CUDA makes one
    of 4N bytes, its denominators; the fused CUDA kernel none). That one wins only for tiny batches:
    total = weights + optimizer state + max(weight copies + activations + logits + logit gradients,
                                            gradients + step temporaries).
    Checked against PyTorch's own memory profiler in tests/test_params.py (within a few per cent).
    """
    s = seq_len or cfg.block_size
    b, h, a, L, V = batch_size, cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.vocab_size
    n = count_parameters(cfg)
    mixed = precision in ("bf16", "fp16")
    w = 2 if mixed else 4
    dropout = cfg.dropout > 0
    m = (1 if device == "cuda" else w) if dropout else 0
    attn = attn_impl or cfg.attn_impl
    per_layer = s * b * h * (16 * w + (4 if mixed else 0) + 2 * m)
    if attn == "manual":
        per_layer += a * s * s * b * (w + (m + w if dropout else 0))
    activations = L * per_layer + s * b * h * (4 + w + m)
    out = {
        "parameters": 4 * n,
        "gradients": 4 * n,
        "optimizer_state": OPTIMIZER_STATE_BYTES[optimizer] * n,
        "weight_copies": 2 * n if mixed else 0,
        "activations": activations,
        "logits": b * s * V * 4,
        "logit_gradients": b * s * V * 8,
    }
    backward_start = out["weight_copies"] + out["activations"] + out["logits"] + out["logit_gradients"]
    step_temporaries = 4 * n if optimizer in ("adam", "adamw") and device != "cuda" else 0
    out["total"] = out["parameters"] + out["optimizer_state"] + max(backward_start, out["gradients"] + step_temporaries)
    return out


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory a training run on `device` can use: the GPU's, or the machine's RAM (CPU, and
    MPS, whose memory is the RAM); None when it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):   # not a POSIX system
        return None


def check_fits(cfg, batch_size: int, optimizer: str, precision: str, device: torch.device) -> None:
    """ValueError when training GPT(cfg) cannot fit in the device's memory even by this estimate
    (which is close: see estimate_training_memory), so that a run too big fails before it allocates
    anything instead of with an allocation traceback (or the machine swapping) minutes later."""
    total = device_memory(device)
    need = estimate_training_memory(cfg, batch_size, cfg.block_size, optimizer, precision,
                                    device="cuda" if device.type == "cuda" else "cpu")["total"]
    need += cfg.block_size ** 2   # the causal mask: one byte per entry, shared by the layers
    if total is not None and need > total:
        raise ValueError(f"training this model needs about {need / 1e9:,.1f} GB (batch {batch_size} x "
                         f"{cfg.block_size} tokens, {cfg.n_layer} layers of width {cfg.n_embd}) but {device} has "
                         f"{total / 1e9:,.1f} GB; lower --block-size or --batch-size (or use --attn-impl sdpa, "
                         "which does not store the block_size x block_size attention)")


MEMORY_FORMULAS = """\
formulas: total = V*C + T*C + L*(12*C^2 + 13*C) + 2*C (tied output layer); states 4N weights + 4N grads
+ optimizer (sgd 0, momentum 4N, adam(w) 8N) + 2N bf16 weight copies; activations per layer
s*b*h*(16w + 4 for fp32 LayerNorm inputs under autocast + 2 masks) + a*s*s*b*(w + mask + w),
w bytes per value (Korthikanti et al. 2022: 34sbh + 5as^2b at w = 2; the a*s*s*b term is the
stored T x T attention, absent with the fused kernel); logits: the fp32 log-softmax b*s*V*4, and
its gradients b*s*V*8 when backward starts.
peak = weights + optimizer + max(copies + activations + logits + logit gradients, gradients), on CUDA.
See gpt/sizing.py estimate_training_memory (checked against PyTorch's memory profiler in the kit's tests)."""


def memory_report(name: str, cfg, batch_size: int, seq_len: int | None, optimizer: str) -> str:
    """The `params` command's text for one configuration: parameter counts and a memory table in GB."""
    T = seq_len or cfg.block_size
    gb = lambda x: f"{x / 1e9:9.3f}"
    lines = [f"{name}: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, vocab {cfg.vocab_size}, "
             f"context {cfg.block_size}",
             f"  parameters: {count_parameters(cfg):,} total, {count_parameters(cfg, non_embedding=True):,} "
             f"non-embedding",
             f"  training memory, GB (1e9 bytes), batch {batch_size} x {T} tokens, optimizer {optimizer}:",
             f"  {'precision':<9} {'attention':<9} {'params':>9} {'grads':>9} {'optim':>9} {'w.copies':>9} "
             f"{'activ.':>9} {'logits':>9} {'logit gr.':>9} {'peak':>9}"]
    for precision in ("fp32", "bf16"):
        for attn in ("manual", "sdpa"):
            m = estimate_training_memory(cfg, batch_size, T, optimizer, precision, attn)
            lines.append(f"  {precision:<9} {attn:<9} {gb(m['parameters'])} {gb(m['gradients'])} "
                         f"{gb(m['optimizer_state'])} {gb(m['weight_copies'])} {gb(m['activations'])} "
                         f"{gb(m['logits'])} {gb(m['logit_gradients'])} {gb(m['total'])}")
    return "\n".join(lines) + "\n"
