"""Graded: nucleus (top-p) sampling (gpt/sampling.py)."""

import pytest
import torch

from graded.helpers import expect


def kept(logits, p):
    from gpt.sampling import filter_top_p
    out = filter_top_p(logits, p)
    expect(out.shape == logits.shape, "filter_top_p output shape", tuple(logits.shape), tuple(out.shape))
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in out]


@pytest.mark.points(5, todo="sample-top-p")
def test_top_p_keeps_the_smallest_nucleus():
    """top-p keeps the most likely tokens until their mass reaches p"""
    logits = torch.tensor([[0.05, 0.5, 0.3, 0.15]]).log()
    for p, want in [(0.5, {1}), (0.51, {1, 2}), (0.8, {1, 2}), (0.81, {1, 2, 3}), (0.96, {0, 1, 2, 3}), (1e-6, {1})]:
        got = kept(logits, p)[0]
        expect(got == want, f"tokens kept by top_p={p} for probabilities [0.05, 0.5, 0.3, 0.15]", want, got,
               "keep a token if the mass of the tokens ranked above it is < p")


@pytest.mark.points(5, todo="sample-top-p")
def test_top_p_on_random_batches_matches_a_reference():
    """top-p on random batches keeps exactly the reference set, in the original token order"""
    torch.manual_seed(0)
    logits = torch.randn(6, 40) * 3
    for p in (0.1, 0.5, 0.9):
        got = kept(logits, p)
        probs = torch.softmax(logits, -1)
        for r in range(6):
            order = sorted(range(40), key=lambda i: -probs[r, i].item())
            want, mass = set(), 0.0
            for i in order:
                if mass >= p:
                    break
                want.add(i)
                mass += probs[r, i].item()
            expect(got[r] == want, f"row {r}, top_p={p}: kept token ids", sorted(want), sorted(got[r]),
                   "map the decision made in sorted order back to the original order (scatter)")
    kept_values = __import__("gpt.sampling", fromlist=["x"]).filter_top_p(logits, 0.5)
    finite = torch.isfinite(kept_values)
    expect(torch.equal(kept_values[finite], logits[finite]), "kept logits are unchanged", "equal", "changed")
