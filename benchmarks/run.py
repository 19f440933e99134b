"""Run every benchmark and write benchmarks/RESULTS.md.

    python benchmarks/run.py [--quick]

Tokenizer training and encoding (HF tokenizers, tiktoken) at 1x and 10x WikiText-2; training
throughput (transformers' GPT2LMHeadModel); generation with and without the KV cache (transformers'
generate); the default `python main.py train` run's speed; the training-memory estimate against a
real step; and, on a CUDA GPU, MFU for gpt2 against transformers. About 9 minutes on a 2-core CPU.

Each benchmark runs as its own process (so one's memory and threads do not disturb the next) and
prints ratios against a peer run in the same process. RESULTS.md records, for each, the command,
the device, the date and the library versions. --quick uses smaller settings (for a smoke test).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from gpt.utils import atomic_write_bytes  # noqa: E402

def benchmarks(gpu: bool) -> list[tuple[str, list[str], list[str] | None]]:
    """(title, full command, quick command or None to leave it out of --quick) for this machine."""
    nano_cpu = ["--device", "cpu", "--preset", "gpt-nano", "--batch", "2"]
    return [
        ("Tokenizer, WikiText-2 x1", ["tokenizer.py", "--scale", "1"], ["tokenizer.py", "--scale", "1", "--vocab-size", "1024"]),
        ("Tokenizer, WikiText-2 x10", ["tokenizer.py", "--scale", "10"], None),
        ("Training throughput", ["training.py"], ["training.py", "--steps", "1", "--rounds", "1"]),
        ("AdamW and gradient clipping: ours against PyTorch's", ["optim.py", "--train-steps", "5"],
         ["optim.py", "--steps", "20", "--rounds", "1"]),
        ("Generation", ["generation.py", "--new-tokens", "256"], ["generation.py", "--new-tokens", "16"]),
        ("The default run (`python main.py train`)", ["fullrun.py"], ["fullrun.py", "--steps", "2", "--warmup", "1"]),
        ("Training memory: estimate against a real step",
         ["memory.py"] if gpu else ["memory.py", "--device", "cpu", "--preset", "gpt-mini", "--batch", "4", "--block",
                                    "256", "--vocab", "8192", "--dropout", "0"],
         ["memory.py", *nano_cpu, "--block", "32", "--vocab", "256", "--dropout", "0"]),
        ("MFU: gpt2 on the GPU against transformers",
         ["mfu.py"], ["mfu.py", *nano_cpu, "--block", "32", "--no-compile", "--peak-tflops", "1", "--steps", "1",
                      "--rounds", "1", "--warmup", "1"]),
    ]


def versions() -> str:
    out = [f"python {platform.python_version()}"]
    for name in ("torch", "transformers", "tokenizers", "tiktoken", "numpy", "regex"):
        try:
            out.append(f"{name} {__import__(name).__version__}")
        except Exception:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def device() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} threads; {gpu}"


KEEP = "<!-- kept by run.py -->"


def kept_sections(path: str) -> list[str]:
    """Sections of the old RESULTS.md marked KEEP (figures of long runs recorded by other commands)."""
    try:
        old = open(path, encoding="utf-8").read()
    except OSError:
        return []
    sections = ["\n## " + part for part in old.split("\n## ")[1:]]
    return [sec if sec.endswith("\n") else sec + "\n" for sec in sections if KEEP in sec]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    parts = [f"# Benchmark results\n\nWritten by `python benchmarks/run.py{' --quick' if args.quick else ''}`.\n\n"
             f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}\n- device: {device()}\n"
             f"- versions: {versions()}\n"]
    for title, full, quick in benchmarks(torch.cuda.is_available()):
        cmd = quick if args.quick else full
        if cmd is None:
            continue
        t0 = time.time()
        proc = subprocess.run([sys.executable, str(HERE / cmd[0]), *cmd[1:]], capture_output=True, text=True)
        took = time.time() - t0
        text = proc.stdout.strip() + (f"\n(exit {proc.returncode}) {proc.stderr.strip()[-1500:]}" if proc.returncode else "")
        print(f"## {title} ({took:.0f} s)\n{text}\n", flush=True)
        parts.append(f"\n## {title}\n\n`python benchmarks/{' '.join(cmd)}` ({took:.0f} s)\n\n```\n{text}\n```\n")
        if proc.returncode:
            sys.exit(f"error: benchmark {cmd[0]} failed")
    parts += kept_sections(args.out)
    atomic_write_bytes(args.out, "".join(parts).encode("utf-8"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
