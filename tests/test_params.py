"""`main.py params` and the training-memory estimate: model-state bytes equal the real tensors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))   # benchmarks/memory.py measures real steps
from gpt.model import GPT, GPTConfig
from gpt.trainer import TrainConfig, make_optimizer
from gpt.sizing import estimate_training_memory


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
    cfg = GPTConfig.preset("gpt2")     # dropout 0.1; CUDA keeps dropout masks as 1-byte bools
    s, b, h, a, L, V = 1024, 8, 768, 12, 12, 50257
    sbh = s * b * h                    # 6,291,456
    m = estimate_training_memory(cfg, b, s, "adamw", "bf16", "manual")
    # Per layer 16 bf16 values (2 bytes) + fp32 LayerNorm inputs (4 more bytes) + two masks (1 byte each),
    # plus the 5 * a*s*s*b bytes of stored attention (softmax 2 + mask 1 + dropped-out copy 2);
    # around the layers ln_f's fp32 input, lm_head's bf16 input and the embedding dropout mask.
    assert m["activations"] == L * (38 * sbh + 5 * a * s * s * b) + 7 * sbh == 8_952_741_888
    f = estimate_training_memory(cfg, b, s, "adamw", "bf16", "sdpa")
    assert f["activations"] == L * 38 * sbh + 7 * sbh == 2_912_944_128
    fp32 = estimate_training_memory(cfg, b, s, "adamw", "fp32", "manual")
    assert fp32["activations"] == L * (66 * sbh + 9 * a * s * s * b) + 9 * sbh
    assert m["logits"] == b * s * V * 4 and m["logit_gradients"] == b * s * V * 8
    n = 124_439_808
    assert m["parameters"] + m["gradients"] + m["optimizer_state"] == 16 * n   # mixed-precision Adam: 16 B/param
    assert m["total"] == 12 * n + 2 * n + m["activations"] + 12 * b * s * V   # peak: the start of backward


@pytest.mark.parametrize("precision,attn,dropout", [("fp32", "manual", 0.1), ("bf16", "manual", 0.1),
                                                    ("fp32", "sdpa", 0.0), ("bf16", "sdpa", 0.0)])
def test_estimate_matches_pytorchs_memory_profiler(precision, attn, dropout):
    """The peak of a real training step (live tensor bytes, as max_memory_allocated counts them on CUDA)
    within 5% of the estimate. (The CPU's fused attention has no dropout; with dropout it falls back to a
    path that stores the whole attention matrix, so the sdpa cases run without.)"""
    from memory import measure_training_step
    cfg = GPTConfig(vocab_size=512, block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=dropout, attn_impl=attn)
    measured = measure_training_step(cfg, 8, precision)
    est = estimate_training_memory(cfg, 8, 128, "adamw", precision, attn, device="cpu")["total"]
    assert abs(measured / est - 1) < 0.05, f"measured {measured:,} bytes, estimated {est:,}"


def test_estimate_of_an_optimizer_bound_step_matches_the_profiler():
    """One sequence of 16 tokens: the peak is the AdamW step (weights, moments, gradients, temporaries)."""
    from memory import measure_training_step
    cfg = GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=4, n_embd=256, dropout=0.0)
    measured = measure_training_step(cfg, 1, "fp32")
    est = estimate_training_memory(cfg, 1, 16, "adamw", "fp32", device="cpu")
    assert est["total"] == est["parameters"] + est["optimizer_state"] + est["gradients"] + est["parameters"]
    assert abs(measured / est["total"] - 1) < 0.05, f"measured {measured:,} bytes, estimated {est['total']:,}"


def test_params_command_output():
    out = subprocess.run([sys.executable, "main.py", "params"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for number in ("2,503,392 total", "124,439,808 total", "85,056,000 non-embedding", "174,604,259,328 total"):
        assert number in out
    gpt2 = out[out.index("gpt2:"):out.index("gpt3:")]
    row = next(line for line in gpt2.splitlines() if line.split()[:2] == ["bf16", "manual"])
    assert row.split()[6] == "8.953"             # activations, GB
    custom = subprocess.run([sys.executable, "main.py", "params", "--n-layer", "2", "--n-head", "2", "--n-embd", "8",
                             "--vocab-size", "10", "--block-size", "4"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "parameters: 1,872 total" in custom      # 80 + 32 + 2*(12*64 + 13*8) + 16
    bad = subprocess.run([sys.executable, "main.py", "params", "--n-layer", "2"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "give all of" in bad.stderr
