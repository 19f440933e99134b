"""Extra credit made real: recovering a full next-token distribution from an API that shows only
the two most likely tokens, but lets you add a logit bias to one token per call (hw5.md, E1).

TopKAPI plays the API over a model's (or any) logits; recover_distribution is yours to finish.
Work out on paper first what one biased call tells you about two logits.
"""

from __future__ import annotations

import math

import torch


class TopKAPI:
    """Answers like a chat API's logprobs: the k (default 2) most likely tokens and their
    probabilities, optionally after adding `bias` to the logit of `bias_token`. Counts its calls."""

    def __init__(self, logits: torch.Tensor, k: int = 2, max_bias: float = 100.0):
        self._logits = logits.detach().double().flatten()
        self.k = k
        self.max_bias = max_bias      # like real APIs, which accept biases in [-100, 100]
        self.calls = 0

    @classmethod
    def from_model(cls, model, idx: torch.Tensor, **kw) -> "TopKAPI":
        """Wrap the next-token distribution of `model` after the context idx (1, T)."""
        with torch.no_grad():
            logits, _ = model.eval()(idx[:, -model.config.block_size:])
        return cls(logits[0, -1], **kw)

    def query(self, bias_token: int | None = None, bias: float = 0.0) -> list[tuple[int, float]]:
        if abs(bias) > self.max_bias:
            raise ValueError(f"bias must be within +-{self.max_bias}, got {bias}")
        self.calls += 1
        z = self._logits.clone()
        if bias_token is not None:
            z[bias_token] += bias
        probs = torch.softmax(z, dim=0)
        top = torch.topk(probs, self.k)
        return [(int(i), float(p)) for p, i in zip(top.values, top.indices)]


def recover_distribution(api: TopKAPI, vocab_size: int, bias: float = 100.0) -> torch.Tensor:
    """The full next-token distribution (vocab_size,) behind `api`, in at most vocab_size calls.

    Needs the logit range to be below `bias` (true of real models with bias 100)."""
    (top_token, _), _ = api.query()
    logit_minus_top = torch.zeros(vocab_size, dtype=torch.float64)   # z_i - z_top for every token
    for i in range(vocab_size):
        if i == top_token:
            continue
        answer = dict(api.query(bias_token=i, bias=bias))
        if i not in answer:
            raise ValueError(f"a bias of {bias} did not bring token {i} into the top two; use a larger bias")
        # TODO(logit-bias-recovery): the answer holds i and one other token, whose logit is the largest
        # of the unbiased ones (that of top_token). Both probabilities share one normaliser, so
        # p(i) / p(other) = exp(z_i + bias - z_top). Solve for z_i - z_top and store it.
        ### BEGIN SOLUTION
        other_p = next(p for tok, p in answer.items() if tok != i)
        logit_minus_top[i] = math.log(answer[i]) - math.log(other_p) - bias
        ### END SOLUTION
    return torch.softmax(logit_minus_top, dim=0)
