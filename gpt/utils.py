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


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions use TF32 tensor cores (Ampere and newer GPUs; no effect elsewhere)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read afterwards measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# Dense (no sparsity) bf16/fp16 tensor-core peaks from the vendors' data sheets, TFLOP/s.
# Checked in order: the first name found in the device name wins.
DEVICE_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0)]


def peak_tflops(device: torch.device) -> float | None:
    """The dense bf16 peak of a known CUDA GPU, else None (CPU, MPS, GPUs not in the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in DEVICE_PEAK_TFLOPS if key in name), None)


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
    from gpt.model import count_parameters
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
