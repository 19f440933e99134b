"""Which model and training settings a run uses: explicit values > a named preset > the `auto` profile >
the dataclasses' defaults.

The `auto` profile is what `python main.py` trains. The CPU profile finishes in about 5 minutes on a
2-core laptop; the GPU profile is the full homework run (README.md has the measurements).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace

import torch

from gpt.checkpoint import MODEL_KINDS
from gpt.sizing import preset_sizes
from gpt.trainer import TrainConfig

# The CPU profile was chosen by benchmarks/sweep.py (benchmarks/RESULTS.md has the table): in the
# training time of the previous profile (4 layers, width 128, context 128, batch 32, fp32, lr 2e-3, 600
# iterations: 1.87 bits per byte on WikiText-2 valid) a shorter context with a larger batch, bf16
# autocast (1.5x faster steps on a CPU with native bf16) and a larger learning rate reach 1.67.
AUTO_PROFILES = {
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, vocab_size=4096,
                batch_size=64, learning_rate=4e-3, warmup_iters=50, max_iters=1000, eval_interval=500,
                precision="bf16"),
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, vocab_size=8192,
                batch_size=64, learning_rate=1e-3, warmup_iters=200, max_iters=5000, eval_interval=250,
                patience=4, precision="bf16"),
}
# The CPU run is short and its iterations fixed: on a small corpus they would be many epochs (over 40 on
# the built-in text, whose validation perplexity doubled between its 12th and 24th epoch), so unless
# --max-iters or --epochs is given it makes at most this many passes over the training windows, and a
# run so shortened evaluates every epoch and stops after two without a new best. The GPU profile stops
# early anyway (patience).
AUTO_MAX_EPOCHS = {"cpu": 10.0, "gpu": None}
SHORTENED_PATIENCE = 2
# Set from the run's own state (device, folder, resume), never from the profile.
RUN_FIELDS = ("device", "out_dir", "resume", "progress")
# TrainConfig's defaults: their one home is the dataclass (read here, never restated).
TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
FINE_TUNE_LR = 1e-4   # --init-from: a pretrained model needs small steps (its own schedule ended near 0)


@dataclass(frozen=True)
class RunSpec:
    """Everything a training run is: the model kind, its config and the training config."""
    kind: str        # "gpt" or "lstm"
    model: object    # GPTConfig or LSTMConfig (for --init-from: the pretrained model's, resized)
    train: TrainConfig


def run_spec(given: dict, device: torch.device, n_train_tokens: int, vocab_size: int, pretrained=None) -> RunSpec:
    """The one settings step: the parsed arguments (as a dict: `vars(args)`), the device and the size of
    the training split -> the run's spec. Explicit values > a named preset > the `auto` profile > the
    dataclasses' defaults; --epochs becomes iterations; a small corpus caps the CPU run (fit_to_corpus).
    pretrained: the config of a model to fine-tune (--init-from) instead of a new one. ValueError names
    a bad combination."""
    given, device_type = dict(given), device.type
    kind = given.get("model") or "gpt"
    if pretrained is not None and given.get("learning_rate") is None:
        given["learning_rate"] = FINE_TUNE_LR
    model_settings, train_settings = resolve_settings(given, device_type, given.get("preset") or "auto",
                                                      bool(given.get("fast")), kind)
    block = model_settings["block_size"]
    epochs = given.get("epochs")
    if epochs is not None:   # one epoch = every training window once
        train_settings["max_iters"] = iters_for_epochs(epochs, n_train_tokens, block, *_batch(train_settings))
    train_settings = fit_to_corpus(train_settings, given, device_type, n_train_tokens, block)
    out_dir = given.get("out_dir") or TRAIN_DEFAULTS["out_dir"]
    resume = bool(given.get("resume")) or bool(given.get("auto_resume")) and os.path.exists(
        os.path.join(out_dir, "last.pt"))
    train = TrainConfig(device=str(device), out_dir=out_dir, resume=resume,
                        progress=not given.get("no_progress"), **train_settings)
    if pretrained is not None:
        model = replace(pretrained, block_size=given.get("block_size") or pretrained.block_size,
                        dropout=model_settings.get("dropout", 0.0))
    else:
        model = build_config(kind, vocab_size, model_settings)
    return RunSpec(kind, model, train)


def _batch(train: dict) -> tuple[int, int]:
    """(batch size, gradient accumulation) of resolved training settings."""
    return (train.get("batch_size", TRAIN_DEFAULTS["batch_size"]),
            train.get("grad_accum", TRAIN_DEFAULTS["grad_accum"]))


# Where bf16 is emulated (a CPU without AVX512-BF16 or AMX, or an Apple GPU) it is slower than fp32:
# there the CPU profile trains in fp32, for the iterations that take the same time.
CPU_FP32 = dict(precision="fp32", max_iters=650, eval_interval=325)


def auto_profile(device_type: str) -> dict:
    if device_type == "cuda":
        return dict(AUTO_PROFILES["gpu"])
    profile = dict(AUTO_PROFILES["cpu"])
    if device_type != "cpu" or not cpu_has_bf16():
        profile.update(CPU_FP32)
    return profile


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products natively (AVX512-BF16 or AMX tiles)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")   # private, so looked up with care
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


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


def fit_to_corpus(train: dict, given: dict, device_type: str, n_tokens: int, block_size: int) -> dict:
    """Training settings with max_iters cut to AUTO_MAX_EPOCHS passes over n_tokens, when the flags chose
    neither --max-iters nor --epochs; a shortened run also evaluates every epoch, stops early after
    SHORTENED_PATIENCE evaluations without a new best, and warms up for at most a tenth of the run
    (unless those were chosen too)."""
    cap = AUTO_MAX_EPOCHS["gpu" if device_type == "cuda" else "cpu"]
    if cap is None or given.get("max_iters") is not None or given.get("epochs") is not None:
        return train
    iters = iters_for_epochs(cap, n_tokens, block_size, *_batch(train))
    if iters >= train.get("max_iters", iters):
        return train
    out = dict(train, max_iters=iters)
    if given.get("eval_interval") is None:
        out["eval_interval"] = iters_for_epochs(1, n_tokens, block_size, *_batch(train))
    if given.get("patience") is None:
        out["patience"] = SHORTENED_PATIENCE
    if given.get("warmup_iters") is None:
        out["warmup_iters"] = min(train.get("warmup_iters", 0), iters // 10)
    return out


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
