"""Tokenizing a corpus of hundreds of megabytes: our streaming BPE (training + encoding to a .npy of ids)
against Hugging Face `tokenizers` (ByteLevel BPE training + encode_batch), side by side.

    python benchmarks/corpus_scale.py            # ~500 MB (WikiText-2 train lines, shuffled, repeated)
    python benchmarks/corpus_scale.py --mb 50    # a quicker check

The text is built in a temporary folder (WikiText-2's train lines shuffled with a fixed seed, repeated
until --mb megabytes) and deleted afterwards; nothing is written into the repository. Each side runs in
its own subprocess, so its peak memory is its own: the peak resident set of the whole process tree
(the side and its worker processes) is sampled from /proc every 0.1 s, as RSS summed over the processes
(pages shared by forked workers counted once per process, an upper bound) and as PSS (shared pages
divided among the processes that share them: what the tree really holds). ru_maxrss of the side and of
its largest worker is printed too. Targets: peak memory at most 3 GB, wall time at most 2x tokenizers'.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, data_file  # noqa: E402

EOT = "<|endoftext|>"


def build_corpus(path: Path, mb: float, seed: int = 0) -> int:
    """WikiText-2 train lines, shuffled with `seed`, repeated (a new shuffle each round) to `mb` MB."""
    lines = data_file("wikitext-2", "wiki.train.tokens").read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(seed)
    target, size = int(mb * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            rng.shuffle(lines)
            for line in lines:
                f.write(line)
                size += len(line.encode("utf-8"))
                if size >= target:
                    break
    return size


# -- the two sides (each run in a subprocess: python corpus_scale.py --side ours|hf FILE) ---------------

def side_ours(path: Path, vocab: int, workers: int | None, out: Path) -> dict:
    from app import data
    from gpt.bpe import BPETokenizer
    size = path.stat().st_size
    corpus = data.Corpus(path.name, "bench", sources={"train": lambda: data._read_chunks(path)},
                         stats={"train": data.SplitStats(bytes=size)})
    t0 = time.perf_counter()
    tok = BPETokenizer.train(data.count_train_pretokens(corpus, workers), vocab)
    t1 = time.perf_counter()
    n = data.write_ids(out, data._read_chunks(path), tok, total=size, processes=workers)
    t2 = time.perf_counter()
    return {"train_s": t1 - t0, "encode_s": t2 - t1, "tokens": n, "vocab": tok.vocab_size}


def _line_batches(path: Path, lines_per_batch: int = 10_000):
    with open(path, encoding="utf-8") as f:
        batch = []
        for line in f:
            batch.append(line)
            if len(batch) == lines_per_batch:
                yield batch
                batch = []
        if batch:
            yield batch


def side_hf(path: Path, vocab: int, out: Path) -> dict:
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    tk.train_from_iterator(_line_batches(path), trainer)
    t1 = time.perf_counter()
    n = 0
    with open(out, "wb") as f:          # the same work as ours: every id, to a file, in order
        for batch in _line_batches(path):
            ids = np.fromiter((i for e in tk.encode_batch(batch) for i in e.ids), dtype=np.uint16)
            f.write(ids.tobytes())
            n += len(ids)
    t2 = time.perf_counter()
    return {"train_s": t1 - t0, "encode_s": t2 - t1, "tokens": n, "vocab": tk.get_vocab_size()}


def run_side(args) -> None:
    path, out = Path(args.side_file), Path(args.side_out)
    t0 = time.perf_counter()
    res = side_ours(path, args.vocab, args.workers, out) if args.side == "ours" else side_hf(path, args.vocab, out)
    res["wall_s"] = time.perf_counter() - t0
    res["maxrss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["maxrss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


# -- the driver -------------------------------------------------------------------------------------

def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def measure(cmd: list[str]) -> dict:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    peak = {"rss": 0, "pss": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss = pss = 0
            for p in _tree(proc.pid):
                r, s = _memory_kb(p)
                rss, pss = rss + r, pss + s
            peak["rss"], peak["pss"] = max(peak["rss"], rss), max(peak["pss"], pss)
            done.wait(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = proc.communicate()
    done.set()
    thread.join()
    if proc.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {proc.returncode})")
    res = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    res["tree_rss_mb"], res["tree_pss_mb"] = peak["rss"] / 1024, peak["pss"] / 1024
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=500, help="size of the corpus to build, in MB (default 500)")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--workers", type=int, default=None, help="our worker processes (default: every core)")
    ap.add_argument("--only", choices=["ours", "hf"], default=None)
    ap.add_argument("--side", choices=["ours", "hf"], help=argparse.SUPPRESS)
    ap.add_argument("--side-file", help=argparse.SUPPRESS)
    ap.add_argument("--side-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.side:
        run_side(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="hw5-corpus-scale-") as tmp:
        text = Path(tmp) / "corpus.txt"
        t0 = time.perf_counter()
        size = build_corpus(text, args.mb)
        print(f"corpus: {size / 1e6:.0f} MB of shuffled WikiText-2 train lines ({time.perf_counter() - t0:.0f} s "
              f"to build); vocab {args.vocab}; {os.cpu_count()} cores", flush=True)
        rows = {}
        for side in ("ours", "hf"):
            if args.only and side != args.only:
                continue
            cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--side-file", str(text),
                   "--side-out", str(Path(tmp) / f"ids-{side}.bin"), "--vocab", str(args.vocab)]
            if args.workers:
                cmd += ["--workers", str(args.workers)]
            rows[side] = measure(cmd)
            os.unlink(Path(tmp) / f"ids-{side}.bin")
    names = {"ours": "ours (hw5 BPE, streamed)", "hf": "HF tokenizers ByteLevel BPE"}
    print(f"\n| {size / 1e6:.0f} MB, vocab {args.vocab} | train (s) | encode (s) | wall (s) | tokens | "
          "peak tree PSS (MB) | peak tree RSS sum (MB) | ru_maxrss self / largest child (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for side, r in rows.items():
        print(f"| {names[side]} | {r['train_s']:.1f} | {r['encode_s']:.1f} | {r['wall_s']:.1f} | {r['tokens']:,} | "
              f"{r['tree_pss_mb']:,.0f} | {r['tree_rss_mb']:,.0f} | {r['maxrss_self_mb']:,.0f} / "
              f"{r['maxrss_children_mb']:,.0f} |")
    if len(rows) == 2:
        ratio = rows["ours"]["wall_s"] / rows["hf"]["wall_s"]
        print(f"\nours / HF wall time: {ratio:.2f}x (target <= 2x); our peak tree PSS "
              f"{rows['ours']['tree_pss_mb'] / 1024:.2f} GB (target <= 3 GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
