"""`main.py params` and the training-memory estimate: model-state bytes equal the real tensors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from gpt.model import GPT, GPTConfig
from gpt.trainer import TrainConfig, make_optimizer
from gpt.utils import estimate_training_memory


@pytest.mark.parametrize("optimizer,state_keys", [("adamw", ("exp_avg", "exp_avg_sq")), ("adam", ("exp_avg", "exp_avg_sq")),
                                                  ("momentum", ("momentum_buffer",)), ("sgd", ())])
def test_model_state_bytes_equal_the_real_tensors_after_one_step(optimizer, state_keys):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg)
    opt = make_optimizer(model, TrainConfig(optimizer=optimizer))
    x = torch.randint(0, 300, (2, 16))
    _, loss = model(x, x)
    loss.backward()
    opt.step()
    params = list(model.parameters())
    est = estimate_training_memory(cfg, 2, 16, optimizer, "fp32")
    assert est["parameters"] == sum(p.numel() * p.element_size() for p in params)
    assert est["gradients"] == sum(p.grad.numel() * p.grad.element_size() for p in params)
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k in state_keys)
    assert est["optimizer_state"] == state
    assert est["weight_copies"] == 0


def test_activation_formula_by_hand():
    cfg = GPTConfig.preset("gpt2")
    s, b, h, a, L, V = 1024, 8, 768, 12, 12, 50257
    m = estimate_training_memory(cfg, b, s, "adamw", "bf16", "manual")
    assert m["activations"] == L * s * b * h * (34 + 5 * a * s // h) + s * b * h * 2 == 8_619_294_720
    f = estimate_training_memory(cfg, b, s, "adamw", "bf16", "sdpa")
    assert f["activations"] == L * s * b * h * 34 + s * b * h * 2
    assert m["logits"] == b * s * V * (2 + 4)
    n = 124_439_808
    assert m["parameters"] + m["gradients"] + m["optimizer_state"] == 16 * n   # mixed-precision Adam: 16 B/param


def test_params_command_output():
    out = subprocess.run([sys.executable, "main.py", "params"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for number in ("2,503,392 total", "124,439,808 total", "85,056,000 non-embedding", "174,604,259,328 total"):
        assert number in out
    gpt2 = out[out.index("gpt2:"):out.index("gpt3:")]
    row = next(line for line in gpt2.splitlines() if line.split()[:2] == ["bf16", "manual"])
    assert row.split()[6] == "8.619"             # activations, GB
    custom = subprocess.run([sys.executable, "main.py", "params", "--n-layer", "2", "--n-head", "2", "--n-embd", "8",
                             "--vocab-size", "10", "--block-size", "4"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "parameters: 1,872 total" in custom      # 80 + 32 + 2*(12*64 + 13*8) + 16
    bad = subprocess.run([sys.executable, "main.py", "params", "--n-layer", "2"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "give all of" in bad.stderr
