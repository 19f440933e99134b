"""The LSTM baseline: the same interface as GPT, checked against a step-by-step nn.LSTMCell reference."""

from __future__ import annotations

import pytest
import torch

from gpt.lstm import LSTMConfig, LSTMLanguageModel, count_lstm_parameters


def model(**kw):
    torch.manual_seed(0)
    return LSTMLanguageModel(LSTMConfig(**{**dict(vocab_size=60, block_size=12, n_layer=2, n_embd=16,
                                                  n_hidden=24, dropout=0.0), **kw}))


@pytest.mark.parametrize("n_layer,tie", [(1, False), (2, False), (4, True)])
def test_parameter_count(n_layer, tie):
    cfg = LSTMConfig(vocab_size=100, block_size=8, n_layer=n_layer, n_embd=32, n_hidden=32 if tie else 48, tie_weights=tie)
    m = LSTMLanguageModel(cfg)
    assert count_lstm_parameters(cfg) == sum(p.numel() for p in m.parameters())


def test_forward_matches_a_cell_by_cell_reference():
    m = model(n_layer=1).eval()
    idx = torch.randint(0, 60, (3, 7))
    logits, _ = m(idx)
    cell = torch.nn.LSTMCell(16, 24)
    cell.weight_ih.data, cell.weight_hh.data = m.lstm.weight_ih_l0.data, m.lstm.weight_hh_l0.data
    cell.bias_ih.data, cell.bias_hh.data = m.lstm.bias_ih_l0.data, m.lstm.bias_hh_l0.data
    h = c = torch.zeros(3, 24)
    for t in range(7):
        h, c = cell(m.embedding(idx[:, t]), (h, c))
        assert torch.allclose(logits[:, t], m.head(h), atol=1e-5)


def test_loss_and_mask_like_gpt():
    m = model().eval()
    x, y = torch.randint(0, 60, (2, 6)), torch.randint(0, 60, (2, 6))
    logits, loss = m(x, y)
    nll = -torch.log_softmax(logits, -1).gather(-1, y[..., None]).squeeze(-1)
    assert torch.allclose(loss, nll.mean(), atol=1e-6)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    assert torch.allclose(m(x, y, mask)[1], nll[mask.bool()].mean(), atol=1e-6)


@pytest.mark.parametrize("prompt_len,new", [(1, 8), (4, 20)])   # (4, 20) runs past block_size=12
def test_stateful_generation_equals_recomputation(prompt_len, new):
    m = model()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(5)       # so that the state matters for the next token
    prompt = torch.randint(0, 60, (2, prompt_len))
    assert torch.equal(m.generate(prompt, new), m.generate(prompt, new, use_cache=False))


def test_trains_with_the_trainer(tmp_path):
    import numpy as np
    from gpt.windows import WindowBatches
    from gpt.checkpoint import load_checkpoint, model_from_checkpoint
    from gpt.trainer import TrainConfig, Trainer
    ids = (np.arange(3000) % 7).astype(np.uint16)      # a periodic sequence: easy to learn
    cfg = TrainConfig(device="cpu", max_iters=150, batch_size=8, eval_interval=150, learning_rate=1e-2,
                      warmup_iters=0, schedule="constant", out_dir=str(tmp_path), progress=False)
    summary = Trainer(model(n_layer=1), cfg, WindowBatches(ids, 12, 8), ids[:400]).train()
    assert summary["best_valid_ppl"] < 1.5
    restored, _ = model_from_checkpoint(load_checkpoint(tmp_path / "best.pt"))
    assert isinstance(restored, LSTMLanguageModel)


def test_bad_config():
    with pytest.raises(ValueError, match="tie_weights"):
        LSTMConfig(vocab_size=10, block_size=4, n_embd=8, n_hidden=16, tie_weights=True)
    with pytest.raises(ValueError, match="n_layer"):
        LSTMConfig(vocab_size=10, block_size=4, n_layer=0)
