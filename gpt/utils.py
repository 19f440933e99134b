"""Small helpers shared by the package: user errors, atomic file writes, seeding, devices, plots."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile

import torch


class UserError(Exception):
    """A problem with the user's input (a flag, a file, the machine). The command line prints
    it as one line, `error: <message>`, and exits with code 2; no traceback."""


# -- files ----------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_open(path: str | os.PathLike):
    """Open a binary file for writing so that `path` holds either its old content or the whole new one.

    Writes go to a temporary file in the same folder, which is flushed to disk (fsync) and then
    renamed over `path` (a rename within one file system is atomic). If anything fails, or the
    process is killed, `path` is untouched and the temporary file is removed (or left as a
    hidden .tmp file after kill -9, never as `path`).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def ensure_dir(path: str | os.PathLike) -> str:
    """Create a folder (and parents) and check it is writable; UserError if not."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"cannot write to {path} ({e.strerror}); choose another --out-dir") from None
    return path


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# -- randomness and devices ----------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)   # also seeds every CUDA device


def choose_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu. Asking for a device that is not there is a UserError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for but CUDA is not available here; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for but MPS is not available here; use --device auto or cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# -- plots ---------------------------------------------------------------------------------

def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as PNG atomically, and close it."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(records: list[dict], out_dir: str | os.PathLike) -> list[str]:
    """Write loss.png and ppl.png from metrics.jsonl records: train and validation against
    iterations (bottom axis) with wall-clock minutes on a top axis. Perplexity on a log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "eval"]
    written = []
    for key, label, fname, log in (("loss", "loss (nats / token)", "loss.png", False),
                                   ("ppl", "perplexity (per token)", "ppl.png", True)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if train:
            ax.plot([r["iter"] for r in train], [r[key] for r in train], label="train", alpha=0.8)
        if valid:
            ax.plot([r["iter"] for r in valid], [r[f"valid_{key}"] for r in valid], "o-", label="validation")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        both = train + valid
        if len(both) >= 2:
            # A second x axis with wall-clock minutes, mapped linearly from the iteration axis.
            pts = sorted((r["iter"], r["time"] / 60) for r in both)
            (i0, t0), (i1, t1) = pts[0], pts[-1]
            if i1 > i0:
                slope = (t1 - t0) / (i1 - i0)
                if slope > 0:
                    top = ax.secondary_xaxis("top", functions=(lambda i: t0 + (i - i0) * slope,
                                                               lambda t: i0 + (t - t0) / slope))
                    top.set_xlabel("wall-clock (minutes)")
        fig.tight_layout()
        path = os.path.join(os.fspath(out_dir), fname)
        save_figure(fig, path)
        written.append(path)
    return written


# -- command line ----------------------------------------------------------------------------

class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (`error: ...`) and exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _typed(convert, check, what):
    """An argparse `type` that converts with `convert` and accepts only values passing `check`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


positive_int = _typed(int, lambda v: v > 0, "a positive integer")
non_negative_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _typed(float, lambda v: v > 0, "a positive number")
non_negative_float = _typed(float, lambda v: v >= 0, "a non-negative number")
probability = _typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def run_cli(fn) -> int:
    """Run a command; a UserError (or a bad value caught as ValueError) becomes one line and exit 2."""
    try:
        return fn() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if getattr(e, "exit_code", None) is None:   # only our own stop-and-resume exceptions
            raise
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- training-memory estimate ------------------------------------------------------------------

OPTIMIZER_STATE_BYTES = {"sgd": 0, "momentum": 4, "adam": 8, "adamw": 8}   # fp32 state per parameter


def estimate_training_memory(cfg, batch_size: int, seq_len: int | None = None, optimizer: str = "adamw",
                             precision: str = "fp32", attn_impl: str | None = None) -> dict:
    """Bytes needed to train GPT(cfg) on batches of batch_size x seq_len tokens, by component.

    Model states (per parameter N): weights 4N and gradients 4N (fp32; under bf16 autocast PyTorch
    keeps fp32 weights and gradients too), optimizer state (sgd 0, momentum 4N, adam/adamw 8N for
    the two moments); with bf16 autocast add 2N for the bf16 copies of the weights used in matmuls.
    Adam in mixed precision is thus 16 (+2) bytes per parameter, as in the ZeRO paper's 16 bytes.

    Activations saved for the backward pass, per layer (Korthikanti et al. 2022, "Reducing
    activation recomputation"), with s = seq_len, b = batch, h = n_embd, a = n_head, and 2-byte
    activations: s*b*h*(34 + 5*a*s/h) bytes; the 5*a*s/h part is the T x T attention (scores,
    softmax, dropout mask), which the fused kernel does not store (it keeps O(s) statistics).
    In fp32 the activations take twice the bytes (masks stay 1 byte: we use 2x as the estimate).
    Logits: b*s*V values kept in the activation dtype plus the fp32 copy the loss uses, and the
    embedding output s*b*h.
    """
    from gpt.model import count_parameters
    s = seq_len or cfg.block_size
    b, h, a, L, V = batch_size, cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.vocab_size
    n = count_parameters(cfg)
    act_bytes = 2 if precision in ("bf16", "fp16") else 4
    attn = attn_impl or cfg.attn_impl
    per_layer_16bit = s * b * h * (34 + (5 * a * s / h if attn == "manual" else 0))
    activations = L * per_layer_16bit * (act_bytes / 2) + s * b * h * act_bytes
    logits = b * s * V * (act_bytes + 4)
    states = {
        "parameters": 4 * n,
        "gradients": 4 * n,
        "optimizer_state": OPTIMIZER_STATE_BYTES[optimizer] * n,
        "weight_copies": 2 * n if precision in ("bf16", "fp16") else 0,
    }
    out = {**states, "activations": int(activations), "logits": int(logits)}
    out["total"] = sum(out.values())
    return out
