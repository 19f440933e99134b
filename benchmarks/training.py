"""Training throughput: our GPT against transformers' GPT2LMHeadModel, same configuration and batch,
forward + backward + AdamW step, in the same process.

    python benchmarks/training.py [--steps 3] [--rounds 3] [--device cpu]

For gpt-nano, gpt-micro and gpt-mini (vocab 8192, dropout 0.1), ours with attn_impl "manual" and
"sdpa", transformers with attn_implementation "eager" and "sdpa". Tokens per second is batch x
block / seconds per step: after one warm-up step each, the four run in turn for --rounds rounds of
--steps steps, and each keeps its best round (so a slow spell of a shared machine hits all alike).
"""

from __future__ import annotations

import argparse

import torch
from common import best_of

from gpt.model import GPT, GPTConfig
from gpt.trainer import TrainConfig, make_optimizer, train_step
from gpt.utils import synchronize

CASES = [("gpt-nano", 128, 32), ("gpt-micro", 128, 32), ("gpt-mini", 256, 16)]   # preset, block, batch


def ours(cfg, device):
    model = GPT(cfg).to(device).train()
    opt = make_optimizer(model, TrainConfig(), fused=device.type == "cuda")
    return lambda x: train_step(model, opt, [(x[:, :-1], x[:, 1:])], 1.0)


def transformers_model(cfg, device, attn):
    from transformers import GPT2Config, GPT2LMHeadModel
    hc = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                    n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                    bos_token_id=0, eos_token_id=0, attn_implementation=attn)
    model = GPT2LMHeadModel(hc).to(device).train()
    assert model.config._attn_implementation == attn
    opt = make_optimizer(model, TrainConfig(), fused=device.type == "cuda")

    def step(x):
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1]).loss   # shifts labels inside: same T-1 targets
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def tokens_per_second(steps: dict, x, n_steps: int, rounds: int, device) -> dict:
    """tokens/s of each step function: one warm-up step each, then `rounds` rounds in which every
    function runs n_steps steps in turn (so a slow spell of the machine hits all alike); best round."""
    for step in steps.values():
        step(x)
    synchronize(device)
    best = {name: float("inf") for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            def run():
                for _ in range(n_steps):
                    step(x)
                synchronize(device)
            best[name] = min(best[name], best_of(run, repeats=1))
    return {name: n_steps * x.size(0) * (x.size(1) - 1) / sec for name, sec in best.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"training throughput on {device} ({torch.get_num_threads()} threads), tokens/s, AdamW, dropout 0.1")
    print(f"{'preset':<10} {'block':>5} {'batch':>5} {'ours manual':>12} {'ours sdpa':>10} {'HF eager':>10} "
          f"{'HF sdpa':>10} {'manual/eager':>13} {'sdpa/sdpa':>10}")
    for preset, block, batch in CASES:
        torch.manual_seed(0)
        x = torch.randint(0, 8192, (batch, block + 1), device=device)
        cfg = lambda **kw: GPTConfig.preset(preset, vocab_size=8192, block_size=block, **kw)
        steps = {"ours manual": ours(cfg(), device), "ours sdpa": ours(cfg(attn_impl="sdpa"), device),
                 "HF eager": transformers_model(cfg(), device, "eager"), "HF sdpa": transformers_model(cfg(), device, "sdpa")}
        res = tokens_per_second(steps, x, args.steps, args.rounds, device)
        print(f"{preset:<10} {block:>5} {batch:>5} {res['ours manual']:>12,.0f} {res['ours sdpa']:>10,.0f} "
              f"{res['HF eager']:>10,.0f} {res['HF sdpa']:>10,.0f} {res['ours manual'] / res['HF eager']:>12.2f}x "
              f"{res['ours sdpa'] / res['HF sdpa']:>9.2f}x")


if __name__ == "__main__":
    main()
