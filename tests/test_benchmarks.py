"""The benchmarks still run (quick settings) and report their ratios; speed itself is not asserted."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, data_path


def test_benchmarks_quick_run(tmp_path):
    data_path("gpt2", "encoder.json")       # the tokenizer benchmark reads the shared data
    out = tmp_path / "RESULTS.md"
    out.write_text("# old\n\n## Rewritten\n\nold numbers\n\n## Long run\n<!-- kept by run.py -->\nkept 42\n")
    proc = subprocess.run([sys.executable, "benchmarks/run.py", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "kept 42" in text and "old numbers" not in text, "a section marked as recorded elsewhere survives"
    for needle in ("ours / HF time", "ours / tiktoken", "manual/eager", "cache/recompute", "- device:", "- versions:",
                   "s/1000 iters", "measured/estimate", "ours / transformers throughput"):
        assert needle in text, needle
    generation = text.split("## Generation")[1].split("\n## ")[0]
    assert "True" in generation and "False" not in generation, "greedy tokens differ from transformers' generate"


def test_memory_benchmark_agrees_with_the_estimate_it_prints():
    proc = subprocess.run([sys.executable, "benchmarks/memory.py", "--device", "cpu", "--preset", "gpt-nano", "--batch", "2",
                           "--block", "32", "--vocab", "256", "--dropout", "0"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("fp32", "bf16"))]
    assert len(rows) == 3
    for row in rows:
        assert 0.95 < float(row[4].rstrip("x")) < 1.05, row
