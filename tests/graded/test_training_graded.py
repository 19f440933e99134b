"""Graded: the training step and perplexity (gpt/trainer.py)."""

import math

import numpy as np
import pytest
import torch

from graded.helpers import expect


def tiny_model(seed=0):
    from gpt.model import GPT, GPTConfig
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))


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


@pytest.mark.points(5, todo="perplexity")
def test_perplexity_is_exp_of_total_nll_over_total_tokens():
    """perplexity = exp(total NLL / total predicted tokens) over the whole stream"""
    from gpt.trainer import evaluate
    model = tiny_model().eval()
    ids = np.random.default_rng(0).integers(0, 40, 8 * 6 + 1)
    res = evaluate(model, ids, block_size=8, batch_size=2)
    total, count = by_hand(model, ids, 8)
    expect(res.tokens == count, "number of predicted tokens", count, res.tokens)
    expect(abs(res.ppl - math.exp(total / count)) < 1e-6 * res.ppl, "perplexity", math.exp(total / count), res.ppl)


@pytest.mark.points(5, todo="perplexity")
def test_padding_is_excluded_and_batches_are_not_averaged():
    """with a padded last window, padding is not counted and batch means are not averaged"""
    from gpt.trainer import evaluate
    model = tiny_model(1).eval()
    ids = np.random.default_rng(1).integers(0, 40, 8 * 5 + 3 + 1)   # 5 full windows and one of 3 tokens
    res = evaluate(model, ids, block_size=8, batch_size=4)            # batches of 4 and of 2 windows
    total, count = by_hand(model, ids, 8)
    expect(res.tokens == count == 43, "predicted tokens (padding excluded)", count, res.tokens,
           "count only positions where mask == 1")
    expect(abs(res.nll - total) < 1e-6 * total, "total NLL in nats (padding excluded)", total, res.nll)
    expect(abs(res.ppl - math.exp(total / count)) < 1e-6 * res.ppl, "perplexity", math.exp(total / count), res.ppl,
           "sum NLL and tokens over all batches first; divide once at the end")


@pytest.mark.points(5, todo="train-step")
def test_train_step_is_one_clipped_sgd_step():
    """train_step: forward, backward, clip the gradient norm, step, reset the gradients"""
    from gpt.trainer import train_step
    model, ref = tiny_model(), tiny_model()
    x, y = torch.randint(0, 40, (4, 8)), torch.randint(0, 40, (4, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = train_step(model, opt, [(x, y)], grad_clip=0.01)
    _, ref_loss = ref(x, y)
    ref_loss.backward()
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ref.parameters()))
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.5 * p.grad * min(1.0, 0.01 / (norm.item() + 1e-6))
    expect(loss is not None and abs(float(loss) - ref_loss.item()) < 1e-5, "returned loss", ref_loss.item(), loss)
    err = max((a - b).abs().max().item() for a, b in zip(model.parameters(), ref.parameters()))
    expect(err < 1e-6, "parameters after one step with lr 0.5 and grad_clip 0.01", "equal to a reference step",
           f"max difference {err:.3g}", "clip_grad_norm_ must run after backward and before optimizer.step()")
    left = [n for n, p in model.named_parameters() if p.grad is not None]
    expect(not left, "gradients after the step", "None (reset)", f"still set on {left[:2]}...")


@pytest.mark.points(5, todo="train-step")
def test_gradient_accumulation_equals_one_big_batch():
    """two micro-batches of 4 give the same step as one batch of 8"""
    from gpt.trainer import train_step
    a, b = tiny_model(), tiny_model()
    x, y = torch.randint(0, 40, (8, 8)), torch.randint(0, 40, (8, 8))
    la = train_step(a, torch.optim.SGD(a.parameters(), lr=0.1), [(x, y)], grad_clip=0.0)
    lb = train_step(b, torch.optim.SGD(b.parameters(), lr=0.1), [(x[:4], y[:4]), (x[4:], y[4:])], grad_clip=0.0)
    expect(abs(float(la) - float(lb)) < 1e-5, "mean loss over micro-batches", float(la), float(lb),
           "divide each micro-batch loss by the number of micro-batches")
    err = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    expect(err < 1e-6, "parameters after the step", "equal", f"max difference {err:.3g}")
