"""What the kit promises under faults and bad input. Each test is one promise:

- Bad input is one line `error: ...` on stderr, exit code 2, no traceback, and it is found before any
  work (a bad split fails before the tokenizer trains, a model too big before it allocates).
- Kill -9 at any moment leaves every checkpoint loadable, best.pt consistent with last.pt and the
  log, no half-written or hidden temporary file after the next start, and `--resume` continues
  bit-for-bit (the final weights equal those of a run never killed).
- A full disk or a read-only folder is one `error:` line; the previous checkpoint survives.
- Nothing stale: the token-id cache is keyed by the text's content; `--resume` refuses other data or
  another tokenizer; a crash between the last.pt and best.pt writes is repaired on resume.
- Outputs are readable by others as the user's umask says (a TA on a shared cluster).

Faults that need a file system of their own (a full disk, a read-only mount) mount a small tmpfs, which
needs root: CI runs as root; elsewhere those tests are skipped and say why.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, data_path
from gpt import checkpoint
from gpt.bpe import BPETokenizer
from gpt.checkpoint import CheckpointError, load_checkpoint
from app.cli import UserError
from gpt.utils import atomic_write_bytes, read_jsonl

# A small model that trains in a second or two; each test adds its own iteration counts.
SMALL = ["--vocab-size", "300", "--block-size", "16", "--n-embd", "16", "--n-head", "2", "--n-layer", "1",
         "--batch-size", "4", "--dropout", "0", "--no-progress", "--device", "cpu", "--max-new-tokens", "4"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """The start of each real WikiText-2 split: enough to train on, quick to tokenize."""
    folder = tmp_path_factory.mktemp("wikitext-small")
    source = data_path("wikitext-2")
    for split, n_lines in (("train", 1500), ("valid", 150), ("test", 150)):
        with open(source / f"wiki.{split}.tokens", encoding="utf-8") as f:
            lines = [next(f) for _ in range(n_lines)]
        (folder / f"wiki.{split}.tokens").write_text("".join(lines), encoding="utf-8")
    return folder


def main_py(*args, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def train(out: Path, data: Path, *extra, cache: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return main_py("train", "--data-dir", data, "--out-dir", out, "--cache-dir", cache or out.parent / "cache",
                   *SMALL, *extra, **kw)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2 and exactly one line on stderr, `error: ...`, holding every needle (no traceback)."""
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr:\n{proc.stderr[-3000:]}"
    assert err.startswith("error: ") and "\n" not in err, f"not one error line:\n{proc.stderr[-3000:]}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def hidden_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A small file system of its own at `path` (root only: skips, saying why, otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs these tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); needs root with CAP_SYS_ADMIN")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# -- bad input: one line, exit 2, before any work ---------------------------------------------

def test_invalid_utf8_in_a_data_dir_file(small_data, tmp_path):
    data = copy_data(small_data, tmp_path / "data")
    with open(data / "wiki.valid.tokens", "ab") as f:
        f.write(b"caf\xe9 latin-1, not UTF-8\n")
    out = tmp_path / "run"
    assert_user_error(train(out, data, "--max-iters", "2"), "wiki.valid.tokens", "is not UTF-8")
    assert not list(tmp_path.rglob("*.pt"))


def test_an_empty_split_is_refused_before_any_work(small_data, tmp_path):
    data = copy_data(small_data, tmp_path / "data")
    (data / "wiki.valid.tokens").write_text("\n \n")       # blank lines only: no text to evaluate on
    out = tmp_path / "run"
    assert_user_error(train(out, data, "--max-iters", "2"), "valid split", "is empty")
    assert not (tmp_path / "cache").exists(), "refused before the tokenizer was trained"


def test_a_model_too_big_for_memory_is_refused_before_it_allocates(small_data, tmp_path):
    t0 = time.perf_counter()
    proc = train(tmp_path / "run", small_data, "--max-iters", "2", "--block-size", "100000")
    assert_user_error(proc, "--block-size", "needs about", "GB")
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("seed, ok", [("4294967295", True), ("4294967296", False), (str(2**70), False),
                                      ("-1", False)])
def test_seed_range(small_data, tmp_path, seed, ok):
    proc = train(tmp_path / "run", small_data, "--max-iters", "1", "--eval-interval", "1", "--eval-batches", "1",
                 "--seed", seed, "--no-report")
    if ok:
        assert proc.returncode == 0, proc.stderr[-2000:]
    else:
        assert_user_error(proc, "--seed", "0 .. 4294967295")


def test_vocab_size_larger_than_the_corpus_gives_is_said_once(tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text("".join(f"line {i} of a small corpus\n" for i in range(40)))
    proc = main_py("train", "--corpus", text, "--out-dir", tmp_path / "run", "--cache-dir", tmp_path / "cache",
                   *SMALL, "--vocab-size", "1000000", "--max-iters", "1", "--eval-interval", "1", "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    notices = [line for line in proc.stderr.splitlines() if "--vocab-size 1,000,000" in line]
    assert len(notices) == 1 and notices[0].startswith("notice: "), proc.stderr


def test_a_random_binary_file_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(junk)
    err = assert_user_error(main_py("sample", "--checkpoint", junk), "--checkpoint", "is not a checkpoint")
    assert "weights_only" not in err, "no PyTorch internals in the message"


def test_wrong_kinds_of_path_are_named(tmp_path):
    assert_user_error(main_py("sample", "--checkpoint", tmp_path), "is a folder, not a checkpoint file")
    assert_user_error(main_py("train", "--data-dir", tmp_path / "nope"), "--data-dir", "is not a folder")


def test_decode_takes_integer_ids_only():
    tok = BPETokenizer.train("hello world " * 20, 260)
    assert tok.decode([104, np.int64(105), torch.tensor(33)]) == "hi!"
    for bad in ([104.0], [True], [torch.tensor(1.5)]):
        with pytest.raises(TypeError, match="token ids are integers"):
            tok.decode(bad)


def test_bpe_training_and_encoding_agree_on_lone_surrogates():
    """A lone surrogate (Python allows one in a str; it is not Unicode text) is U+FFFD in both."""
    text = "ab\ud800cd ab\udfffab " * 10
    tok = BPETokenizer.train(text, 280)                          # raised UnicodeEncodeError before
    assert tok.decode(tok.encode(text)) == text.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
    same = BPETokenizer.train(text.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd"), 280)
    assert same.merges == tok.merges, "training sees exactly the bytes that encode produces"


# -- nothing stale, nothing mixed ---------------------------------------------------------------

def test_a_same_size_edit_of_the_text_gives_new_token_ids(small_data, tmp_path):
    from app import data as data_module
    folder = copy_data(small_data, tmp_path / "data")
    before = data_module.load_corpus(data_dir=str(folder))
    tok = BPETokenizer.train(before.texts["train"], 300)
    ids_before = data_module.encode_splits(before, tok, str(tmp_path / "cache"))["valid"]
    valid = (folder / "wiki.valid.tokens").read_text()
    i = valid.index("the")
    (folder / "wiki.valid.tokens").write_text(valid[:i] + "THE" + valid[i + 3:])   # same size in bytes
    after = data_module.load_corpus(data_dir=str(folder))
    assert before.key != after.key, "the cache key follows the content, not the path and size"
    ids_after = data_module.encode_splits(after, tok, str(tmp_path / "cache"))["valid"]
    assert list(ids_after[1:]) == tok.encode(after.texts["valid"]) != list(ids_before[1:])
    # The corpus is streamed: one loaded before the edit reads the new text, which must not be cached
    # under the old text's key.
    with pytest.raises(UserError, match="changed after it was loaded"):
        data_module.encode_splits(before, tok, str(tmp_path / "other-cache"))
    assert not list((tmp_path / "other-cache").rglob("*valid.npy*")), "nothing written for the edited split"


def test_resume_refuses_other_data_or_another_tokenizer(small_data, tmp_path):
    out = tmp_path / "run"
    proc = train(out, small_data, "--max-iters", "2", "--eval-interval", "2", "--eval-batches", "1", "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    other = copy_data(small_data, tmp_path / "other")
    with open(other / "wiki.train.tokens", "a", encoding="utf-8") as f:
        f.write(" more text that changes the training split\n")
    assert_user_error(train(out, other, "--max-iters", "4", "--resume"), "--resume", "other data")
    assert_user_error(train(out, small_data, "--max-iters", "4", "--resume", "--vocab-size", "280"),
                      "--resume", "another tokenizer")
    assert load_checkpoint(out / "last.pt")["iteration"] == 2, "the refused resumes changed nothing"


def test_eval_finds_a_relative_corpus_from_another_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mine.txt").write_text("".join(f"sentence number {i} of my own corpus.\n" for i in range(200)))
    proc = main_py("train", "--corpus", "mine.txt", "--out-dir", "run", "--cache-dir", "cache", *SMALL,
                   "--max-iters", "2", "--eval-interval", "2", "--no-report", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = main_py("eval", "--checkpoint", work / "run" / "best.pt", "--cache-dir", "cache", "--out-dir", "eval",
                   cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "data: mine.txt" in proc.stdout


def test_a_crash_between_the_last_and_best_writes_is_repaired_on_resume(small_data, tmp_path, monkeypatch):
    """Simulate kill -9 right after last.pt of an improving evaluation is written (best.pt not yet):
    after --resume, best.pt is the checkpoint of the best evaluation, as the log and summary say."""
    import main

    class Killed(BaseException):
        pass

    real_save = checkpoint.save_checkpoint

    def save_then_die(ckpt, path):
        real_save(ckpt, path)
        if os.path.basename(path) == "last.pt" and ckpt["iteration"] == 4 and ckpt["best_iteration"] == 4:
            raise Killed()

    flags = ["train", "--data-dir", str(small_data), "--out-dir", str(tmp_path / "run"), "--cache-dir",
             str(tmp_path / "cache"), *SMALL, "--max-iters", "6", "--eval-interval", "2", "--eval-batches", "2",
             "--lr", "3e-3", "--no-report"]
    monkeypatch.setattr(checkpoint, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        main.main(flags)
    stale = load_checkpoint(tmp_path / "run" / "best.pt")
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert stale["iteration"] == 2 and last["best_iteration"] == 4, "the crash fell between the two writes"
    monkeypatch.setattr(checkpoint, "save_checkpoint", real_save)
    assert main.main(flags + ["--resume"]) == 0
    evals = [r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "eval"]
    best_eval = min(evals, key=lambda r: r["valid_ppl"])
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert best["iteration"] == best_eval["iter"] == summary["best_iter"]
    assert best["best_valid_ppl"] == summary["best_valid_ppl"]


def test_kill_9_at_random_moments_then_resume_is_bit_for_bit(small_data, tmp_path):
    """Kill a training run with SIGKILL at random moments (fixed seed), resume it each time; at every
    stop every checkpoint loads and best.pt agrees with last.pt; at the end the weights equal those of
    a run never killed, best.pt is the best evaluation's, and no temporary file is left."""
    flags = ["--max-iters", "30", "--eval-interval", "2", "--eval-batches", "2", "--log-interval", "1",
             "--no-report"]
    reference = tmp_path / "reference"
    assert train(reference, small_data, *flags).returncode == 0
    out, rng, kills = tmp_path / "killed", random.Random(1234), 0
    cmd = [sys.executable, str(ROOT / "main.py"), "train", "--data-dir", str(small_data), "--out-dir", str(out),
           "--cache-dir", str(tmp_path / "cache"), *SMALL, *flags]
    for attempt in range(6):
        resume = ["--resume"] if (out / "last.pt").exists() else []
        proc = subprocess.Popen(cmd + resume, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Kill at a random moment of training, whatever this machine's speed: after a random number
        # of new log lines (one per iteration, an evaluation and its checkpoints every two), then a
        # random fraction of an iteration.
        target = len(read_jsonl(out / "metrics.jsonl")) + rng.randint(2, 8)
        while proc.poll() is None and len(read_jsonl(out / "metrics.jsonl")) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err[-2000:]
        if (out / "last.pt").exists():
            last = load_checkpoint(out / "last.pt")             # always loadable
            if (out / "best.pt").exists():
                assert load_checkpoint(out / "best.pt")["iteration"] <= last["iteration"]
        if proc.returncode == 0:
            break
    assert kills >= 3, "the kills landed while it trained"
    if not (out / "summary.json").exists():
        proc = train(out, small_data, *flags, *(["--resume"] if (out / "last.pt").exists() else []))
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert not hidden_temporaries(out), "the next start removed what the kills left"
    final, ref = load_checkpoint(out / "last.pt"), load_checkpoint(reference / "last.pt")
    for name, tensor in ref["model"].items():
        assert torch.equal(final["model"][name], tensor), f"{name} differs from the run never killed"
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert [r["iter"] for r in evals] == list(range(2, 31, 2)), "one evaluation per interval, none doubled"
    assert load_checkpoint(out / "best.pt")["iteration"] == min(evals, key=lambda r: r["valid_ppl"])["iter"]


def test_the_next_start_removes_temporaries_that_a_kill_left(small_data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in (".last.pt.x1y2.tmp", ".best.pt.abcd.tmp", ".metrics.jsonl.zz.tmp"):
        (out / name).write_bytes(b"\0" * 1000)
    (out / ".notes.txt.keep.tmp").write_text("not ours")
    proc = train(out, small_data, "--max-iters", "2", "--eval-interval", "2", "--eval-batches", "1", "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert hidden_temporaries(out) == [".notes.txt.keep.tmp"], "only the run's own temporaries go"


def test_tokens_per_second_is_total_tokens_over_total_time(small_data, tmp_path):
    out = tmp_path / "run"
    assert train(out, small_data, "--max-iters", "60", "--eval-interval", "30", "--eval-batches", "1",
                 "--no-report").returncode == 0
    s = json.loads((out / "summary.json").read_text())
    tokens, t = s["iterations"] * 4 * 16, s["train_seconds"]   # train_seconds is rounded to 0.01 s
    assert tokens / (t + 0.0051) <= s["tokens_per_sec"] <= tokens / max(t - 0.0051, 1e-9)


# -- permissions, full disk, read-only folders ---------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o027, 0o640), (0o022, 0o644)])
def test_outputs_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_bytes(tmp_path / "out.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.bin").st_mode) == mode


def test_a_read_only_cache_dir_is_one_error_line(small_data, tmp_path):
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        proc = train(tmp_path / "run", small_data, "--max-iters", "2", cache=ro / "cache")
        assert_user_error(proc, "--cache-dir", "Read-only file system")


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(small_data, tmp_path):
    # The cache lives elsewhere; the out-dir's file system holds one checkpoint but not two.
    probe = tmp_path / "probe"
    assert train(probe, small_data, "--max-iters", "2", "--eval-interval", "2", "--eval-batches", "1",
                 "--no-report").returncode == 0
    size = (probe / "last.pt").stat().st_size
    with tmpfs(tmp_path / "small-disk", f"{int(size * 1.5) // 1024}k") as disk:
        proc = train(disk / "run", small_data, "--max-iters", "4", "--eval-interval", "2", "--eval-batches", "1",
                     cache=tmp_path / "cache")
        assert_user_error(proc, "--out-dir", "No space left on device", "intact")
        run = disk / "run"
        assert load_checkpoint(run / "last.pt")["iteration"] == 2, "the last whole checkpoint survives"
        assert not hidden_temporaries(run), "the failed write left nothing half-written"
        assert [r["iter"] for r in read_jsonl(run / "metrics.jsonl") if r["kind"] == "eval"][0] == 2
        shutil.rmtree(run)
        # The token-id cache on a full disk: one line naming --cache-dir, no half-written ids.
        proc = train(tmp_path / "run2", small_data, "--max-iters", "2", "--vocab-size", "290", cache=disk / "cache")
        assert_user_error(proc, "--cache-dir", "disk")
        assert not [p for p in (disk / "cache").rglob("*.npy")] or all(
            np.load(p).size for p in (disk / "cache").rglob("*.npy"))
        assert not [p for p in (disk / "cache").rglob("*.tmp")]
