"""Helpers shared by the benchmarks: where the data is, and a best-of-n timer."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(os.environ.get("HW5_DATA_DIR", ROOT.parent / "shared" / "data"))


def data_file(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        sys.exit(f"error: {path} not found; set HW5_DATA_DIR to the folder holding wikitext-2/ and gpt2/")
    return path


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall-clock time of `repeats` calls, in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best

