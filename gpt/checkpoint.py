"""Checkpoints: one self-contained file holding everything needed to sample, evaluate or resume.

A checkpoint is a dict saved with torch.save and written atomically (gpt.utils.atomic_torch_save):
the model kind and config, the weights, the optimizer and gradient-scaler state, the RNG states,
the training progress (iteration, best validation perplexity, ...), the TrainConfig, the tokenizer,
and `extra` (how the data was made). It loads with `weights_only=True`: plain tensors and Python
values, nothing that could run code.
"""

from __future__ import annotations

import os
from dataclasses import asdict

import torch
import torch.nn as nn

from gpt.bpe import BPETokenizer
from gpt.lstm import LSTMConfig, LSTMLanguageModel
from gpt.model import GPT, GPTConfig
from gpt.utils import atomic_torch_save

FORMAT = "hw5-checkpoint"
VERSION = 1

# The model kinds the kit trains: kind -> (model class, config class).
MODEL_KINDS = {"gpt": (GPT, GPTConfig), "lstm": (LSTMLanguageModel, LSTMConfig)}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, foreign, or for another model than the one asked for."""


def kind_of(model: nn.Module) -> str:
    for kind, (cls, _) in MODEL_KINDS.items():
        if isinstance(model, cls):
            return kind
    raise ValueError(f"cannot checkpoint a {type(model).__name__}: not one of the model kinds {list(MODEL_KINDS)}")


def make_checkpoint(model: nn.Module, optimizer, scaler, progress: dict, train_config=None,
                    tokenizer: BPETokenizer | None = None, extra: dict | None = None) -> dict:
    """The checkpoint dict; `progress` holds the loop's counters (iteration, best_valid_ppl, ...)."""
    return {
        "format": FORMAT, "version": VERSION,
        "model_kind": kind_of(model), "model_config": asdict(model.config),
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        **progress,
        "train_config": asdict(train_config) if train_config is not None else None,
        "extra": extra or {},
        "tokenizer": tokenizer.to_dict() if tokenizer is not None else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def save_checkpoint(ckpt: dict, path: str | os.PathLike) -> None:
    atomic_torch_save(ckpt, path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint: FileNotFoundError if missing, CheckpointError if truncated or foreign."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise FileNotFoundError(f"{path} is a folder, not a checkpoint file (e.g. {os.path.join(path, 'best.pt')})")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":   # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a checkpoint (not a file written by torch.save)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:   # torch.load raises many kinds of error for a damaged archive
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated (could not be read back); "
                              "use another checkpoint, e.g. last.pt or best.pt of the same run") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a hw5 checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {ckpt.get('version')}; this code reads {VERSION}")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu"):
    """(model in eval mode on `device`, tokenizer or None) from a checkpoint dict."""
    if ckpt["model_kind"] not in MODEL_KINDS:
        raise CheckpointError(f"checkpoint holds a {ckpt['model_kind']!r} model, which this code does not know")
    cls, cfg_cls = MODEL_KINDS[ckpt["model_kind"]]
    model = cls(cfg_cls(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    tok = BPETokenizer.from_dict(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    return model.to(device).eval(), tok


def restore(ckpt: dict, model: nn.Module, optimizer, scaler) -> None:
    """Load weights, optimizer, scaler and RNG states into a training run, exactly where it stopped."""
    if ckpt["model_config"] != asdict(model.config):
        raise CheckpointError("the checkpoint was trained with a different model configuration")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler.is_enabled() and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng_cpu"].cpu())
    if ckpt["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng_cuda"]])
