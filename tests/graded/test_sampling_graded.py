"""Graded: nucleus (top-p) sampling (gpt/sampling.py). The probe runs your filter_top_p in a separate
process; the kept sets are checked here against a token-by-token reference."""

import pytest
import torch

from graded.helpers import expect


def probe_top_p(logits, ps):
    from gpt.sampling import filter_top_p
    return [filter_top_p(logits.clone(), p) for p in ps]


def kept(out, logits):
    expect(isinstance(out, torch.Tensor) and out.shape == logits.shape, "filter_top_p output shape",
           tuple(logits.shape), tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__)
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in out]


def nucleus(probs_row, p):
    """The reference: walk the tokens from most to least likely; keep one while the mass before it is < p."""
    order = sorted(range(len(probs_row)), key=lambda i: -probs_row[i].item())
    want, mass = set(), 0.0
    for i in order:
        if mass >= p:
            break
        want.add(i)
        mass += probs_row[i].item()
    return want


@pytest.mark.points(5, todo="sample-top-p")
def test_top_p_keeps_the_smallest_nucleus(student):
    """top-p keeps the most likely tokens until their mass reaches p"""
    logits = torch.tensor([[0.05, 0.5, 0.3, 0.15]]).log()
    cases = [(0.5, {1}), (0.51, {1, 2}), (0.8, {1, 2}), (0.81, {1, 2, 3}), (0.96, {0, 1, 2, 3}), (1e-6, {1})]
    outs = student.call(probe_top_p, logits, [p for p, _ in cases])
    for (p, want), out in zip(cases, outs):
        got = kept(out, logits)[0]
        hint = ("the most likely token is always kept: a token is removed only when the mass ranked above it "
                "is already >= p" if not got else "keep a token if the mass of the tokens ranked above it is < p")
        expect(got == want, f"tokens kept by top_p={p} for probabilities [0.05, 0.5, 0.3, 0.15]", want, got, hint)


@pytest.mark.points(5, todo="sample-top-p")
def test_top_p_on_random_batches_matches_a_reference(student):
    """top-p on random batches keeps exactly the reference set, in the original token order"""
    logits = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * 3
    ps = (0.1, 0.5, 0.9)
    outs = student.call(probe_top_p, logits, ps)
    probs = torch.softmax(logits, -1)
    for p, out in zip(ps, outs):
        got = kept(out, logits)
        for r in range(6):
            want = nucleus(probs[r], p)
            same_size = len(got[r]) == len(want)
            hint = ("the right number of tokens but not the right ones: map the decision made in sorted order "
                    "back to the original order (scatter with the sort indices)" if same_size else
                    "count the mass of the tokens ranked above each token (cumsum minus its own probability)")
            expect(got[r] == want, f"row {r}, top_p={p}: kept token ids", sorted(want), sorted(got[r]), hint)
        finite = torch.isfinite(out)
        expect(torch.equal(out[finite], logits[finite]), f"kept logits (top_p={p}) are unchanged", "equal", "changed")
