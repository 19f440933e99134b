"""The command line, end to end in subprocesses: a short real training run on WikiText-2, then
eval, sample and generate.py on its checkpoint; and every user error as one line with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, data_path


def run(*args, cwd=ROOT, check_code=0):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if check_code is not None:
        assert proc.returncode == check_code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


TINY = ["--vocab-size", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--no-progress", "--max-new-tokens", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    wikitext = data_path("wikitext-2")
    proc = run("main.py", "train", "--data-dir", str(wikitext), "--max-iters", "6", "--eval-interval", "3",
               "--eval-batches", "2", "--out-dir", str(out / "train"), "--cache-dir", str(out / "cache"), *TINY)
    return out, wikitext, proc


def test_train_smoke_run_on_wikitext2(trained):
    out, _, proc = trained
    train = out / "train"
    for name in ("metrics.jsonl", "loss.png", "ppl.png", "best.pt", "last.pt", "samples.txt"):
        assert (train / name).stat().st_size > 0, name
    recs = [json.loads(line) for line in (train / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in recs if r["kind"] == "eval"] == [3, 6]
    samples = (train / "samples.txt").read_text()
    for prompt in (" The best perks of living on the east", " It is a truth universally acknowledged",
                   " The best way to learn", " According to the latest research"):
        assert prompt in samples and prompt in proc.stdout
    assert "word-level perplexity" in proc.stdout
    assert list((out / "cache").rglob("train.npy")), "token ids are cached"


def test_eval_reports_all_metrics_on_the_test_split(trained):
    out, _, _ = trained
    proc = run("main.py", "eval", "--checkpoint", str(out / "train" / "best.pt"), "--split", "test",
               "--cache-dir", str(out / "cache"), "--out-dir", str(out / "eval"))
    text = proc.stdout
    assert "245,569 words" in text          # WikiText-2 test, counted as WikiText does
    for what in ("loss", "token perplexity", "word-level perplexity", "bits per byte", "stride 16"):
        assert what in text
    saved = json.loads((out / "eval" / "eval-test.json").read_text())
    assert saved["words"] == 245_569 and saved["split"] == "test" and saved["stride"] == 16
    import math
    assert saved["ppl"] == pytest.approx(math.exp(saved["loss"]))
    assert saved["word_ppl"] == pytest.approx(math.exp(saved["loss"] * saved["tokens"] / saved["words"]))
    assert f"token perplexity {saved['ppl']:.2f}" in text


def test_sample_and_generate_py(trained):
    out, _, _ = trained
    ckpt = str(out / "train" / "best.pt")
    a = run("generate.py", "--checkpoint", ckpt, "--prompt", " The cat", "--num-samples", "2",
            "--max-new-tokens", "5", "--seed", "3")
    b = run("main.py", "sample", "--checkpoint", ckpt, "--prompt", " The cat", "--num-samples", "2",
            "--max-new-tokens", "5", "--seed", "3", "--out-dir", str(out / "sample"))
    assert a.stdout == b.stdout and a.stdout.count("' The cat' ->") == 2
    saved = (out / "sample" / "samples.txt").read_text()
    assert saved.strip() == a.stdout.strip() and "samples.txt" in b.stderr
    empty = run("generate.py", "--checkpoint", ckpt, "--prompt", "", "--max-new-tokens", "5", "--greedy")
    assert "'' ->" in empty.stdout


def test_compare_without_a_gpu_says_so():
    proc = run("main.py", "compare", "--steps", "2", "--warmup", "1", "--preset", "gpt-nano", "--block-size", "16",
               "--batch-size", "2", "--vocab-size", "100")
    assert "cpu:" in proc.stdout and "tokens/s" in proc.stdout
    try:
        import torch
        has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    except Exception:
        has_gpu = False
    assert ("speed-up" in proc.stdout) if has_gpu else ("no GPU available" in proc.stdout)


def user_error(*args, match: str):
    proc = run(*args, check_code=2)
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error:") and match in err, err
    return err


def test_user_errors_are_one_line_with_exit_code_2(trained, tmp_path):
    out, wikitext, _ = trained
    ckpt = str(out / "train" / "best.pt")
    err = user_error("main.py", "eval", "--checkpoint", str(tmp_path / "missing.pt"), match="does not exist")
    assert err.startswith("error: --checkpoint: "), "the command line names the flag"
    user_error("generate.py", "--checkpoint", str(tmp_path / "missing.pt"), match="does not exist")
    bad = tmp_path / "bad.pt"
    bad.write_bytes((out / "train" / "best.pt").read_bytes()[:1000])
    user_error("main.py", "sample", "--checkpoint", str(bad), match="corrupt or truncated")
    user_error("main.py", "eval", "--checkpoint", ckpt, "--split", "dev", match="invalid choice")
    user_error("generate.py", "--checkpoint", ckpt, "--temperature", "-1", match="non-negative number")
    user_error("generate.py", "--checkpoint", ckpt, "--top-p", "1.5", match="(0, 1]")
    user_error("main.py", "train", "--max-iters", "-5", match="positive integer")
    user_error("main.py", "train", "--lr", "abc", match="positive number")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    user_error("main.py", "train", "--out-dir", str(blocker / "sub"), match="cannot write")
    if not _has_cuda():
        user_error("main.py", "train", "--device", "cuda", "--out-dir", str(tmp_path / "o"),
                   match="CUDA is not available")
    user_error("main.py", "train", "--corpus", "wikitext-7", "--out-dir", str(tmp_path / "o"), match="unknown corpus")
    user_error("main.py", "train", "--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "o"), match="wiki.train")
    user_error("main.py", "train", "--data-dir", str(wikitext), "--n-embd", "10", "--n-head", "3",
               "--out-dir", str(tmp_path / "o"), "--cache-dir", str(out / "cache"), "--vocab-size", "300",
               match="divisible")


def _has_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def test_help_for_every_command():
    for cmd in ("train", "compare", "sample", "eval", "attention", "experiments", "params"):
        proc = run("main.py", cmd, "--help")
        # --out-dir only where the command writes files
        assert ("--out-dir" in proc.stdout) == (cmd in ("train", "sample", "eval", "attention", "experiments")), cmd
    assert "--checkpoint" in run("generate.py", "--help").stdout
