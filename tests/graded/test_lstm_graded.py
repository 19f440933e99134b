"""Graded: the LSTM language model's forward pass (gpt/lstm.py). The probe runs your model in a
separate process; the reference (an LSTMCell stepped position by position) is computed here."""

import pytest
import torch

from graded.helpers import expect

CFG = dict(vocab_size=30, block_size=10, n_embd=8, n_hidden=12, dropout=0.0)


def probe_lstm(cfg, state_dict, idx, split):
    from gpt.lstm import LSTMConfig, LSTMLanguageModel
    m = LSTMLanguageModel(LSTMConfig(**cfg)).eval()
    m.load_state_dict(state_dict)
    with torch.no_grad():
        whole, _ = m(idx)
        first, state = m.run(idx[:, :split])
        second = m.run(idx[:, split:], state)[0] if state is not None else None
    return {"logits": whole, "first": first, "second": second,
            "state_is_pair": isinstance(state, tuple) and len(state) == 2}


def lstm_weights(n_layer: int, seed: int) -> dict:
    """Random weights for LSTMLanguageModel(CFG with n_layer), made here so the grader knows them."""
    g = torch.Generator().manual_seed(seed)
    V, E, H = CFG["vocab_size"], CFG["n_embd"], CFG["n_hidden"]
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.5
    sd = {"embedding.weight": r(V, E), "head.weight": r(V, H), "head.bias": r(V)}
    for layer in range(n_layer):
        sd.update({f"lstm.weight_ih_l{layer}": r(4 * H, E if layer == 0 else H), f"lstm.weight_hh_l{layer}": r(4 * H, H),
                   f"lstm.bias_ih_l{layer}": r(4 * H), f"lstm.bias_hh_l{layer}": r(4 * H)})
    return sd


def cell_by_cell(sd, n_layer, idx):
    """Logits (B, T, V) of the LSTM with state dict sd, one LSTMCell step at a time."""
    B, T = idx.shape
    cells = []
    for layer in range(n_layer):
        w = sd[f"lstm.weight_ih_l{layer}"]
        cell = torch.nn.LSTMCell(w.size(1), w.size(0) // 4)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(sd[f"lstm.{name}_l{layer}"])
        cells.append(cell)
    H = cells[0].hidden_size
    state = [(torch.zeros(B, H), torch.zeros(B, H)) for _ in cells]
    out = []
    with torch.no_grad():
        for t in range(T):
            h = sd["embedding.weight"][idx[:, t]]
            for layer, cell in enumerate(cells):
                state[layer] = cell(h, state[layer])
                h = state[layer][0]
            out.append(h @ sd["head.weight"].T + sd["head.bias"])
    return torch.stack(out, dim=1)


@pytest.mark.points(5, todo="lstm-forward")
def test_lstm_logits_match_a_cell_by_cell_reference(student):
    """logits at every position equal head(h_t) of an LSTMCell run step by step"""
    idx = torch.randint(0, 30, (2, 6), generator=torch.Generator().manual_seed(1))
    sd = lstm_weights(1, seed=0)
    got = student.call(probe_lstm, {**CFG, "n_layer": 1}, sd, idx, 3)
    logits = got["logits"]
    expect(tuple(logits.shape) == (2, 6, 30), "logits shape", (2, 6, 30), tuple(logits.shape))
    want = cell_by_cell(sd, 1, idx)
    for t in range(6):
        err = (logits[:, t] - want[:, t]).abs().max().item()
        expect(err < 1e-5, f"logits at position {t}", "head(h_t) of the reference", f"max difference {err:.3g}",
               "embedding -> dropout -> lstm -> dropout -> head")


@pytest.mark.points(5, todo="lstm-forward")
def test_lstm_continues_from_a_given_state(student):
    """running in two pieces, passing the state along, equals one run"""
    idx = torch.randint(0, 30, (3, 8), generator=torch.Generator().manual_seed(2))
    sd = lstm_weights(2, seed=1)
    got = student.call(probe_lstm, {**CFG, "n_layer": 2}, sd, idx, 5)
    expect(got["state_is_pair"], "the returned state", "(h, c)", "something else")
    want = cell_by_cell(sd, 2, idx)
    err = (torch.cat([got["first"], got["second"]], 1) - want).abs().max().item()
    expect(err < 1e-5, "logits of two pieces vs the reference", "equal", f"max difference {err:.3g}",
           "pass `state` to self.lstm and return the state it gives back")
