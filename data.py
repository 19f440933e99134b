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
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gpt.bpe import GPT2_SPLIT_PATTERN, BPETokenizer
from gpt.cli import UserError
from gpt.utils import atomic_open, network_available, remove_stale_temporaries

SPLITS = ("train", "valid", "test")
DEFAULT_CORPUS = "wikitext-2-raw-v1"
HF_CONFIGS = ("wikitext-2-raw-v1", "wikitext-2-v1", "wikitext-103-raw-v1", "wikitext-103-v1")
ALIASES = {"wikitext-2": "wikitext-2-raw-v1", "wikitext-103": "wikitext-103-raw-v1"}
BUILTIN = "builtin"


@dataclass
class Corpus:
    name: str                   # what it is called in messages
    key: str                    # identity for the cache (changes when the source changes)
    texts: dict[str, str] = field(repr=False)   # "train" / "valid" / "test" -> text


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
    texts = _from_hf(config)
    if texts is not None:
        return Corpus(config, f"hf-{config}", texts)
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
            texts = {s: _read_text(p) for s, p in paths.items()}
            return _checked(Corpus(f"{folder.name} ({ext})", _content_key("dir", texts), texts),
                            {s: str(p) for s, p in paths.items()})
    raise UserError(f"{folder} must hold wiki.train.raw, wiki.valid.raw, wiki.test.raw "
                    "(or the same three files ending .tokens)")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start} cannot be decoded); "
                        "convert it, e.g. iconv -f latin1 -t utf-8") from None
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror})") from None


def _checked(corpus: Corpus, sources: dict[str, str]) -> Corpus:
    """Refuse a corpus with an empty split before any work (training would fail at its first evaluation)."""
    for split in SPLITS:
        if not corpus.texts[split].strip():
            raise UserError(f"the {split} split ({sources[split]}) is empty: every split needs text")
    return corpus


def _split_lines(text: str) -> dict[str, str]:
    """The documented rule for one text: first 90% of lines train, next 5% valid, last 5% test."""
    lines = text.splitlines(keepends=True)
    if len(lines) < 20:
        raise UserError(f"a text corpus needs at least 20 lines to split 90/5/5, this one has {len(lines)}")
    a, b = int(len(lines) * 0.90), int(len(lines) * 0.95)
    return {"train": "".join(lines[:a]), "valid": "".join(lines[a:b]), "test": "".join(lines[b:])}


def _from_text_file(path: Path) -> Corpus:
    if not path.is_file():
        raise UserError(f"corpus file {path} does not exist")
    texts = _split_lines(_read_text(path))
    return _checked(Corpus(path.name, _content_key("txt", texts), texts),
                    {s: f"{share} of the lines of {path}" for s, share in
                     zip(SPLITS, ("the first 90%", "the next 5%", "the last 5%"))})


def builtin_corpus() -> Corpus:
    """Python's bundled documentation (about 0.5 MB of English), present in every Python."""
    import pydoc_data.topics as topics
    text = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    return Corpus("builtin (Python documentation)", _content_key("builtin", texts := _split_lines(text)), texts)


def _from_hf(config: str) -> dict[str, str] | None:
    """WikiText through `datasets`; None if it is neither cached nor downloadable."""
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
    # Each row is one line of the original file (with its newline); joining them gives the file back.
    return {s: "".join(ds[hf_name]["text"]) for s, hf_name in names.items()}


def _content_key(kind: str, texts: dict[str, str]) -> str:
    """Cache identity from the text itself (not a path or a size): an edit of any split, even one
    that keeps the file size, gives new token ids. Hashing WikiText-2 takes about 30 ms."""
    h = hashlib.sha256()
    for split in SPLITS:
        data = texts[split].encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little") + data)
    return f"{kind}-{h.hexdigest()[:16]}"


# -- tokenizer and ids ----------------------------------------------------------------------

def get_tokenizer(corpus: Corpus, kind: str = "bpe", vocab_size: int = 8192, gpt2_dir: str | None = None,
                  cache_dir: str = "runs/cache") -> BPETokenizer:
    """A BPE trained on the corpus' train split (cached), or GPT-2's tokenizer from gpt2_dir."""
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
    tok = BPETokenizer.train(corpus.texts["train"], vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, [path.name])
    tok.save(path)
    return tok


def _tokenizer_key(vocab_size: int) -> str:
    return f"bpe{vocab_size}-" + hashlib.sha256(GPT2_SPLIT_PATTERN.encode()).hexdigest()[:8]


def tokenizer_fingerprint(tok: BPETokenizer) -> str:
    return hashlib.sha256(repr(sorted(tok.to_dict().items())).encode()).hexdigest()[:12]


def encode_splits(corpus: Corpus, tok: BPETokenizer, cache_dir: str = "runs/cache") -> dict[str, np.ndarray]:
    """Token-id stream of each split: [<|endoftext|>] + encode(text), as uint16 or int32 arrays.

    Saved as .npy on first use and memory-mapped afterwards (no re-tokenization on later runs).
    """
    folder = Path(cache_dir) / corpus.key / f"ids-{tokenizer_fingerprint(tok)}"
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder, [f"{split}.npy" for split in SPLITS])
    dtype = np.uint16 if tok.vocab_size <= 1 << 16 else np.int32
    out = {}
    for split in SPLITS:
        path = folder / f"{split}.npy"
        if not path.is_file():
            ids = ([tok.eot_id] if tok.eot_id is not None else []) + tok.encode(corpus.texts[split])
            with atomic_open(path) as f:
                np.save(f, np.asarray(ids, dtype=dtype))
        out[split] = np.load(path, mmap_mode="r")
    return out
