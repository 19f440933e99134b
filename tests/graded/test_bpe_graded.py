"""Graded: the BPE tokenizer (gpt/bpe.py)."""

import pytest

from graded.helpers import expect, load_json


@pytest.mark.points(2, todo="bpe-count-pairs")
def test_count_pairs_small_example():
    """count_pairs counts every adjacent pair"""
    from gpt.bpe import count_pairs
    got = count_pairs([1, 2, 3, 1, 2])
    expect(got == {(1, 2): 2, (2, 3): 1, (3, 1): 1}, "count_pairs([1, 2, 3, 1, 2])",
           {(1, 2): 2, (2, 3): 1, (3, 1): 1}, got)
    expect(count_pairs([7]) == {}, "count_pairs([7]) (no pairs)", {}, count_pairs([7]))


@pytest.mark.points(3, todo="bpe-count-pairs")
def test_count_pairs_adds_weight_into_existing_counts():
    """count_pairs adds `weight` into the counts it is given"""
    from gpt.bpe import count_pairs
    counts = {(1, 2): 5}
    got = count_pairs([1, 2, 1, 2], counts, weight=3)
    expect(got is counts, "count_pairs must update and return the dict it is given", "the same dict", "a new one")
    expect(counts == {(1, 2): 11, (2, 1): 3}, "count_pairs([1, 2, 1, 2], {(1, 2): 5}, weight=3)",
           {(1, 2): 11, (2, 1): 3}, counts, "each occurrence adds `weight`, not 1")
    count_pairs([1, 2], counts, weight=-11)
    expect(counts[(1, 2)] == 0, "a negative weight subtracts", 0, counts[(1, 2)])


@pytest.mark.points(2, todo="bpe-merge")
def test_merge_replaces_every_occurrence():
    """merge replaces each occurrence of the pair"""
    from gpt.bpe import merge
    for ids, pair, new, want in [([1, 2, 3, 1, 2], (1, 2), 7, [7, 3, 7]), ([3, 1, 2], (1, 2), 7, [3, 7]),
                                 ([2, 1], (1, 2), 7, [2, 1]), ([], (1, 2), 7, [])]:
        got = merge(ids, pair, new)
        expect(got == want, f"merge({ids}, {pair}, {new})", want, got)


@pytest.mark.points(3, todo="bpe-merge")
def test_merge_is_left_to_right_without_overlap_and_keeps_its_input():
    """merge scans left to right, never overlaps, and does not modify its input"""
    from gpt.bpe import merge
    for ids, want in [([5, 5, 5], [9, 5]), ([5, 5, 5, 5], [9, 9]), ([1, 5, 5, 5, 1], [1, 9, 5, 1])]:
        got = merge(ids, (5, 5), 9)
        expect(got == want, f"merge({ids}, (5, 5), 9)", want, got,
               "after replacing a pair, continue after its second element")
    ids = [1, 2, 1, 2]
    merge(ids, (1, 2), 7)
    expect(ids == [1, 2, 1, 2], "merge must return a new list", [1, 2, 1, 2], ids)


@pytest.mark.points(5, todo="bpe-merge")
def test_training_learns_the_reference_merges():
    """BPETokenizer.train learns the same merges as a reference trainer (uses count_pairs and merge)"""
    from gpt.bpe import BPETokenizer
    ref = load_json("bpe.json")
    n = len(ref["merges"])
    tok = BPETokenizer.train(ref["corpus"], vocab_size=256 + n, special_tokens=())
    got = sorted([a, b, i] for (a, b), i in tok.merges.items())
    want = sorted(ref["merges"])
    first_bad = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), None)
    expect(got == want, f"the {n} merges learned from the fixture corpus",
           f"{n} merges, e.g. merge {first_bad}: {want[first_bad] if first_bad is not None else ''}",
           f"{len(got)} merges, e.g. merge {first_bad}: {got[first_bad] if first_bad is not None and first_bad < len(got) else ''}",
           "training calls count_pairs (with weights) and merge; check both")


@pytest.mark.points(5, todo="bpe-encode-word")
def test_encode_applies_merges_in_the_order_they_were_learned():
    """encoding applies the lowest-id merge first, not the leftmost pair"""
    from gpt.bpe import BPETokenizer
    a, b, c = ord("a"), ord("b"), ord("c")
    cases = [({(a, b): 256, (b, c): 257}, "abc", [256, c]), ({(b, c): 256, (a, b): 257}, "abc", [a, 256]),
             ({(a, b): 256, (256, 256): 257}, "abab", [257]), ({(b, c): 256}, "xyz", [120, 121, 122])]
    for merges, text, want in cases:
        got = BPETokenizer(merges).encode(text)
        expect(got == want, f"encode({text!r}) with merges {merges}", want, got,
               "repeat: pick the adjacent pair with the LOWEST merge id; stop when no pair is a merge")


@pytest.mark.points(5, todo="bpe-encode-word")
def test_encode_matches_the_reference_on_text():
    """encode gives the reference ids, and decode(encode(text)) == text"""
    from gpt.bpe import BPETokenizer
    ref = load_json("bpe.json")
    tok = BPETokenizer({(a, b): i for a, b, i in ref["merges"]})
    for text, want in ref["encode"].items():
        got = tok.encode(text)
        expect(got == want, f"encode({text!r})", want, got)
        expect(tok.decode(got) == text, f"decode(encode({text!r}))", repr(text), repr(tok.decode(got)))
