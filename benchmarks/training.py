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
from common import ours_step, seconds_per_step, transformers_step

from gpt.model import GPTConfig

CASES = [("gpt-nano", 128, 32), ("gpt-micro", 128, 32), ("gpt-mini", 256, 16)]   # preset, block, batch


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
        steps = {"ours manual": ours_step(cfg(), device), "ours sdpa": ours_step(cfg(attn_impl="sdpa"), device),
                 "HF eager": transformers_step(cfg(), device, "eager"), "HF sdpa": transformers_step(cfg(), device, "sdpa")}
        for step in steps.values():       # one warm-up step each
            step(x)
        tokens = x.size(0) * (x.size(1) - 1)
        res = {name: tokens / sec for name, sec in seconds_per_step(steps, x, args.steps, args.rounds, device).items()}
        print(f"{preset:<10} {block:>5} {batch:>5} {res['ours manual']:>12,.0f} {res['ours sdpa']:>10,.0f} "
              f"{res['HF eager']:>10,.0f} {res['HF sdpa']:>10,.0f} {res['ours manual'] / res['HF eager']:>12.2f}x "
              f"{res['ours sdpa'] / res['HF sdpa']:>9.2f}x")


if __name__ == "__main__":
    main()
