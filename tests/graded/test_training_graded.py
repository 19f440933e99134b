"""Graded: the training step and perplexity (gpt/trainer.py).

They run on reference.TinyLM, a small model that needs none of your model code, so these TODOs can be
done in any order. Each `probe_*` runs in a separate process on your code; the reference (autograd,
a hand-written SGD step, token-by-token NLL) is computed here on the same model."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graded.helpers import expect
from graded.reference import TinyLM


def probe_evaluate(ids, block_size, batch_size, seed):
    from gpt.trainer import evaluate
    res = evaluate(TinyLM(seed=seed).eval(), ids.numpy(), block_size=block_size, batch_size=batch_size)
    return {"nll": res.nll, "tokens": res.tokens, "loss": res.loss, "ppl": res.ppl}


def probe_train_step(micro_batches, grad_clip, lr, seed):
    from gpt.trainer import train_step
    model = TinyLM(seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = train_step(model, opt, micro_batches, grad_clip=grad_clip)
    return {"loss": None if loss is None else float(loss), "params": dict(model.named_parameters()),
            "grads_left": [n for n, p in model.named_parameters() if p.grad is not None]}


def by_hand(model, ids, block):
    """Total NLL and count, one window and one token at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - 1, block):
            x = torch.tensor(ids[s:min(s + block, len(ids) - 1)], dtype=torch.long)[None]
            logp = torch.log_softmax(model(x)[0][0].double(), -1)
            for j in range(x.size(1)):
                total -= logp[j, int(ids[s + j + 1])].item()
                count += 1
    return total, count


def reference_step(micro_batches, grad_clip, lr, seed):
    """The mean loss and the parameters after one SGD step, clipped to grad_clip (0: no clipping)."""
    model = TinyLM(seed=seed)
    n = len(micro_batches)
    losses = []
    for x, y in micro_batches:
        loss = F.cross_entropy(model(x)[0].reshape(-1, 40), y.reshape(-1)) / n
        loss.backward()
        losses.append(loss.item())
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())).item()
    scale = min(1.0, grad_clip / (norm + 1e-6)) if grad_clip > 0 else 1.0
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad * scale
    return sum(losses), dict(model.named_parameters())


def batches(seed, *sizes):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 40, (b, 8), generator=g), torch.randint(0, 40, (b, 8), generator=g)) for b in sizes]


@pytest.mark.points(5, todo="perplexity")
def test_perplexity_is_exp_of_total_nll_over_total_tokens(student):
    """perplexity = exp(total NLL / total predicted tokens) over the whole stream"""
    ids = np.random.default_rng(0).integers(0, 40, 8 * 6 + 1)
    res = student.call(probe_evaluate, ids, 8, 2, 0, helpers=[TinyLM])
    total, count = by_hand(TinyLM(seed=0).eval(), ids, 8)
    expect(res["tokens"] == count, "number of predicted tokens", count, res["tokens"])
    expect(abs(res["ppl"] - math.exp(total / count)) < 1e-6 * math.exp(total / count), "perplexity",
           math.exp(total / count), res["ppl"])


@pytest.mark.points(5, todo="perplexity")
def test_padding_is_excluded_and_batches_are_not_averaged(student):
    """with a padded last window, padding is not counted and batch means are not averaged"""
    ids = np.random.default_rng(1).integers(0, 40, 8 * 5 + 3 + 1)   # 5 full windows and one of 3 tokens
    res = student.call(probe_evaluate, ids, 8, 4, 1, helpers=[TinyLM])               # batches of 4 and of 2 windows
    total, count = by_hand(TinyLM(seed=1).eval(), ids, 8)
    expect(res["tokens"] == count == 43, "predicted tokens (padding excluded)", count, res["tokens"],
           "count only positions where mask == 1")
    expect(abs(res["nll"] - total) < 1e-6 * total, "total NLL in nats (padding excluded)", total, res["nll"])
    expect(abs(res["ppl"] - math.exp(total / count)) < 1e-6 * math.exp(total / count), "perplexity",
           math.exp(total / count), res["ppl"], "sum NLL and tokens over all batches first; divide once at the end")


@pytest.mark.points(5, todo="train-step")
def test_train_step_is_one_clipped_sgd_step(student):
    """train_step: forward, backward, clip the gradient norm, step, reset the gradients"""
    micro = batches(0, 4)
    got = student.call(probe_train_step, micro, 0.01, 0.5, 0, helpers=[TinyLM])
    want_loss, want = reference_step(micro, 0.01, 0.5, 0)
    expect(got["loss"] is not None and abs(got["loss"] - want_loss) < 1e-5, "returned loss", want_loss, got["loss"])
    err = max((got["params"][k] - v).abs().max().item() for k, v in want.items())
    expect(err < 1e-6, "parameters after one step with lr 0.5 and grad_clip 0.01", "equal to a reference step",
           f"max difference {err:.3g}", "clip_grad_norm_ must run after backward and before optimizer.step()")
    expect(not got["grads_left"], "gradients after the step", "None (reset)", f"still set on {got['grads_left'][:2]}")


@pytest.mark.points(5, todo="train-step")
def test_gradient_accumulation_and_clipping_off(student):
    """two micro-batches of 4 give the step of one batch of 8; grad_clip=0 means no clipping"""
    x, y = batches(1, 8)[0]
    got = student.call(probe_train_step, [(x[:4], y[:4]), (x[4:], y[4:])], 0.0, 0.1, 0, helpers=[TinyLM])
    want_loss, want = reference_step([(x, y)], 0.0, 0.1, 0)
    expect(got["loss"] is not None and abs(got["loss"] - want_loss) < 1e-5, "mean loss over micro-batches",
           want_loss, got["loss"], "divide each micro-batch loss by the number of micro-batches")
    err = max((got["params"][k] - v).abs().max().item() for k, v in want.items())
    expect(err < 1e-6, "parameters after the step (grad_clip=0)", "equal to one unclipped step on the batch of 8",
           f"max difference {err:.3g}",
           "grad_clip=0 turns clipping off (clip only when grad_clip > 0); the accumulated gradient is the mean")
