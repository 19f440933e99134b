"""The benchmarks still run (quick settings) and report their ratios; speed itself is not asserted."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, data_path


def test_benchmarks_quick_run(tmp_path):
    data_path("gpt2", "encoder.json")       # the tokenizer benchmark reads the shared data
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    for needle in ("ours / HF time", "ours / tiktoken", "manual/eager", "cache/recompute", "- device:", "- versions:"):
        assert needle in text, needle
    assert "False" not in text.split("## Generation")[1], "greedy tokens differ from transformers' generate"
