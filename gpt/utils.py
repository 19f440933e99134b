"""Small helpers shared by the package: atomic file writes, seeding, devices, plots."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import random
import shutil
import socket
import sys
import tempfile

import torch


# -- files ----------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_open(path: str | os.PathLike):
    """Open a binary file for writing so that `path` holds either its old content or the whole new one.

    Writes go to a temporary file in the same folder, which is flushed to disk (fsync) and then
    renamed over `path` (a rename within one file system is atomic). If anything fails, or the
    process is killed, `path` is untouched and the temporary file is removed (or left as a
    hidden .tmp file after kill -9, never as `path`: `remove_stale_temporaries` cleans those).
    The file gets the permissions of any new file under the user's umask (mkstemp alone would make
    it 0600, unreadable by the rest of a course group on a shared cluster).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno is None:   # NumPy's short write says only "N requested and M written"
            raise OSError(f"cannot write {path} ({e}: is the disk full?)") from None
        raise


def _temporary_prefix(path: str) -> str:
    return "." + os.path.basename(path) + "."


def _umask() -> int:
    mask = os.umask(0)   # the only way to read it is to set it
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: str | os.PathLike, names) -> list[str]:
    """Delete the hidden temporaries that atomic_open left for `names` in `folder` when a process was
    killed mid-write (kill -9, power loss). Call it before this run writes those files again."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.endswith(".tmp") and any(entry.name.startswith(_temporary_prefix(n)) for n in names):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> None:
    with open(source, "rb") as src, atomic_open(path) as f:
        shutil.copyfileobj(src, f, 1 << 20)


def ensure_dir(path: str | os.PathLike) -> str:
    """Create a folder (and parents) and check it is writable; OSError naming the folder if not."""
    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OSError(e.errno, f"cannot write to {path} ({e.strerror})") from None
    return path


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Replace a JSON-lines file with `records`, atomically."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines file. A last line without its newline is a write that a crash or a
    full disk cut short (appends are not atomic): it is left out. Any other bad line is a ValueError."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    records = []
    for n, line in enumerate(lines[:-1], start=1):   # lines[-1] follows the last newline: empty or cut short
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(f"{path} line {n} is not JSON; delete the file to start its log afresh") from None
    return records


# -- randomness and devices ----------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)   # also seeds every CUDA device


def choose_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu. Asking for a device that is not there is a ValueError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name} was asked for but CUDA is not available here")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("mps was asked for but MPS is not available here")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    return torch.device(name)


def keep_freed_memory() -> bool:
    """On Linux with glibc, keep freed memory inside the process instead of returning it to the system.

    A training step on the CPU allocates and frees the same large tensors every step (the logits are
    B x T x V floats: 1.6 GB for batch 256 x 32 at vocab 50257). glibc hands any block above 32 MB back
    with munmap when it is freed, so every step page-faults those gigabytes in again, zero-filled by the
    kernel: half of a gpt-nano step's time at vocab 50257 went to system time. With large blocks taken
    from the heap (no mmap) and the heap never trimmed, the next step reuses the same pages. The
    process keeps its peak memory until it exits (it reaches that peak every step anyway). Returns
    whether the setting was made (False off glibc: macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4        # glibc's malloc.h
    # -1 converts to the largest size_t inside glibc: never trim
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))


def network_available(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether `host` answers on port 443 within `timeout` seconds (so downloads can be tried)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


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


# -- plots ---------------------------------------------------------------------------------

def pyplot():
    """matplotlib.pyplot with the file-only Agg backend. Imported on first use: it takes about a
    second to import, which every command that does not plot (sample, eval, params) would pay."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as PNG atomically, and close it."""
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(records: list[dict], out_dir: str | os.PathLike) -> list[str]:
    """Write loss.png, ppl.png and accuracy.png from metrics.jsonl records: train and validation against
    iterations (bottom axis) with wall-clock minutes on a top axis. Perplexity on a log scale. Token
    accuracy is measured at evaluations only (validation)."""
    plt = pyplot()

    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "eval"]
    written = []
    for key, label, fname, log in (("loss", "loss (nats / token)", "loss.png", False),
                                   ("ppl", "perplexity (per token)", "ppl.png", True),
                                   ("accuracy", "token accuracy (argmax = next token)", "accuracy.png", False)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        train_pts = [r for r in train if key in r]
        valid_pts = [r for r in valid if f"valid_{key}" in r]
        if train_pts:
            ax.plot([r["iter"] for r in train_pts], [r[key] for r in train_pts], label="train", alpha=0.8)
        if valid_pts:
            ax.plot([r["iter"] for r in valid_pts], [r[f"valid_{key}"] for r in valid_pts], "o-", label="validation")
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
