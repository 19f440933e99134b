"""`main.py experiments`: the twelve-run grid end to end (--quick), skipping finished runs, --only, --grid."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from conftest import ROOT, data_path
from app.experiments import Run, default_grid, load_grid, table_rows


def run(*args):
    return subprocess.run([sys.executable, "main.py", "experiments", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200)


def test_default_grid_is_the_classic_twelve():
    ids = [r.id for r in default_grid()]
    assert len(ids) == len(set(ids)) == 12
    assert {r.optimizer for r in default_grid() if r.n_layer == 1} == {"adam", "adamw", "sgd", "momentum"}
    assert sorted((r.model, r.n_layer) for r in default_grid() if r.group == "depth") == \
        [("gpt", 2), ("gpt", 4), ("lstm", 2), ("lstm", 4)]


def test_best_run_per_model_is_marked():
    runs = [Run("a", "gpt", 1, "adam", "g"), Run("b", "gpt", 2, "adam", "g"), Run("c", "lstm", 1, "sgd", "g")]
    s = lambda ppl: {"parameters": 1, "best_valid_ppl": ppl, "train_ppl_at_best": ppl, "best_iter": 1,
                     "train_seconds": 1, "tokens_per_sec": 1, "peak_rss_mb": 1}
    rows = table_rows(runs, {"a": s(50.0), "b": s(40.0), "c": s(90.0)})
    assert [r["best_of_model"] for r in rows] == [False, True, True]


def test_bad_grid_file_is_a_user_error(tmp_path):
    bad = tmp_path / "grid.json"
    bad.write_text('[{"id": "x", "model": "transformer", "n_layer": 1, "optimizer": "adam"}]')
    with pytest.raises(ValueError, match="model must be"):
        load_grid(str(bad))
    bad.write_text("not json")
    with pytest.raises(ValueError, match="JSON list"):
        load_grid(str(bad))


def test_quick_grid_end_to_end(tmp_path):
    out, cache = tmp_path / "exp", tmp_path / "cache"
    common = ["--quick", "--data-dir", str(data_path("wikitext-2")), "--out-dir", str(out), "--cache-dir", str(cache)]
    proc = run(*common)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert {r["model"] for r in rows} == {"gpt", "lstm"}
    for r in rows:
        assert 1 < float(r["best_valid_ppl"]) < 512 * 1.05     # below (about) a uniform guess over the vocabulary
        assert float(r["tokens_per_sec"]) > 0 and float(r["peak_mem_mb"]) > 50
        assert (out / r["id"] / "metrics.jsonl").exists() and (out / r["id"] / "loss.png").exists()
    assert sum(r["best_of_model"] == "True" for r in rows) == 2
    md = (out / "results.md").read_text()
    assert sum(line.startswith("| ") for line in md.splitlines()) == 14 and "(best GPT)" in md and "(best LSTM)" in md
    assert md.startswith("corpus: wikitext-2 (tokens)\n"), "the summary names the corpus the runs used"
    assert (out / "compare-optimizers.png").exists() and (out / "compare-depth.png").exists()

    again = run(*common)                                      # finished runs are skipped
    assert again.returncode == 0 and again.stdout.count("finished before, skipped") == 12

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps([{"id": "gpt-small-lr", "model": "gpt", "n_layer": 1, "optimizer": "adamw", "lr": 3e-4}]))
    custom = run("--grid", str(grid), "--only", "gpt-small-lr", *common[:-4], "--out-dir", str(tmp_path / "g"),
                 "--cache-dir", str(cache))
    assert custom.returncode == 0, custom.stderr
    assert (tmp_path / "g" / "results.md").read_text().count("gpt-small-lr") == 1
    unknown = run("--only", "nope", *common)
    assert unknown.returncode == 2 and "unknown runs" in unknown.stderr
