"""Graded: the BPE tokenizer (gpt/bpe.py).

Each `probe_*` function runs in a separate process on your code (see sandbox.py); the test compares
what it returns with the expected values here."""

import pytest

from graded.helpers import expect, load_json


def probe_count_pairs(ids, counts=None, weight=1):
    from gpt.bpe import count_pairs
    return count_pairs(ids, counts, weight)


def probe_count_pairs_in_place(ids, counts, weight, take_back):
    from gpt.bpe import count_pairs
    got = count_pairs(ids, counts, weight)
    after = dict(counts)
    count_pairs(take_back, counts, weight=-weight * 2)
    return {"same": got is counts, "after": after, "taken_back": dict(counts)}


def probe_merge(cases):
    from gpt.bpe import merge
    return [merge(ids, tuple(pair), new_id) for ids, pair, new_id in cases]


def probe_merge_keeps_input(ids, pair, new_id):
    from gpt.bpe import merge
    merge(ids, tuple(pair), new_id)
    return ids


def probe_train(corpus, vocab_size):
    from gpt.bpe import BPETokenizer
    tok = BPETokenizer.train(corpus, vocab_size=vocab_size, special_tokens=())
    return sorted([a, b, i] for (a, b), i in tok.merges.items())


def probe_encode(merges, texts):
    from gpt.bpe import BPETokenizer
    tok = BPETokenizer({(a, b): i for a, b, i in merges})
    return [(tok.encode(t), tok.decode(tok.encode(t))) for t in texts]


@pytest.mark.points(2, todo="bpe-count-pairs")
def test_count_pairs_small_example(student):
    """count_pairs counts every adjacent pair"""
    got = student.call(probe_count_pairs, [1, 2, 3, 1, 2])
    expect(got == {(1, 2): 2, (2, 3): 1, (3, 1): 1}, "count_pairs([1, 2, 3, 1, 2])",
           {(1, 2): 2, (2, 3): 1, (3, 1): 1}, got)
    got = student.call(probe_count_pairs, [7])
    expect(got == {}, "count_pairs([7]) (no pairs)", {}, got)


@pytest.mark.points(3, todo="bpe-count-pairs")
def test_count_pairs_adds_weight_into_existing_counts(student):
    """count_pairs adds `weight` into the counts it is given"""
    got = student.call(probe_count_pairs_in_place, [1, 2, 1, 2], {(1, 2): 5}, 3, [1, 2])
    expect(got["same"] is True, "count_pairs must update and return the dict it is given", "the same dict", "a new one")
    expect(got["after"] == {(1, 2): 11, (2, 1): 3}, "count_pairs([1, 2, 1, 2], {(1, 2): 5}, weight=3)",
           {(1, 2): 11, (2, 1): 3}, got["after"], "each occurrence adds `weight`, not 1")
    expect(got["taken_back"].get((1, 2)) == 5, "then count_pairs([1, 2], counts, weight=-6)",
           "counts[(1, 2)] == 5 (a negative weight subtracts)", got["taken_back"].get((1, 2)))


@pytest.mark.points(2, todo="bpe-merge")
def test_merge_replaces_every_occurrence(student):
    """merge replaces each occurrence of the pair"""
    cases = [([1, 2, 3, 1, 2], (1, 2), 7, [7, 3, 7]), ([3, 1, 2], (1, 2), 7, [3, 7]),
             ([2, 1], (1, 2), 7, [2, 1]), ([], (1, 2), 7, [])]
    got = student.call(probe_merge, [c[:3] for c in cases])
    for (ids, pair, new, want), g in zip(cases, got):
        expect(g == want, f"merge({ids}, {pair}, {new})", want, g)


@pytest.mark.points(3, todo="bpe-merge")
def test_merge_is_left_to_right_without_overlap_and_keeps_its_input(student):
    """merge scans left to right, never overlaps, and does not modify its input"""
    cases = [([5, 5, 5], [9, 5]), ([5, 5, 5, 5], [9, 9]), ([1, 5, 5, 5, 1], [1, 9, 5, 1])]
    got = student.call(probe_merge, [(ids, (5, 5), 9) for ids, _ in cases])
    for (ids, want), g in zip(cases, got):
        expect(g == want, f"merge({ids}, (5, 5), 9)", want, g, "after replacing a pair, continue after its second element")
    ids = student.call(probe_merge_keeps_input, [1, 2, 1, 2], (1, 2), 7)
    expect(ids == [1, 2, 1, 2], "merge must return a new list", [1, 2, 1, 2], ids)


@pytest.mark.points(5, todo="bpe-merge")
def test_training_learns_the_reference_merges(student):
    """BPETokenizer.train learns the same merges as a reference trainer (uses count_pairs and merge)"""
    ref = load_json("bpe.json")
    n = len(ref["merges"])
    got = student.call(probe_train, ref["corpus"], 256 + n)
    want = sorted(ref["merges"])
    first_bad = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
    expect(got == want, f"the {n} merges learned from the fixture corpus",
           f"{n} merges, e.g. merge {first_bad}: {want[first_bad] if first_bad < len(want) else ''}",
           f"{len(got)} merges, e.g. merge {first_bad}: {got[first_bad] if first_bad < len(got) else ''}",
           "training calls count_pairs (with weights) and merge; check both")


@pytest.mark.points(5, todo="bpe-encode-pretoken")
def test_encode_applies_merges_in_the_order_they_were_learned(student):
    """encoding applies the lowest-id merge first, not the leftmost pair"""
    a, b, c = ord("a"), ord("b"), ord("c")
    cases = [([[a, b, 256], [b, c, 257]], "abc", [256, c]), ([[b, c, 256], [a, b, 257]], "abc", [a, 256]),
             ([[a, b, 256], [256, 256, 257]], "abab", [257]), ([[b, c, 256]], "xyz", [120, 121, 122])]
    for merges, text, want in cases:
        (got, _), = student.call(probe_encode, merges, [text])
        expect(got == want, f"encode({text!r}) with merges {merges}", want, got,
               "repeat: pick the adjacent pair with the LOWEST merge id; stop when no pair is a merge")


@pytest.mark.points(5, todo="bpe-encode-pretoken")
def test_encode_matches_the_reference_on_text(student):
    """encode gives the reference ids, and decode(encode(text)) == text"""
    ref = load_json("bpe.json")
    texts = list(ref["encode"])
    for text, (got, back) in zip(texts, student.call(probe_encode, ref["merges"], texts)):
        expect(got == ref["encode"][text], f"encode({text!r})", ref["encode"][text], got)
        expect(back == text, f"decode(encode({text!r}))", repr(text), repr(back))
