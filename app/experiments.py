"""The model-comparison grid: GPT vs LSTM, depth, and optimizers, each run a training command.

Every run is its own process (the caller's train command, e.g. `python main.py train`, with
`--out-dir OUT/<id>` and the run's flags), so its peak memory is
measured cleanly (peak RSS from os.wait4 on CPU; torch.cuda.max_memory_allocated on GPU, logged by
the trainer). A run with summary.json is finished and skipped; one with only last.pt resumes.
OUT/results.csv and OUT/results.md collect the headline numbers; OUT/compare-<group>.png plots
validation perplexity against iterations and against wall-clock for each group of runs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field

from gpt.checkpoint import MODEL_KINDS
from gpt.trainer import OPTIMIZERS
from gpt.utils import atomic_write_bytes, pyplot, read_jsonl, save_figure


class RunFailed(RuntimeError):
    """A run of the grid exited with an error; its log.txt says why."""


@dataclass
class Run:
    id: str
    model: str          # gpt | lstm
    n_layer: int
    optimizer: str
    group: str          # runs in one group share a comparison figure
    extra: dict = field(default_factory=dict)   # more `train` flags, e.g. {"lr": 3e-4}


def default_grid() -> list[Run]:
    """The classic twelve: both models with 1 layer under four optimizers, and 2 and 4 layers under adamw."""
    runs = [Run(f"{m}-1l-{o}", m, 1, o, "optimizers") for m in ("lstm", "gpt") for o in ("adam", "adamw", "sgd", "momentum")]
    runs += [Run(f"{m}-{n}l-adamw", m, n, "adamw", "depth") for m in ("lstm", "gpt") for n in (2, 4)]
    return runs


def load_grid(path: str) -> list[Run]:
    """A JSON list of runs: {"id", "model", "n_layer", "optimizer", "group" (optional), any train flags}."""
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
        runs = []
        for item in items:
            item = dict(item)
            runs.append(Run(item.pop("id"), item.pop("model"), int(item.pop("n_layer")), item.pop("optimizer"),
                            item.pop("group", "grid"), item))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read the grid {path} ({e}); it must be a JSON list of "
                         '{"id", "model", "n_layer", "optimizer"} objects') from None
    for r in runs:
        if r.model not in MODEL_KINDS or r.optimizer not in OPTIMIZERS:
            raise ValueError(f"grid run {r.id!r}: model must be one of {'|'.join(MODEL_KINDS)} and optimizer "
                             f"one of {'|'.join(OPTIMIZERS)}")
    return runs


def run_one(run: Run, out_root: str, base_flags: list[str], train_command: list[str]) -> dict:
    """Train one run in a subprocess (or skip / resume it); returns its summary plus peak memory."""
    out = os.path.join(out_root, run.id)
    summary_path = os.path.join(out, "summary.json")
    if os.path.exists(summary_path):
        print(f"{run.id}: finished before, skipped")
        with open(summary_path) as f:
            return json.load(f)
    os.makedirs(out, exist_ok=True)
    flags = ["--model", run.model, "--n-layer", str(run.n_layer), "--optimizer", run.optimizer,
             "--out-dir", out, "--no-report", "--no-progress", *base_flags]
    for k, v in run.extra.items():
        flags += [f"--{k.replace('_', '-')}", str(v)]
    if os.path.exists(os.path.join(out, "last.pt")):
        flags.append("--resume")
        print(f"{run.id}: resuming")
    else:
        print(f"{run.id}: training")
    with open(os.path.join(out, "log.txt"), "ab") as log:
        proc = subprocess.Popen([*train_command, *flags], stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RunFailed(f"run {run.id} failed (exit {code}); see {os.path.join(out, 'log.txt')}")
    with open(summary_path) as f:
        summary = json.load(f)
    summary["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)     # ru_maxrss is in KiB on Linux
    atomic_write_bytes(summary_path, json.dumps(summary, indent=1).encode())
    return summary


COLUMNS = ["id", "model", "n_layer", "optimizer", "parameters", "best_valid_ppl", "train_ppl_at_best", "best_iter",
           "train_seconds", "tokens_per_sec", "peak_mem_mb", "best_of_model"]


def table_rows(runs: list[Run], summaries: dict[str, dict]) -> list[dict]:
    rows = []
    for r in runs:
        s = summaries[r.id]
        rows.append({"id": r.id, "model": r.model, "n_layer": r.n_layer, "optimizer": r.optimizer,
                     "parameters": s["parameters"], "best_valid_ppl": s["best_valid_ppl"],
                     "train_ppl_at_best": s["train_ppl_at_best"], "best_iter": s["best_iter"],
                     "train_seconds": s["train_seconds"], "tokens_per_sec": s["tokens_per_sec"],
                     "peak_mem_mb": s.get("peak_gpu_mem_mb") or s.get("peak_rss_mb"), "best_of_model": False})
    for model in {row["model"] for row in rows}:
        mine = [row for row in rows if row["model"] == model and row["best_valid_ppl"] is not None]
        if mine:
            min(mine, key=lambda row: row["best_valid_ppl"])["best_of_model"] = True
    return rows


def write_tables(rows: list[dict], out_root: str, memory_kind: str, corpora: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(os.path.join(out_root, "results.csv"), buf.getvalue().encode())
    head = ("| run | model | layers | optimizer | parameters | best valid ppl | train ppl at best | best iter | "
            f"train time (s) | tokens/s | {memory_kind} (MB) |\n|" + " --- |" * 11 + "\n")
    lines = []
    for row in rows:
        mark = " **(best " + row["model"].upper() + ")**" if row["best_of_model"] else ""
        lines.append(f"| {row['id']}{mark} | {row['model']} | {row['n_layer']} | {row['optimizer']} | "
                     f"{row['parameters']:,} | {row['best_valid_ppl']:.2f} | {row['train_ppl_at_best']:.2f} | "
                     f"{row['best_iter']} | {row['train_seconds']:.1f} | {row['tokens_per_sec']:,.0f} | "
                     f"{row['peak_mem_mb']:,.0f} |")
    md = f"corpus: {', '.join(corpora) or 'unknown'}\n\n" + head + "\n".join(lines) + "\n"
    atomic_write_bytes(os.path.join(out_root, "results.md"), md.encode())
    return md


def plot_groups(runs: list[Run], out_root: str) -> list[str]:
    plt = pyplot()
    written = []
    for group in dict.fromkeys(r.group for r in runs):
        fig, (by_iter, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
        for r in (r for r in runs if r.group == group):
            evals = [e for e in read_jsonl(os.path.join(out_root, r.id, "metrics.jsonl")) if e["kind"] == "eval"]
            by_iter.plot([e["iter"] for e in evals], [e["valid_ppl"] for e in evals], "o-", label=r.id)
            by_time.plot([e["time"] for e in evals], [e["valid_ppl"] for e in evals], "o-", label=r.id)
        for ax, xlabel in ((by_iter, "iteration"), (by_time, "training wall-clock (s)")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation perplexity")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
        by_iter.legend(fontsize=8)
        fig.suptitle(f"group: {group}")
        fig.tight_layout()
        path = os.path.join(out_root, f"compare-{group}.png")
        save_figure(fig, path)
        written.append(path)
    return written


def run_grid(runs: list[Run], out_root: str, base_flags: list[str], gpu: bool, train_command: list[str]) -> str:
    """Make every run (train_command + its flags, in a subprocess), then the tables and the figures."""
    os.makedirs(out_root, exist_ok=True)
    atomic_write_bytes(os.path.join(out_root, "grid.json"),
                       json.dumps({"runs": [asdict(r) for r in runs], "flags": base_flags}, indent=1).encode())
    t0 = time.time()
    summaries = {r.id: run_one(r, out_root, base_flags, train_command) for r in runs}
    rows = table_rows(runs, summaries)
    corpora = sorted({s["corpus"] for s in summaries.values() if s.get("corpus")})   # one, unless the grid mixes
    md = write_tables(rows, out_root, "peak GPU memory" if gpu else "peak RSS", corpora)
    plot_groups(runs, out_root)
    print(f"\n{len(runs)} runs in {time.time() - t0:.0f} s; wrote {out_root}/results.md, results.csv, compare-*.png\n")
    return md
