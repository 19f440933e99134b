"""Which model and training settings a run uses: explicit values > a named preset > the `auto` profile >
the dataclasses' defaults.

The `auto` profile is what `python main.py` trains. The CPU profile finishes in about 5 minutes on a
2-core laptop; the GPU profile is the full homework run (README.md has the measurements).
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch

from gpt.checkpoint import MODEL_KINDS
from gpt.sizing import preset_sizes
from gpt.trainer import TrainConfig

AUTO_PROFILES = {
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0, vocab_size=4096,
                batch_size=32, learning_rate=2e-3, warmup_iters=50, max_iters=600, eval_interval=300,
                precision="fp32"),
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, vocab_size=8192,
                batch_size=64, learning_rate=1e-3, warmup_iters=200, max_iters=5000, eval_interval=250,
                patience=4, precision="bf16"),
}
# Set by the caller from its own state, never from the profile or the flags.
RUN_FIELDS = ("device", "out_dir", "resume", "progress")


def auto_profile(device_type: str) -> dict:
    return dict(AUTO_PROFILES["gpu" if device_type == "cuda" else "cpu"])


def resolve_settings(given: dict, device_type: str, preset: str = "auto", fast: bool = False,
                     kind: str = "gpt") -> tuple[dict, dict]:
    """(model settings, training settings) for a run.

    given: values chosen explicitly (None = not chosen), named as the fields of the model kind's
    config and of TrainConfig. fast: fused attention, and on CUDA bf16 autocast and torch.compile.
    """
    profile = auto_profile(device_type)
    if preset != "auto":
        profile.update(preset_sizes(preset))
    if fast:
        profile["attn_impl"] = "sdpa"
        if device_type == "cuda":
            profile.update(precision="bf16", compile=True)
    if profile.get("precision") == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        profile["precision"] = "fp16" if fast else "fp32"
    pick = lambda name: given[name] if given.get(name) is not None else profile.get(name)
    model_cfg = MODEL_KINDS[kind][1]
    model = {f.name: v for f in fields(model_cfg) if f.name != "vocab_size" and (v := pick(f.name)) is not None}
    train = {f.name: v for f in fields(TrainConfig) if f.name not in RUN_FIELDS and (v := pick(f.name)) is not None}
    return model, train


def iters_for_epochs(epochs: float, n_tokens: int, block_size: int, batch_size: int, grad_accum: int = 1) -> int:
    """Iterations that take every training window (of block_size + 1 tokens) `epochs` times."""
    windows = (n_tokens - 1) // block_size
    return max(1, math.ceil(epochs * (windows // (batch_size * grad_accum))))


def build_config(kind: str, vocab_size: int, settings: dict):
    """The config of a model kind ("gpt" or "lstm") from resolved settings (extra keys are ignored)."""
    cfg_cls = MODEL_KINDS[kind][1]
    names = {f.name for f in fields(cfg_cls)}
    return cfg_cls(vocab_size=vocab_size, **{k: v for k, v in settings.items() if k in names})


def build_model(kind: str, vocab_size: int, settings: dict):
    """(model, config) of a model kind from resolved settings."""
    cfg = build_config(kind, vocab_size, settings)
    return MODEL_KINDS[kind][0](cfg), cfg


def describe(cfg) -> str:
    if hasattr(cfg, "n_hidden"):
        return f"LSTM, {cfg.n_layer} layers, embedding {cfg.n_embd}, hidden {cfg.n_hidden}, context {cfg.block_size}"
    return f"GPT, {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, context {cfg.block_size}"
