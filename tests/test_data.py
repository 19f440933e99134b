"""Data pipeline: corpus resolution, word counts, token-id caching, training and evaluation windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app import data
from app.data import encode_splits, load_corpus
from gpt.bpe import BPETokenizer
from app.cli import UserError
from gpt.metrics import count_words
from gpt.windows import WindowBatches, eval_windows
from conftest import data_path


def test_word_count_of_wikitext2_test_is_245569():
    text = data_path("wikitext-2", "wiki.test.tokens").read_text(encoding="utf-8")
    assert count_words(text) == 245_569


def test_count_words_by_hand():
    assert count_words("a b\nc\n") == 3 + 2
    assert count_words("a b") == 2 + 1          # a last line without newline still ends a line
    assert count_words("") == 0


def test_data_dir_prefers_raw_then_tokens(tmp_path):
    for s in ("train", "valid", "test"):
        (tmp_path / f"wiki.{s}.tokens").write_text(f"{s} tokens\n")
    assert load_corpus(data_dir=str(tmp_path)).texts["valid"] == "valid tokens\n"
    for s in ("train", "valid", "test"):
        (tmp_path / f"wiki.{s}.raw").write_text(f"{s} raw\n")
    assert load_corpus(data_dir=str(tmp_path)).texts["test"] == "test raw\n"


def test_data_dir_missing_files_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="wiki.train.raw"):
        load_corpus(data_dir=str(tmp_path))


def test_text_file_is_split_90_5_5_by_lines(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    c = load_corpus(str(path))
    assert c.texts["train"].count("\n") == 90 and c.texts["valid"].count("\n") == 5
    assert c.texts["test"].startswith("line 95\n")
    assert "".join(c.texts[s] for s in ("train", "valid", "test")) == path.read_text()


def test_unknown_corpus_is_a_user_error():
    with pytest.raises(UserError, match="unknown corpus"):
        load_corpus("wikitext-7")


def test_offline_fallback_only_for_the_default_corpus(monkeypatch, capsys, recwarn):
    monkeypatch.setattr(data, "_from_hf", lambda config: None)   # as with no network and no cache
    c = load_corpus()
    err = capsys.readouterr().err
    assert err.startswith("notice: ") and err.count("\n") == 1 and "built-in offline corpus" in err, \
        "one notice line on stderr, not a warning with a source line"
    assert not recwarn.list
    assert c.name.startswith("builtin") and len(c.texts["train"]) > 300_000
    with pytest.raises(UserError, match="no network"):
        load_corpus("wikitext-103-v1")


def test_token_ids_are_cached_and_memory_mapped(tmp_path):
    corpus = data.Corpus("tiny", "tiny-key", {"train": "hello world " * 50, "valid": "hello there", "test": "world"})
    tok = BPETokenizer.train(corpus.texts["train"], 270)
    ids = encode_splits(corpus, tok, str(tmp_path))
    assert isinstance(ids["train"], np.memmap) and ids["train"].dtype == np.uint16
    assert ids["valid"][0] == tok.eot_id and tok.decode(ids["valid"][1:].tolist()) == "hello there"

    def fail(*a, **k):
        raise AssertionError("re-tokenized although the ids were cached")
    monkeypatch_tok = BPETokenizer.from_dict(tok.to_dict())
    monkeypatch_tok.encode = fail
    again = encode_splits(corpus, monkeypatch_tok, str(tmp_path))
    assert np.array_equal(again["train"], ids["train"])


def stream(n=1000, seed=0):
    return np.random.default_rng(seed).integers(0, 500, n).astype(np.uint16)


def test_training_windows_are_aligned_and_cover_each_epoch_once():
    ids = stream(1001)
    wb = WindowBatches(ids, block_size=10, batch_size=7, seed=3)
    assert wb.n_windows == 100 and wb.batches_per_epoch == 14
    starts = []
    for step in range(wb.batches_per_epoch):
        x, y = wb.get(step)
        assert x.shape == y.shape == (7, 10) and x.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])              # y is x shifted by one
        for row_x, row_y in zip(x, y):
            s = int(np.flatnonzero([np.array_equal(ids[k:k + 10], row_x.numpy()) for k in range(0, 1000, 10)])[0]) * 10
            assert np.array_equal(ids[s + 1:s + 11], row_y.numpy())
            starts.append(s)
    assert len(set(starts)) == len(starts) == 98            # 2 windows dropped with the incomplete batch


def test_training_batches_are_a_pure_function_of_seed_and_step():
    ids = stream(5000)
    a, b = WindowBatches(ids, 16, 8, seed=1), WindowBatches(ids, 16, 8, seed=1)
    for step in (0, 5, 100, 3):      # out of order, across epochs
        assert torch.equal(a.get(step)[0], b.get(step)[0])
    assert not torch.equal(a.get(0)[0], WindowBatches(ids, 16, 8, seed=2).get(0)[0])
    assert not torch.equal(a.get(0)[0], a.get(a.batches_per_epoch)[0])   # a new shuffle each epoch


def test_eval_windows_predict_every_token_exactly_once():
    ids = stream(103)
    xs, ys, seen = [], [], 0
    for x, y, m in eval_windows(ids, block_size=10, batch_size=4):
        for row_x, row_y, row_m in zip(x, y, m):
            n = int(row_m.sum())
            assert torch.all(row_m[:n] == 1) and torch.all(row_m[n:] == 0)
            xs.extend(row_x[:n].tolist())
            ys.extend(row_y[:n].tolist())
            seen += n
    assert seen == 102
    assert xs == ids[:-1].tolist() and ys == ids[1:].tolist()


def test_too_little_training_data_is_a_user_error():
    with pytest.raises(ValueError, match="batch_size"):
        WindowBatches(stream(50), block_size=16, batch_size=8)


# -- the streaming path: chunked, parallel, atomic ------------------------------------------------

from pathlib import Path   # noqa: E402

from app.bpe_corpus import chunks_for_pretokenizer, encode_chunks   # noqa: E402
from gpt.bpe import count_pretokens   # noqa: E402
from gpt.metrics import split_metrics, text_metrics   # noqa: E402


@pytest.fixture
def small_chunks(monkeypatch):
    """Tiny reads and chunks, so that a test's small text crosses hundreds of boundaries."""
    monkeypatch.setattr(data, "READ_CHARS", 4093)
    monkeypatch.setattr(data, "CHUNK_CHARS", 2000)


@pytest.fixture(scope="module")
def wiki_valid():
    return data_path("wikitext-2", "wiki.valid.tokens")


@pytest.fixture(scope="module")
def valid_tok(wiki_valid):
    return BPETokenizer.train(wiki_valid.read_text(encoding="utf-8")[:300_000], 1000)


def test_streamed_parallel_encoding_of_wikitext2_valid_is_encode_of_the_whole_text(
        wiki_valid, valid_tok, small_chunks, tmp_path):
    text = wiki_valid.read_text(encoding="utf-8")
    n = data.write_ids(tmp_path / "valid.npy", data._read_chunks(wiki_valid), valid_tok, processes=2)
    ids = np.load(tmp_path / "valid.npy", mmap_mode="r")
    assert ids.dtype == np.uint16 and n == len(ids)
    assert ids[0] == valid_tok.eot_id
    assert ids[1:].tolist() == valid_tok.encode(text)
    # Why the chunks are not simply cut at line breaks: WikiText's " \n \n " runs pre-tokenize otherwise.
    by_line = [i for line in text.splitlines(keepends=True) for i in valid_tok.encode(line)]
    assert by_line != valid_tok.encode(text)


@pytest.mark.parametrize("text", [
    "no trailing newline\nsecond line",
    "windows\r\nline ends\r\n\r\n  \r\nend",
    " = Title = \n \n Body text , with spaces . \n\n\n  \t\n",
    "x" * 5000 + "  " + "y" * 3000,                  # long runs without a place to cut
    "specials <|endoftext|> stay text  <|endoftext|>\n\u2028 é 12 345 ' s's 'll\xa0\u3000z",
])
def test_chunked_encoding_is_exact_for_awkward_texts(text, valid_tok):
    whole = valid_tok.encode(text)
    for chars in (1, 2, 3, 7, 50):
        reads = [text[i:i + 5] for i in range(0, len(text), 5)]
        chunks = list(chunks_for_pretokenizer(reads, chars))
        assert "".join(chunks) == text
        got = np.concatenate(list(encode_chunks(valid_tok, chunks))).tolist()
        assert got == whole, (chars, chunks)


def test_a_crlf_file_without_final_newline_gives_the_ids_of_reading_it_whole(valid_tok, small_chunks, tmp_path):
    lines = [f"line {i} , with {'  ' * (i % 3)}spaces" for i in range(3000)]
    path = tmp_path / "wiki.valid.raw"
    path.write_bytes("\r\n".join(lines).encode("utf-8"))      # \r\n line ends, none after the last line
    text = path.read_text(encoding="utf-8")                   # what the kit read before: universal newlines
    assert "\r" not in text and not text.endswith("\n")
    data.write_ids(tmp_path / "ids.npy", data._read_chunks(path), valid_tok, processes=2)
    assert np.load(tmp_path / "ids.npy")[1:].tolist() == valid_tok.encode(text)
    stats = data._scan(data._read_chunks(path))
    assert (stats.words, stats.bytes) == (count_words(text), len(text.encode("utf-8")))


@pytest.mark.parametrize("lines", ["wikitext", "unindented"])
def test_streamed_training_learns_the_same_merges(lines, wiki_valid, small_chunks):
    text = wiki_valid.read_text(encoding="utf-8")[:400_000] + " a  <|endoftext|> b <|endoftext|>  \n"
    if lines == "unindented":     # lines that start with a word, not a space (most texts but WikiText)
        text = text.replace("\n ", "\n")
    path = wiki_valid.parent / "unused"
    corpus = data.Corpus("t", "k", {"train": text, "valid": "v", "test": "t"})
    corpus._sources["train"] = lambda: (text[i:i + 3001] for i in range(0, len(text), 3001))
    for processes in (1, 2):
        counts = data.count_train_pretokens(corpus, processes=processes)
        assert counts == count_pretokens([text], special_tokens=["<|endoftext|>"])
        assert BPETokenizer.train(counts, 600).merges == BPETokenizer.train(text, 600).merges
    assert not path.exists()
    with pytest.raises(ValueError, match="another pattern"):
        BPETokenizer.train(counts, 600, pattern=r"\S+|\s+")


@pytest.mark.parametrize("processes", [1, 2])
def test_the_ids_file_is_written_atomically(processes, valid_tok, wiki_valid, small_chunks, tmp_path, monkeypatch):
    from app import bpe_corpus
    real, calls = bpe_corpus._encode_array, []

    def failing(tok, chunk, dtype):          # runs in the worker processes too (they are forked)
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("worker failed")
        return real(tok, chunk, dtype)
    monkeypatch.setattr(bpe_corpus, "_encode_array", failing)
    with pytest.raises(RuntimeError, match="worker failed"):
        data.write_ids(tmp_path / "valid.npy", data._read_chunks(wiki_valid), valid_tok, processes=processes)
    assert list(tmp_path.iterdir()) == [], "neither valid.npy nor a temporary file is left"


def test_progress_bar_goes_to_stderr_and_only_when_asked_or_on_a_terminal(valid_tok, tmp_path, capsys):
    chunks = ["some text to encode\n"] * 200
    data.write_ids(tmp_path / "a.npy", iter(chunks), valid_tok, total=4000, desc="encoding test", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "encoding test" in err
    data.write_ids(tmp_path / "b.npy", iter(chunks), valid_tok, total=4000, desc="encoding test")   # not a tty here
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_split_stats_stream_the_metrics_of_the_whole_text(small_chunks, tmp_path):
    text = "".join(f"w{i} é x{i % 7}\n" if i % 5 else " \n" for i in range(20000)) + "last line no newline"
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    stats = data._scan(data._read_chunks(tmp_path / "t.txt"))   # chunks cut inside words
    assert split_metrics(5.0, 10, stats.words, stats.bytes) == text_metrics(5.0, 10, text)
    assert stats.has_text and not data._scan(iter([" \n", "\t \n"])).has_text


def test_a_text_file_is_split_90_5_5_by_lines_in_a_streaming_pass(small_chunks, tmp_path):
    lines = [f"line {i}{chr(0x2028) if i % 97 == 0 else ''}" + ("\r\n" if i % 2 else "\n") for i in range(5000)]
    path = tmp_path / "book.txt"
    path.write_bytes("".join(lines).encode("utf-8"))
    c = load_corpus(str(path))
    want = data._split_lines(path.read_text(encoding="utf-8"))     # the in-memory rule
    assert {s: c.texts[s] for s in data.SPLITS} == want
    assert all(c.stats(s) == data._scan([want[s]]) for s in data.SPLITS)


def test_hf_rows_are_streamed_in_batches(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [f" row {i} \n" for i in range(25_003)]

    class Split:
        def iter(self, batch_size):
            assert batch_size < len(rows), "rows are read in batches, not all at once"
            for i in range(0, len(rows), batch_size):
                yield {"text": rows[i:i + batch_size]}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config: {s: Split() for s in ("train", "validation", "test")})
    c = load_corpus("wikitext-103-raw-v1")
    assert c.key == "hf-wikitext-103-raw-v1"
    assert c.texts["valid"] == "".join(rows) and c.stats("test").words == count_words("".join(rows))
