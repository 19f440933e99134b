"""Graded, extra credit: recovering a distribution from a top-2 API (gpt/extras.py)."""

import pytest
import torch

from graded.helpers import expect


def probe_recover(logits):
    from gpt.extras import TopKAPI, recover_distribution
    api = TopKAPI(logits)
    return {"probs": recover_distribution(api, logits.numel()), "calls": api.calls}


@pytest.mark.points(5, todo="logit-bias-recovery", extra_credit=True)
def test_recover_distribution_from_top2_api(student):
    """recover_distribution gives the true softmax within 1e-6 in at most |V|+1 calls"""
    for logits in (torch.randn(60, generator=torch.Generator().manual_seed(0)) * 4,
                   torch.tensor([5.0, 5.0, 1.0, -2.0, 5.0, 0.0])):
        got = student.call(probe_recover, logits)
        want = torch.softmax(logits.double(), 0)
        err = (got["probs"] - want).abs().max().item()
        expect(err < 1e-6, "max |recovered - true probability|", "< 1e-6", f"{err:.3g}",
               "z_i - z_top = log(p(i) / p(other)) - bias")
        expect(got["calls"] <= logits.numel() + 1, "API calls", f"<= {logits.numel() + 1}", got["calls"])
