"""Text -> tokenizer -> token ids (cached on disk); gpt/windows.py turns the ids into batches.

Corpora are resolved in this order:
  1. --data-dir DIR holding wiki.{train,valid,test}.raw (preferred) or .tokens;
  2. a path to a plain .txt file, split by lines: the first 90% of lines train, the next 5% valid,
     the last 5% test (contiguous, in file order, so no sentence is shared between splits);
  3. a WikiText name through Hugging Face `datasets` (Salesforce/wikitext), from its cache or a
     download: wikitext-2-raw-v1 (the default), wikitext-2-v1, wikitext-103-raw-v1, wikitext-103-v1;
  4. only for the default corpus, when there is no network and no cache: a built-in offline corpus,
     Python's own documentation text (pydoc_data.topics), split like a .txt file, with a warning.

Each split is one stream of token ids: an <|endoftext|> token first (so that the first real token
is predicted too, and every token of the text is counted exactly once), then the ids of the text.
The ids are cached as .npy files keyed by corpus and tokenizer, and memory-mapped on later runs.

Everything streams, so a corpus of many gigabytes needs no more memory than a small one:
  - a Corpus gives each split as an iterator of text chunks (whole lines, a few MB each): files are read
    in chunks (UTF-8, universal newlines, as open().read() decodes them), a .txt file's lines are counted
    in a first pass and each split's lines streamed, `datasets` rows are joined a batch at a time;
  - one pass per split (in load_corpus for local files) gives its SplitStats: SHA-256 (the cache key),
    UTF-8 bytes and word count (bits per byte and word-level perplexity) and whether it holds any text;
  - the BPE is trained on pre-token counts taken chunk by chunk (count_train_pretokens; worker
    processes for a large split), only the merge loop sees the distinct pre-tokens;
  - write_ids encodes chunk by chunk (worker processes, in order) straight into the .npy, written
    through a temporary file and renamed when complete.
For the tokenizer the chunks are re-cut (bpe_corpus.chunks_for_pretokenizer) only where GPT-2's
pre-tokenizer splits the same way with or without the cut, so the ids (and merges) are exactly those of the
whole text; bpe_corpus.py also holds the worker-process counting and encoding.
"""

from __future__ import annotations

import codecs
import errno
import functools
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from app.bpe_corpus import chunks_for_pretokenizer, count_pretokens_parallel, encode_chunks
from gpt.bpe import EOT, GPT2_SPLIT_PATTERN, BPETokenizer
from app.cli import UserError
from gpt.utils import atomic_open, network_available, remove_stale_temporaries

SPLITS = ("train", "valid", "test")
DEFAULT_CORPUS = "wikitext-2-raw-v1"
HF_CONFIGS = ("wikitext-2-raw-v1", "wikitext-2-v1", "wikitext-103-raw-v1", "wikitext-103-v1")
ALIASES = {"wikitext-2": "wikitext-2-raw-v1", "wikitext-103": "wikitext-103-raw-v1"}
BUILTIN = "builtin"


@dataclass
class SplitStats:
    """What the metrics and the cache need of a split's text, gathered in one streaming pass."""
    bytes: int = 0              # UTF-8 bytes (bits per byte)
    words: int = 0              # WikiText's word count (gpt.metrics.count_words)
    sha256: str = ""            # of the UTF-8 text (the cache key)
    has_text: bool = False      # anything but whitespace


class _StatsPass:
    """SplitStats of a text fed chunk by chunk (chunks cut anywhere, even inside a word)."""

    def __init__(self):
        self.h, self.nbytes, self.tokens, self.newlines, self.has_text = hashlib.sha256(), 0, 0, 0, False
        self.last = ""

    def add(self, chunk: str) -> None:
        if not chunk:
            return
        data = chunk.encode("utf-8", "surrogatepass")
        self.h.update(data)
        self.nbytes += len(data)
        self.tokens += len(chunk.split())
        if self.last and not self.last.isspace() and not chunk[0].isspace():
            self.tokens -= 1                       # one word cut in two by the chunk boundary
        self.newlines += chunk.count("\n")
        self.has_text = self.has_text or not chunk.isspace()
        self.last = chunk[-1]

    def result(self) -> SplitStats:
        lines = self.newlines + (1 if self.last and self.last != "\n" else 0)
        return SplitStats(self.nbytes, self.tokens + lines, self.h.hexdigest(), self.has_text)


class Corpus:
    """Three text splits, each readable as a stream of text chunks (never needed whole in memory).

    Corpus(name, key, texts) holds small in-memory texts ({"train": str, ...}); the loaders below give
    `sources` instead: split -> a function returning a fresh iterator over the split's text, in chunks of
    whole lines of a few MB. `chunks(split)` streams a split, `stats(split)` gives its SplitStats (from
    the pass that made the cache key, or one pass on first use), `texts[split]` the whole text as one
    string (for small corpora and tests: it reads all of it).
    """

    def __init__(self, name: str, key: str, texts: dict[str, str] | None = None, *,
                 sources: dict | None = None, stats: dict[str, SplitStats] | None = None):
        self.name = name            # what it is called in messages
        self.key = key              # identity for the cache (changes when the text changes)
        self._texts = texts
        self._sources = sources if sources is not None else {s: (lambda t=t: iter((t,))) for s, t in texts.items()}
        self._stats = dict(stats or {})

    def chunks(self, split: str):
        return self._sources[split]()

    def stats(self, split: str) -> SplitStats:
        if split not in self._stats:
            self._stats[split] = _scan(self.chunks(split))
        return self._stats[split]

    @property
    def texts(self) -> dict[str, str]:
        if self._texts is None:
            return _JoinedTexts(self)
        return self._texts

    def __repr__(self) -> str:
        return f"Corpus(name={self.name!r}, key={self.key!r})"


class _JoinedTexts(dict):
    def __init__(self, corpus: Corpus):
        super().__init__()
        self.corpus = corpus

    def __missing__(self, split: str) -> str:
        if split not in SPLITS:
            raise KeyError(split)
        self[split] = text = "".join(self.corpus.chunks(split))
        return text


def _scan(chunks) -> SplitStats:
    acc = _StatsPass()
    for chunk in chunks:
        acc.add(chunk)
    return acc.result()


# -- finding the text ----------------------------------------------------------------------

def load_corpus(corpus: str = DEFAULT_CORPUS, data_dir: str | None = None) -> Corpus:
    if data_dir is not None:
        return _from_folder(Path(data_dir))
    if corpus.endswith(".txt") or os.path.isfile(corpus):
        return _from_text_file(Path(corpus))
    if corpus == BUILTIN:
        return builtin_corpus()
    config = ALIASES.get(corpus, corpus)
    if config not in HF_CONFIGS:
        raise UserError(f"unknown corpus {corpus!r}; use one of {', '.join(HF_CONFIGS)}, "
                        f"'{BUILTIN}', a .txt file, or --data-dir DIR")
    sources = _from_hf(config)
    if sources is not None:
        return Corpus(config, f"hf-{config}", sources=sources)
    if config == DEFAULT_CORPUS:
        print(f"notice: {config} is not in the Hugging Face cache and there is no network, so this run uses "
              "the built-in offline corpus (Python's documentation); for WikiText offline pass --data-dir DIR "
              "with wiki.{train,valid,test}.tokens", file=sys.stderr)
        return builtin_corpus()
    raise UserError(f"corpus {config} could not be loaded: it is not cached and there is no network; "
                    "connect once to download it, or pass --data-dir DIR")


def _from_folder(folder: Path) -> Corpus:
    if not folder.is_dir():
        raise UserError(f"--data-dir {folder} is not a folder (it should hold wiki.{{train,valid,test}}.raw or .tokens)")
    for ext in ("raw", "tokens"):
        paths = {s: folder / f"wiki.{s}.{ext}" for s in SPLITS}
        if all(p.is_file() for p in paths.values()):
            sources = {s: functools.partial(_read_chunks, p) for s, p in paths.items()}
            stats = {s: _scan_with_bar(sources[s](), f"reading {p.name}", p.stat().st_size) for s, p in paths.items()}
            return _checked(Corpus(f"{folder.name} ({ext})", _content_key("dir", stats), sources=sources, stats=stats),
                            {s: str(p) for s, p in paths.items()})
    raise UserError(f"{folder} must hold wiki.train.raw, wiki.valid.raw, wiki.test.raw "
                    "(or the same three files ending .tokens)")


READ_CHARS = 1 << 22          # characters per read: chunks of about 4 MB
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"   # where str.splitlines breaks


def _read_chunks(path: Path, chars: int | None = None):
    """The text of a file in chunks of `chars` (default READ_CHARS) characters, decoded as
    open(path).read() would (UTF-8, universal newlines: \r\n and \r become \n)."""
    chars = chars or READ_CHARS
    try:
        with open(path, encoding="utf-8") as f:
            while chunk := f.read(chars):
                yield chunk
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text (byte {_first_invalid_byte(path)} cannot be decoded); "
                        "convert it, e.g. iconv -f latin1 -t utf-8") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror})") from None


def _first_invalid_byte(path: Path) -> int:
    """Offset in the file of the first byte that is not valid UTF-8 (a streaming decode, as the error path)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                return offset - pending + e.start
            if not block:
                return offset
            offset += len(block)


def _line_blocks(chunks):
    """Lists of whole lines (str.splitlines(keepends=True) of the whole text, \r\n one break), from
    chunks of text cut anywhere."""
    carry = ""
    for chunk in chunks:
        lines = (carry + chunk).splitlines(True)
        carry = ""
        if lines and (lines[-1][-1] not in LINE_BREAKS or lines[-1][-1] == "\r"):
            carry = lines.pop()          # unfinished (or a \r that a \n may follow)
        if lines:
            yield lines
    if carry:
        yield [carry]


def _line_range(path: Path, start: int, stop: int):
    """Lines start..stop-1 of a file (str.splitlines' lines), in chunks."""
    i = 0
    for lines in _line_blocks(_read_chunks(path)):
        j = i + len(lines)
        if j > start:
            yield "".join(lines[max(start - i, 0):stop - i])
        i = j
        if i >= stop:
            return


def _checked(corpus: Corpus, sources: dict[str, str]) -> Corpus:
    """Refuse a corpus with an empty split before any work (training would fail at its first evaluation)."""
    for split in SPLITS:
        if not corpus.stats(split).has_text:
            raise UserError(f"the {split} split ({sources[split]}) is empty: every split needs text")
    return corpus


def _split_points(n_lines: int) -> tuple[int, int]:
    """The documented rule: first 90% of lines train, next 5% valid, last 5% test."""
    if n_lines < 20:
        raise UserError(f"a text corpus needs at least 20 lines to split 90/5/5, this one has {n_lines}")
    return int(n_lines * 0.90), int(n_lines * 0.95)


def _split_lines(text: str) -> dict[str, str]:
    """_split_points applied to one in-memory text."""
    lines = text.splitlines(keepends=True)
    a, b = _split_points(len(lines))
    return {"train": "".join(lines[:a]), "valid": "".join(lines[a:b]), "test": "".join(lines[b:])}


def _from_text_file(path: Path) -> Corpus:
    """A .txt file in two streaming passes: count its lines, then read each split's lines (the stats)."""
    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist")
    size = path.stat().st_size
    with _bar(f"counting lines of {path.name}", size) as bar:
        n_lines = sum(len(lines) for lines in _line_blocks(_tracked(_read_chunks(path), bar)))
    a, b = _split_points(n_lines)
    bounds = {"train": (0, a), "valid": (a, b), "test": (b, n_lines)}
    sources = {s: functools.partial(_line_range, path, *bounds[s]) for s in SPLITS}
    acc = {s: _StatsPass() for s in SPLITS}
    i = 0
    with _bar(f"reading {path.name}", size) as bar:        # one pass for the three splits' stats
        for lines in _line_blocks(_tracked(_read_chunks(path), bar)):
            for s, (lo, hi) in bounds.items():
                if i + len(lines) > lo and i < hi:
                    acc[s].add("".join(lines[max(lo - i, 0):hi - i]))
            i += len(lines)
    stats = {s: acc[s].result() for s in SPLITS}
    return _checked(Corpus(path.name, _content_key("txt", stats), sources=sources, stats=stats),
                    {s: f"{share} of the lines of {path}" for s, share in
                     zip(SPLITS, ("the first 90%", "the next 5%", "the last 5%"))})


def builtin_corpus() -> Corpus:
    """Python's bundled documentation (about 0.5 MB of English), present in every Python."""
    import pydoc_data.topics as topics
    text = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    texts = _split_lines(text)
    stats = {s: _scan((t,)) for s, t in texts.items()}
    return Corpus("builtin (Python documentation)", _content_key("builtin", stats), texts, stats=stats)


def _from_hf(config: str) -> dict | None:
    """WikiText through `datasets` (split -> function streaming its rows); None if it is neither cached
    nor downloadable."""
    if not network_available() and "datasets" not in sys.modules:
        # datasets reads these at import: look in the local cache only, never wait on the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets   # optional at run time: without it, only local corpora work
    except ImportError:
        return None
    datasets.logging.set_verbosity_error()
    try:
        ds = datasets.load_dataset("Salesforce/wikitext", config)
    except OSError:   # not cached and no network (ConnectionError), or not found (FileNotFoundError)
        return None
    names = {"train": "train", "valid": "validation", "test": "test"}
    return {s: functools.partial(_hf_chunks, ds[hf_name]) for s, hf_name in names.items()}


def _hf_chunks(rows, batch_size: int = 10_000):
    """Each row is one line of the original file (with its newline): joining a batch of rows gives a
    chunk of the file back. The dataset is memory-mapped Arrow, so only one batch is in memory."""
    for batch in rows.iter(batch_size=batch_size):
        yield "".join(batch["text"])


def _content_key(kind: str, stats: dict[str, SplitStats]) -> str:
    """Cache identity from the text itself (not a path or a size): an edit of any split, even one
    that keeps the file size, gives new token ids. The SHA-256 of each split is taken in the pass that
    reads it anyway (about 1 s per GB)."""
    h = hashlib.sha256()
    for split in SPLITS:
        h.update(f"{split} {stats[split].bytes} {stats[split].sha256}\n".encode())
    return f"{kind}-{h.hexdigest()[:16]}"


# -- streaming helpers --------------------------------------------------------------------

CHUNK_CHARS = 1 << 20          # characters per chunk handed to a tokenizer worker
PARALLEL_MIN_BYTES = 8 << 20    # below this, one process is quicker than starting workers


def workers_for(nbytes: int, processes: int | None = None) -> int:
    """How many processes to tokenize `nbytes` of text with: every core the process may use, unless
    the text is small (or `processes` says)."""
    if processes is not None:
        return max(1, processes)
    if nbytes < PARALLEL_MIN_BYTES:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _bar(desc: str, total: int, progress: bool | None = None):
    """A tqdm bar in bytes on stderr. progress None: only when stderr is a terminal (so logs and pipes
    get no carriage-return spam); True: always; False: never."""
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, mininterval=0.5,
                disable=None if progress is None else not progress, leave=False, dynamic_ncols=True,
                file=sys.stderr)


def _tracked(chunks, bar, stats: _StatsPass | None = None):
    """Pass the chunks through, advancing `bar` by their UTF-8 size (and feeding `stats`)."""
    for chunk in chunks:
        if stats is not None:
            stats.add(chunk)
        bar.update(len(chunk.encode("utf-8", "surrogatepass")) if not chunk.isascii() else len(chunk))
        yield chunk


def _scan_with_bar(chunks, desc: str, total: int) -> SplitStats:
    with _bar(desc, total) as bar:
        return _scan(_tracked(chunks, bar))


# -- tokenizer and ids ----------------------------------------------------------------------

def get_tokenizer(corpus: Corpus, kind: str = "bpe", vocab_size: int = 8192, gpt2_dir: str | None = None,
                  cache_dir: str = "runs/cache", processes: int | None = None) -> BPETokenizer:
    """A BPE trained on the corpus' train split (cached), or GPT-2's tokenizer from gpt2_dir.

    The train split is streamed: its pre-tokens are counted chunk by chunk (in worker processes for a
    large split, see workers_for), and only the counts (one entry per distinct pre-token) are kept.
    """
    if kind == "gpt2":
        if gpt2_dir is None:
            raise UserError("--tokenizer gpt2 needs --gpt2-dir DIR holding encoder.json and vocab.bpe")
        enc, bpe = Path(gpt2_dir) / "encoder.json", Path(gpt2_dir) / "vocab.bpe"
        if not (enc.is_file() and bpe.is_file()):
            raise UserError(f"{gpt2_dir} must hold GPT-2's encoder.json and vocab.bpe")
        return BPETokenizer.from_gpt2(enc, bpe)
    if kind != "bpe":
        raise UserError(f"unknown tokenizer {kind!r}; use bpe or gpt2")
    if vocab_size < 257:
        raise UserError(f"--vocab-size must be at least 257 (256 bytes + <|endoftext|>), got {vocab_size}")
    path = Path(cache_dir) / corpus.key / f"tokenizer-{_tokenizer_key(vocab_size)}.json"
    if path.is_file():
        return BPETokenizer.load(path)
    tok = BPETokenizer.train(count_train_pretokens(corpus, processes), vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, [path.name])
    tok.save(path)
    return tok


def _tokenizer_key(vocab_size: int) -> str:
    return f"bpe{vocab_size}-" + hashlib.sha256(GPT2_SPLIT_PATTERN.encode()).hexdigest()[:8]


def tokenizer_fingerprint(tok: BPETokenizer) -> str:
    return hashlib.sha256(repr(sorted(tok.to_dict().items())).encode()).hexdigest()[:12]


def count_train_pretokens(corpus: Corpus, processes: int | None = None, progress: bool | None = None):
    """Pre-token counts of the train split, streamed (what BPETokenizer.train counts from the whole text)."""
    total = corpus.stats("train").bytes
    with _bar("tokenizer: counting pre-tokens", total, progress) as bar:
        chunks = chunks_for_pretokenizer(_tracked(corpus.chunks("train"), bar), CHUNK_CHARS, special_tokens=[EOT])
        return count_pretokens_parallel(chunks, GPT2_SPLIT_PATTERN, [EOT], processes=workers_for(total, processes))


def encode_splits(corpus: Corpus, tok: BPETokenizer, cache_dir: str = "runs/cache", processes: int | None = None,
                  progress: bool | None = None) -> dict[str, np.ndarray]:
    """Token-id stream of each split: [<|endoftext|>] + encode(text), as uint16 or int32 arrays.

    Saved as .npy on first use and memory-mapped afterwards (no re-tokenization on later runs). The
    text is streamed and encoded chunk by chunk (write_ids), so no split is ever one list of ids.
    """
    folder = Path(cache_dir) / corpus.key / f"ids-{tokenizer_fingerprint(tok)}"
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder, [f"{split}.npy" for split in SPLITS])
    out = {}
    for split in SPLITS:
        path = folder / f"{split}.npy"
        if not path.is_file():
            stats = corpus.stats(split)
            write_ids(path, corpus.chunks(split), tok, total=stats.bytes, desc=f"encoding {corpus.name} {split}",
                      processes=processes, progress=progress, expect_sha256=stats.sha256)
        out[split] = np.load(path, mmap_mode="r")
    return out


def write_ids(path, chunks, tok: BPETokenizer, total: int | None = None, desc: str = "encoding",
              processes: int | None = None, progress: bool | None = None, expect_sha256: str | None = None) -> int:
    """Write [<|endoftext|>] + tok.encode(text of `chunks`) to the .npy file `path`; returns the count.

    The text is re-cut where the pre-tokenizer allows (chunks_for_pretokenizer: the ids are exactly those
    of the whole text), the chunks are encoded in order by worker processes (encode_chunks; every core
    for a large text, see workers_for), and each chunk's ids go straight to the file, whose .npy header
    is written last with the final length. The file is written atomically (atomic_open): after a failure
    anywhere there is no `path`, never a partial one. With expect_sha256 (the split's SplitStats.sha256,
    from which the cache key was made) the text read is checked against it, so that a file edited after
    load_corpus never leaves ids of the new text under the old text's key.
    """
    seen = _StatsPass() if expect_sha256 else None
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 1 << 16 else np.int32)
    try:
        return _write_ids(path, chunks, tok, dtype, total, desc, processes, progress, expect_sha256, seen)
    except OSError as e:
        if e.errno == errno.ENOSPC:       # as atomic_open says it for NumPy's short writes
            raise OSError(f"cannot write {path} ({e.strerror}: is the disk full?)") from None
        raise


def _write_ids(path, chunks, tok, dtype, total, desc, processes, progress, expect_sha256, seen) -> int:
    n = 0
    with atomic_open(path) as f, _bar(desc, total, progress) as bar:
        f.write(_npy_header(dtype, 0))
        if tok.eot_id is not None:
            f.write(np.array([tok.eot_id], dtype).tobytes())
            n += 1
        recut = chunks_for_pretokenizer(_tracked(chunks, bar, seen), CHUNK_CHARS, pattern=tok.pattern)
        for ids in encode_chunks(tok, recut, workers_for(total or 0, processes), dtype):
            f.write(ids.tobytes())
            n += len(ids)
        if seen is not None and seen.result().sha256 != expect_sha256:
            raise UserError(f"{desc}: the text changed after it was loaded (it is not the text the cache key "
                            "was made from); run again")
        f.seek(0)
        f.write(_npy_header(dtype, n))
    return n


_NPY_HEADER_BYTES = 128


def _npy_header(dtype: np.dtype, n: int) -> bytes:
    """A .npy (format 1.0) header for a 1-d array of n items, always 128 bytes long, so that it can be
    written first as a placeholder and rewritten in place when n is known."""
    d = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (np.lib.format.dtype_to_descr(dtype), n)
    room = _NPY_HEADER_BYTES - 10
    return b"\x93NUMPY\x01\x00" + room.to_bytes(2, "little") + (d.ljust(room - 1) + "\n").encode("latin1")
