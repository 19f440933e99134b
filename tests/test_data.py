"""Data pipeline: corpus resolution, word counts, token-id caching, training and evaluation windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import data
from data import encode_splits, load_corpus
from gpt.bpe import BPETokenizer
from gpt.cli import UserError
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
