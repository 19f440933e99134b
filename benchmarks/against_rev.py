"""The default run's tokens/s: this tree against an earlier revision, same machine, same command.

    python benchmarks/against_rev.py REV [--rounds 3] [--iters 150]

REV (a git revision, e.g. the commit before a change) is checked out into a temporary git worktree.
Then `python main.py train --data-dir DATA/wikitext-2 --max-iters N --eval-interval N --eval-batches 5`
runs in the two trees in alternating rounds (old, new, old, new, ...) so that a slow spell of a
shared machine hits both alike, each with its own token cache (made in a first, untimed run). Each
run's tokens/s is summary.json's (total training tokens / total training time); the table prints
every round and the best of each tree, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import DATA_DIR, ROOT


def run(tree: Path, out: Path, cache: Path, iters: int) -> dict:
    cmd = [sys.executable, "main.py", "train", "--data-dir", str(DATA_DIR / "wikitext-2"), "--max-iters", str(iters),
           "--eval-interval", str(iters), "--eval-batches", "5", "--out-dir", str(out), "--cache-dir", str(cache)]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: the run in {tree} failed:\n{proc.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the earlier revision (git rev) to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=150, help="iterations per run (the profile's model and batch)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hw5-against-") as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.rev], cwd=ROOT, check=True)
        try:
            trees = {args.rev: old, "this tree": ROOT}
            for name, tree in trees.items():     # untimed: tokenizer training and encoding, cached
                run(tree, Path(tmp) / f"warm-{len(name)}", Path(tmp) / f"cache-{len(name)}", 10)
            rows = {name: [] for name in trees}
            for r in range(args.rounds):
                for name, tree in trees.items():
                    s = run(tree, Path(tmp) / f"r{r}-{len(name)}", Path(tmp) / f"cache-{len(name)}", args.iters)
                    rows[name].append(s["tokens_per_sec"])
                    print(f"round {r + 1}: {name:<12} {s['tokens_per_sec']:>10,.0f} tokens/s", flush=True)
            best = {name: max(v) for name, v in rows.items()}
            print(f"best: {args.rev} {best[args.rev]:,.0f}, this tree {best['this tree']:,.0f} tokens/s; "
                  f"ratio {best['this tree'] / best[args.rev]:.3f}")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
