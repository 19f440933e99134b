"""Tokenizer tests: exact merges on hand-checked inputs, an independent naive trainer as
reference, parity with tiktoken's GPT-2 encoding and with HF tokenizers' trainer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from gpt.bpe import BPETokenizer, count_pairs, merge, bytes_to_unicode
from conftest import data_path

A, B, C, D = ord("a"), ord("b"), ord("c"), ord("d")


# -- the primitives ----------------------------------------------------------------

def test_count_pairs_counts_adjacent_pairs():
    assert count_pairs([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert count_pairs([7]) == {} and count_pairs([]) == {}


def test_count_pairs_weight_adds_into_existing_counts():
    counts = {(1, 2): 5}
    count_pairs([1, 2, 1, 2], counts, weight=3)
    assert counts == {(1, 2): 11, (2, 1): 3}
    count_pairs([1, 2], counts, weight=-11)
    assert counts[(1, 2)] == 0


def test_merge_replaces_left_to_right_without_overlap():
    assert merge([1, 2, 3, 1, 2], (1, 2), 7) == [7, 3, 7]
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]
    assert merge([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert merge([3, 1, 2], (1, 2), 7) == [3, 7]          # pair at the very end
    assert merge([2, 1], (1, 2), 7) == [2, 1]             # order matters
    ids = [1, 2]
    merge(ids, (1, 2), 7)
    assert ids == [1, 2], "merge must return a new list, not change its input"


# -- training: exact merges on tiny inputs, worked out by hand ---------------------------

def test_train_wikipedia_example():
    # "aaabdaaabac" is one pre-token. Pair counts: aa 4, ab 2, others 1 -> merge (a,a) = 256.
    # Now [aa a b d aa a b a c]: (aa,a) 2 and (a,b) 2 tie; b"a" < b"aa" so (a,b) = 257.
    # Now [aa ab d aa ab a c]: (aa,ab) 2 is the only pair seen twice -> 258.
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3 + 1)
    assert tok.merges == {(A, A): 256, (A, B): 257, (256, 257): 258}
    assert tok.special_tokens == {"<|endoftext|>": 259}
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, D, 258, A, C]


def test_train_counts_each_pretoken_with_its_frequency_and_never_crosses_pre_tokens():
    # Pre-tokens: "ab", " ab", " ab". (a,b) occurs 3 times, (' ',a) twice, and b-space never
    # (the space belongs to the next pre-token).
    tok = BPETokenizer.train("ab ab ab", vocab_size=256 + 2, special_tokens=())
    assert tok.merges == {(A, B): 256, (ord(" "), 256): 257}
    assert tok.encode("ab ab") == [256, 257]


def test_train_stops_when_no_pairs_are_left():
    tok = BPETokenizer.train("ab", vocab_size=300, special_tokens=())
    assert tok.merges == {(A, B): 256} and tok.vocab_size == 257


def test_train_ignores_special_tokens_in_the_corpus():
    tok = BPETokenizer.train("xy<|endoftext|>xy", vocab_size=256 + 1 + 1)
    assert tok.merges == {(ord("x"), ord("y")): 256}     # "|e", "<|" etc. were never counted


def test_train_rejects_too_small_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train("hello", vocab_size=200)


def naive_train(text: str, n_merges: int, pattern: str) -> dict:
    """Reference trainer: recount every pair of every pre-token occurrence at every step (slow, obvious)."""
    import regex
    pretokens = [list(s.encode("utf-8")) for s in regex.findall(pattern, text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = {}
    for k in range(n_merges):
        counts = {}
        for ids in pretokens:
            for p in zip(ids, ids[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], vocab[p[0]], vocab[p[1]]))
        new_id = 256 + k
        merges[best] = new_id
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        pretokens = [merge(ids, best, new_id) for ids in pretokens]
    return merges


def test_incremental_training_equals_naive_recounting():
    from gpt.bpe import GPT2_SPLIT_PATTERN
    text = data_path("wikitext-2", "wiki.valid.tokens").read_text(encoding="utf-8")[:30_000]
    tok = BPETokenizer.train(text, vocab_size=256 + 150, special_tokens=())
    assert tok.merges == naive_train(text, 150, GPT2_SPLIT_PATTERN)


def test_training_agrees_with_hf_tokenizers_until_the_first_tie():
    # HF's BpeTrainer uses the same byte-level regex and counting; it breaks ties between
    # equal counts by its internal ids, we by byte order. On WikiText-2 valid the first tie
    # is at merge 76, so the first 75 merges must be identical.
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    text = data_path("wikitext-2", "wiki.valid.tokens").read_text(encoding="utf-8")
    ours = BPETokenizer.train(text, vocab_size=256 + 100, special_tokens=())
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=256 + 100, special_tokens=[], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_merges = [m if isinstance(m, str) else " ".join(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    u = bytes_to_unicode()
    show = lambda i: "".join(u[b] for b in ours.vocab[i])
    our_merges = [f"{show(a)} {show(b)}" for (a, b), _ in sorted(ours.merges.items(), key=lambda kv: kv[1])]
    assert our_merges[:75] == hf_merges[:75]
    assert len(set(our_merges) & set(hf_merges)) >= 95


def test_training_is_deterministic_across_processes(tmp_path):
    # Different hash seeds change the iteration order of sets and str-keyed dicts; the merges must not change.
    import os, subprocess, sys
    from conftest import ROOT
    corpus = data_path("wikitext-2", "wiki.valid.tokens")
    code = ("import sys; from gpt.bpe import BPETokenizer; "
            "text = open(sys.argv[1], encoding='utf-8').read()[:300000]; "
            "BPETokenizer.train(text, 700).save(sys.argv[2])")
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"tok{seed}.json"
        subprocess.run([sys.executable, "-c", code, str(corpus), str(out)], cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        outs.append(json.loads(out.read_text())["merges"])
    assert outs[0] == outs[1] and len(outs[0]) == 700 - 257


def test_train_on_wikitext2_train_vocab_8192():
    text = data_path("wikitext-2", "wiki.train.tokens").read_text(encoding="utf-8")
    tok = BPETokenizer.train(text, 8192)
    assert tok.vocab_size == 8192 and tok.eot_id == 8191
    valid = data_path("wikitext-2", "wiki.valid.tokens").read_text(encoding="utf-8")
    ids = tok.encode(valid)
    assert tok.decode(ids) == valid
    # An 8K vocabulary learned on WikiText compresses its English to > 3.5 bytes per token.
    assert len(valid.encode()) / len(ids) > 3.5


# -- encoding -----------------------------------------------------------------------

def test_encode_applies_merges_in_rank_order_not_text_order():
    first_ab = BPETokenizer({(A, B): 256, (B, C): 257})
    first_bc = BPETokenizer({(B, C): 256, (A, B): 257})
    assert first_ab.encode("abc") == [256, C]
    assert first_bc.encode("abc") == [A, 256]
    # a later merge built on an earlier one: "abab" -> [ab ab] -> [abab]
    tok = BPETokenizer({(A, B): 256, (256, 256): 257})
    assert tok.encode("abab") == [257] and tok.decode([257]) == "abab"



def test_encoding_is_pretokens_then_each_pretokens_ids(gpt2_tokenizer):
    text = "Hello, world!  It's 2024 \n\n a <|endoftext|> é"
    pretokens = gpt2_tokenizer.pretokens(text)
    assert pretokens[:4] == ["Hello", ",", " world", "!"] and "".join(pretokens) == text
    assert gpt2_tokenizer.encode_pretoken(" world") == [995]
    ids = [i for p in pretokens for i in gpt2_tokenizer.encode_pretoken(p)]
    assert ids == gpt2_tokenizer.encode_ordinary(text)
    assert list(gpt2_tokenizer.pretoken_ids(pretokens)) == [gpt2_tokenizer.encode_pretoken(p) for p in pretokens]

def test_special_tokens_only_when_allowed():
    tok = BPETokenizer.train("hello world", 256 + 5)
    text = "hi<|endoftext|>there"
    plain = tok.encode(text)
    assert tok.eot_id not in plain and tok.decode(plain) == text
    for allowed in ("all", {"<|endoftext|>"}):
        ids = tok.encode(text, allowed_special=allowed)
        assert ids.count(tok.eot_id) == 1 and tok.decode(ids) == text
    with pytest.raises(ValueError, match="unknown special"):
        tok.encode(text, allowed_special={"<|pad|>"})


def test_call_returns_a_1_by_T_long_tensor(gpt2_tokenizer):
    import torch
    x = gpt2_tokenizer("Hello world")
    assert x.dtype == torch.long and x.shape == (1, 2) and x.tolist() == [[15496, 995]]


def test_decode_never_raises_on_partial_utf8(gpt2_tokenizer):
    ids = gpt2_tokenizer.encode("🙂")     # 4 bytes, 2 tokens in GPT-2: b"\xf0\x9f" + b"\x99\x82"
    assert len(ids) == 2
    assert gpt2_tokenizer.decode(ids[:1]) == "\ufffd"      # a cut character, not an exception
    # reversed: two stray continuation bytes (one U+FFFD each), then a cut lead sequence (one more)
    assert gpt2_tokenizer.decode(ids[::-1]) == "\ufffd" * 3
    with pytest.raises(ValueError, match="not in this tokenizer's vocabulary"):
        gpt2_tokenizer.decode([50257])


# -- GPT-2: identical to tiktoken --------------------------------------------------------

def test_gpt2_known_ids(gpt2_tokenizer):
    assert gpt2_tokenizer.encode("Hello world") == [15496, 995]
    assert gpt2_tokenizer.encode("<|endoftext|>", allowed_special="all") == [50256]
    assert gpt2_tokenizer.vocab_size == 50257 and gpt2_tokenizer.eot_id == 50256


def test_gpt2_matches_tiktoken_on_wikitext2_valid(gpt2_tokenizer, tiktoken_gpt2, wiki_valid_raw):
    ours = gpt2_tokenizer.encode(wiki_valid_raw)
    theirs = tiktoken_gpt2.encode_ordinary(wiki_valid_raw)
    assert len(ours) == len(theirs) == 249_887
    assert ours == theirs
    assert gpt2_tokenizer.decode(ours) == wiki_valid_raw


@pytest.mark.parametrize("text", [
    "", " ", "\n\n\n", "   leading spaces", "trailing   ", "tabs\tand\r\nCRLF",
    "I'm can't we'll they've she'd IT'S", "3.14159 1,000,000 2024-11-22",
    "emoji 👩‍👩‍👧‍👦 🇫🇷 👍🏽", "combining: e\u0301 a\u0308 \u0915\u094d\u0937", "日本語のテキスト 中文 한국어",
    "mixed\u00a0nbsp\u2003em-space", "<|endoftext|> as text", "zero\u200bwidth",
])
def test_gpt2_matches_tiktoken_on_tricky_strings(gpt2_tokenizer, tiktoken_gpt2, text):
    assert gpt2_tokenizer.encode(text) == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == text


def test_lone_surrogates_become_replacement_character_like_tiktoken(gpt2_tokenizer, tiktoken_gpt2):
    text = "bad \ud800 surrogate \udfff!"
    ids = gpt2_tokenizer.encode(text)
    assert ids == tiktoken_gpt2.encode_ordinary(text)
    assert gpt2_tokenizer.decode(ids) == "bad \ufffd surrogate \ufffd!"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_gpt2_roundtrip_and_parity_on_arbitrary_unicode(gpt2_tokenizer, tiktoken_gpt2, text):
    ids = gpt2_tokenizer.encode(text)
    assert gpt2_tokenizer.decode(ids) == text
    assert ids == tiktoken_gpt2.encode_ordinary(text)


_small = BPETokenizer.train("the quick brown fox jumps over the lazy dog, then the dog sleeps. " * 20, 320)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_trained_roundtrip_on_arbitrary_unicode(text):
    assert _small.decode(_small.encode(text)) == text


# -- saving ---------------------------------------------------------------------------

def test_save_load_roundtrip(tmp_path, gpt2_tokenizer):
    text = "Saving and loading keeps every id. 🙂"
    for tok in (_small, gpt2_tokenizer):
        path = tmp_path / "tok.json"
        tok.save(path)
        saved = json.loads(path.read_text())
        assert saved["format"] == "hw5-bpe" and saved["version"] == 1
        back = BPETokenizer.load(path)
        assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
        assert back.encode(text, "all") == tok.encode(text, "all")
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"], "no temporary files left behind"


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid tokenizer file"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="hw5-bpe"):
        BPETokenizer.load(bad)
    bad.write_text(json.dumps({**_small.to_dict(), "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        BPETokenizer.load(bad)
