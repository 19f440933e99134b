"""The sweep that chose the CPU `auto` profile: which model and schedule learn WikiText-2 best in the
wall-clock time of the previous default run (issue 14).

    python benchmarks/sweep.py [--data-dir ../shared/data/wikitext-2] [--only NAME,NAME] [--rounds 3]

Stage 1 (speed): every candidate's training step (its model, batch, precision and attention; random
token ids) is timed in this process in alternating rounds (best round each), and its iterations are
set so that it trains as long as the baseline's 600 iterations take: iterations = 600 x baseline's
seconds per iteration / its seconds per iteration. Stage 2 (quality): each candidate runs as
`python main.py train --data-dir DATA ...` with those iterations (one process each, one at a time),
and its best checkpoint's bits per byte on the whole WikiText-2 validation split is read from the run's
report, with the run's training and end-to-end seconds. The table goes to stdout (as markdown).

The baseline is the profile before issue 14 (4 layers, width 128, context 128, batch 32, vocab 4096,
fp32, hand-written attention, AdamW 2e-3, 600 iterations). The candidates change one thing or a few
at a time; CANDIDATES below lists them. Stage 2 takes about 5 minutes a candidate on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DATA_DIR, ROOT, data_file, seconds_per_step

from gpt.model import GPT, GPTConfig
from gpt.trainer import TrainConfig, autocast_context, make_optimizer, train_step
from gpt.utils import keep_freed_memory
from gpt.windows import WindowBatches

BASELINE = dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=4096, batch_size=32,
                learning_rate=2e-3, warmup_iters=50, precision="fp32", attn_impl="manual")
BASELINE_ITERS = 600
# name -> the settings that differ from BASELINE
CANDIDATES = {
    "baseline": {},
    "bf16": dict(precision="bf16"),
    "bf16 lr 4e-3": dict(precision="bf16", learning_rate=4e-3),
    "bf16 width 192 lr 3e-3": dict(precision="bf16", n_embd=192, n_head=6, learning_rate=3e-3),
    "bf16 vocab 2048 lr 3e-3": dict(precision="bf16", vocab_size=2048, learning_rate=3e-3),
    "bf16 context 64 batch 64 lr 3e-3": dict(precision="bf16", block_size=64, batch_size=64, learning_rate=3e-3),
    # round 2, from round 1's results (the short context with the larger batch won)
    "bf16 context 64 batch 64 lr 4e-3": dict(precision="bf16", block_size=64, batch_size=64, learning_rate=4e-3),
    "bf16 context 64 batch 64 lr 6e-3": dict(precision="bf16", block_size=64, batch_size=64, learning_rate=6e-3),
    "bf16 context 32 batch 128 lr 4e-3": dict(precision="bf16", block_size=32, batch_size=128, learning_rate=4e-3),
    # the profile's fallback where bf16 is not native (app.profiles.CPU_FP32)
    "fp32 context 64 batch 64 lr 4e-3": dict(block_size=64, batch_size=64, learning_rate=4e-3),
}
FLAGS = {"n_layer": "--n-layer", "n_head": "--n-head", "n_embd": "--n-embd", "block_size": "--block-size",
         "vocab_size": "--vocab-size", "batch_size": "--batch-size", "learning_rate": "--lr",
         "warmup_iters": "--warmup-iters", "precision": "--precision", "attn_impl": "--attn-impl"}


def settings(name: str) -> dict:
    return {**BASELINE, **CANDIDATES[name]}


def step_fn(s: dict):
    """One training step of the settings `s` on random ids, as main.py trains (train_step, AdamW, clip 1)."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=s["vocab_size"], block_size=s["block_size"], n_layer=s["n_layer"],
                    n_head=s["n_head"], n_embd=s["n_embd"], dropout=0.0, attn_impl=s["attn_impl"])
    model = GPT(cfg).train()
    opt = make_optimizer(model, TrainConfig(learning_rate=s["learning_rate"]))
    autocast = autocast_context(torch.device("cpu"), s["precision"])
    ids = np.random.default_rng(0).integers(0, s["vocab_size"], size=1_000_000, dtype=np.uint16)
    batches = WindowBatches(ids, cfg.block_size, s["batch_size"], seed=0)
    state = {"i": 0}

    def step():
        state["i"] += 1
        float(train_step(model, opt, [batches.get(state["i"])], 1.0, autocast))
    return step


SCHEDULE_ONLY = ("learning_rate", "warmup_iters")   # settings that do not change the speed of a step


def speed_key(name: str) -> tuple:
    return tuple(sorted((k, v) for k, v in settings(name).items() if k not in SCHEDULE_ONLY))


def seconds_per_iter(names: list[str], rounds: int, steps: int) -> dict:
    """Seconds per iteration of each candidate; candidates that differ only in their schedule share
    one timing (so noise cannot give them different budgets)."""
    timed = {speed_key(n): n for n in reversed(names)}           # the first name of each speed
    best = _seconds_per_iter(list(timed.values()), rounds, steps)
    return {n: best[timed[speed_key(n)]] for n in names}


def _seconds_per_iter(names: list[str], rounds: int, steps: int) -> dict:
    fns = {n: step_fn(settings(n)) for n in names}
    for fn in fns.values():
        fn(), fn()                                    # warm-up
    # common.seconds_per_step's alternating rounds; these steps draw their own batches (x is unused)
    return seconds_per_step({n: (lambda x, fn=fn: fn()) for n, fn in fns.items()}, None, steps, rounds,
                            torch.device("cpu"))


def run(name: str, iters: int, data_dir: Path, out_root: Path) -> dict:
    s = settings(name)
    cmd = [sys.executable, "main.py", "train", "--data-dir", str(data_dir), "--no-progress",
           "--out-dir", str(out_root / re.sub(r"\W+", "-", name)),
           "--max-iters", str(iters), "--eval-interval", str(max(1, iters // 2))]
    for key, flag in FLAGS.items():
        cmd += [flag, str(s[key])]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: {name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    bpb = float(re.search(r"bits per byte ([0-9.]+)", proc.stdout).group(1))
    ppl = float(re.search(r"split: loss [0-9.]+, perplexity ([0-9.]+)", proc.stdout).group(1))
    summary = json.loads((out_root / re.sub(r"\W+", "-", name) / "summary.json").read_text())
    return dict(bpb=bpb, ppl=ppl, train_s=summary["train_seconds"], wall_s=wall, best_iter=summary["best_iter"],
                params=summary["parameters"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(DATA_DIR / "wikitext-2"))
    ap.add_argument("--only", help="comma-separated candidate names (the baseline always runs)")
    ap.add_argument("--rounds", type=int, default=3, help="speed rounds (stage 1)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per speed round")
    ap.add_argument("--skip-runs", action="store_true", help="stage 1 only")
    ap.add_argument("--skip-baseline-run", action="store_true",
                    help="time the baseline's step (the budget) but do not train it again")
    args = ap.parse_args()
    data_file(Path(args.data_dir).name, "wiki.train.tokens")
    keep_freed_memory()
    names = list(CANDIDATES) if not args.only else ["baseline"] + [n for n in args.only.split(",") if n != "baseline"]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        sys.exit(f"error: unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    print(f"stage 1: seconds per iteration, {args.rounds} alternating rounds of {args.steps} steps", flush=True)
    sec = seconds_per_iter(names, args.rounds, args.steps)
    budget = BASELINE_ITERS * sec["baseline"]
    iters = {n: BASELINE_ITERS if n == "baseline" else max(10, round(budget / sec[n] / 10) * 10) for n in names}
    print(f"budget: {budget:.0f} s of training (baseline's {BASELINE_ITERS} iterations)")
    for n in names:
        print(f"  {n}: {sec[n] * 1e3:.0f} ms/iter -> {iters[n]} iterations")
    if args.skip_runs:
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="hw5-sweep-") as tmp:
        for n in names:
            if n == "baseline" and args.skip_baseline_run:
                continue
            r = run(n, iters[n], Path(args.data_dir), Path(tmp))
            rows.append((n, r))
            print(f"  {n}: {r['bpb']:.4f} bits per byte, ppl {r['ppl']:.1f}, {r['train_s']:.0f} s training, "
                  f"{r['wall_s']:.0f} s in all", flush=True)
    print("\n| candidate | settings changed | params | ms/iter | iterations | tokens/iter | train s | wall s "
          "| valid ppl | bits per byte |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, r in rows:
        s = settings(n)
        changed = ", ".join(f"{k}={v}" for k, v in CANDIDATES[n].items()) or "(the pre-issue-14 default)"
        print(f"| {n} | {changed} | {r['params']:,} | {sec[n] * 1e3:.0f} | {iters[n]} | {s['batch_size'] * s['block_size']:,} "
              f"| {r['train_s']:.0f} | {r['wall_s']:.0f} | {r['ppl']:.1f} | {r['bpb']:.4f} |")


if __name__ == "__main__":
    main()
