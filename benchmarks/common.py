"""Helpers shared by the benchmarks: where the data is, timers, and one training step of our GPT
and of transformers' GPT2LMHeadModel built the same way."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA_DIR = Path(os.environ.get("HW5_DATA_DIR", ROOT.parent / "shared" / "data"))


def data_file(*parts: str) -> Path:
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        sys.exit(f"error: {path} not found; set HW5_DATA_DIR to the folder holding wikitext-2/ and gpt2/")
    return path


def best_of(fn, repeats: int = 3) -> float:
    """Smallest wall-clock time of `repeats` calls, in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best



def ours_step(cfg, device, precision: str = "fp32", compile_: bool = False, optimizer: str = "adamw"):
    """step(x) for our GPT: one trainer train_step (clip 1.0, AdamW, fused on CUDA) on x (B, T + 1)."""
    import torch

    from gpt.model import GPT
    from gpt.trainer import TrainConfig, autocast_context, make_optimizer, train_step
    model = GPT(cfg).to(device).train()
    opt = make_optimizer(model, TrainConfig(optimizer=optimizer), fused=device.type == "cuda")
    run = torch.compile(model) if compile_ else model
    autocast = autocast_context(device, precision)
    return lambda x: train_step(run, opt, [(x[:, :-1], x[:, 1:])], 1.0, autocast)


def transformers_step(cfg, device, attn: str, precision: str = "fp32", compile_: bool = False):
    """step(x) for transformers' GPT2LMHeadModel with cfg's sizes and attn_implementation `attn`,
    the same optimizer and clipping as ours_step."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt.trainer import TrainConfig, autocast_context, make_optimizer
    hc = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                    n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                    bos_token_id=0, eos_token_id=0, attn_implementation=attn)
    model = GPT2LMHeadModel(hc).to(device).train()
    assert model.config._attn_implementation == attn
    opt = make_optimizer(model, TrainConfig(), fused=device.type == "cuda")
    run = torch.compile(model) if compile_ else model
    autocast = autocast_context(device, precision)

    def step(x):
        with autocast:
            loss = run(input_ids=x[:, :-1], labels=x[:, :-1]).loss   # shifts labels inside: same T-1 targets
        return backward_and_step(model, opt, loss)
    return step


def backward_and_step(model, opt, loss):
    """The end of a peer's training step, as nanoGPT's train.py has it: backward, clip 1.0, step, zero_grad."""
    import torch
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def seconds_per_step(steps: dict, x, n_steps: int, rounds: int, device) -> dict:
    """Seconds per step of each (already warmed-up) step function: `rounds` rounds in which each runs
    n_steps steps in turn, so that a slow spell of the machine or its clocks hits all alike; best round."""
    from gpt.utils import synchronize

    best = {name: float("inf") for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            def run():
                for _ in range(n_steps):
                    step(x)
                synchronize(device)
            synchronize(device)
            best[name] = min(best[name], best_of(run, repeats=1) / n_steps)
    return best
