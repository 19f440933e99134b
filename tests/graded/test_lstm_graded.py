"""Graded: the LSTM language model's forward pass (gpt/lstm.py)."""

import pytest
import torch

from graded.helpers import expect


def lstm_model(n_layer=1):
    from gpt.lstm import LSTMConfig, LSTMLanguageModel
    torch.manual_seed(0)
    return LSTMLanguageModel(LSTMConfig(vocab_size=30, block_size=10, n_layer=n_layer, n_embd=8,
                                        n_hidden=12, dropout=0.0)).eval()


@pytest.mark.points(5, todo="lstm-forward")
def test_lstm_logits_match_a_cell_by_cell_reference():
    """logits at every position equal head(h_t) of an LSTMCell run step by step"""
    m = lstm_model()
    idx = torch.randint(0, 30, (2, 6))
    with torch.no_grad():
        logits, _ = m(idx)
        expect(tuple(logits.shape) == (2, 6, 30), "logits shape", (2, 6, 30), tuple(logits.shape))
        cell = torch.nn.LSTMCell(8, 12)
        cell.weight_ih.copy_(m.lstm.weight_ih_l0)
        cell.weight_hh.copy_(m.lstm.weight_hh_l0)
        cell.bias_ih.copy_(m.lstm.bias_ih_l0)
        cell.bias_hh.copy_(m.lstm.bias_hh_l0)
        h = c = torch.zeros(2, 12)
        for t in range(6):
            h, c = cell(m.embedding(idx[:, t]), (h, c))
            err = (logits[:, t] - m.head(h)).abs().max().item()
            expect(err < 1e-5, f"logits at position {t}", "head(h_t) of the reference", f"max difference {err:.3g}",
                   "embedding -> dropout -> lstm -> dropout -> head")


@pytest.mark.points(5, todo="lstm-forward")
def test_lstm_continues_from_a_given_state():
    """running in two pieces, passing the state along, equals one run"""
    m = lstm_model(n_layer=2)
    idx = torch.randint(0, 30, (3, 8))
    with torch.no_grad():
        whole, _ = m._run(idx)
        first, state = m._run(idx[:, :5])
        expect(state is not None and len(state) == 2, "the returned state", "(h, c)", type(state).__name__)
        second, _ = m._run(idx[:, 5:], state)
    err = (torch.cat([first, second], 1) - whole).abs().max().item()
    expect(err < 1e-5, "logits of two pieces vs one run", "equal", f"max difference {err:.3g}",
           "pass `state` to self.lstm and return the state it gives back")
