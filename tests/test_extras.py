"""Recovering a distribution from a top-2 API with a logit bias."""

from __future__ import annotations

import pytest
import torch

from gpt.extras import TopKAPI, recover_distribution


@pytest.mark.parametrize("name,logits", [
    ("random", torch.randn(200, generator=torch.Generator().manual_seed(0)) * 3),
    ("ties", torch.tensor([2.0, 2.0, 2.0, -1.0, 0.5, 0.5, -3.0, 2.0])),
    ("peaked", torch.cat([torch.tensor([30.0]), torch.randn(99, generator=torch.Generator().manual_seed(1))])),
    ("uniform", torch.zeros(50)),
])
def test_recovers_the_true_softmax_in_at_most_V_plus_1_calls(name, logits):
    api = TopKAPI(logits)
    got = recover_distribution(api, logits.numel())
    want = torch.softmax(logits.double(), 0)
    assert (got - want).abs().max().item() < 1e-6
    assert api.calls <= logits.numel() + 1


def test_the_api_shows_only_two_tokens_and_limits_the_bias():
    api = TopKAPI(torch.tensor([0.0, 3.0, 1.0, 2.0]))
    answer = api.query()
    assert [t for t, _ in answer] == [1, 3] and len(answer) == 2
    assert api.query(bias_token=0, bias=10.0)[0][0] == 0
    with pytest.raises(ValueError, match="bias"):
        api.query(bias_token=0, bias=1000.0)


def test_works_on_a_real_model():
    from gpt.model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16))
    idx = torch.randint(0, 64, (1, 5))
    api = TopKAPI.from_model(model, idx)
    want = torch.softmax(model(idx)[0][0, -1].double(), 0)
    assert (recover_distribution(api, 64) - want).abs().max().item() < 1e-6


def test_too_small_a_bias_is_reported():
    api = TopKAPI(torch.tensor([10.0, 9.0, -50.0]))
    with pytest.raises(ValueError, match="larger bias"):
        recover_distribution(api, 3, bias=5.0)
