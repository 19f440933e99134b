"""Generation speed: our KV cache against recomputing the whole context at every step.

    python benchmarks/generation.py [--new-tokens 256]

gpt-mini (6 layers, 6 heads, width 192), randomly initialised, greedy, batch 1 and 8, for the
homework's own BPE vocabulary (8192) and GPT-2's (50257), and two prompt lengths. Both paths
give identical tokens (checked); only the time differs.
"""

from __future__ import annotations

import argparse

import torch
from common import best_of

from gpt.model import GPT, GPTConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=512)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"generation: gpt-mini, block {args.block_size}, {args.new_tokens} new tokens, greedy, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"{'vocab':>6} {'batch':>5} {'prompt':>6} {'cache tok/s':>12} {'recompute tok/s':>16} {'speed-up':>9}")
    for vocab in (8192, 50257):
        model = GPT(GPTConfig.preset("gpt-mini", vocab_size=vocab, block_size=args.block_size, dropout=0.0)).eval()
        for batch in (1, 8):
            for prompt_len in (8, 128):
                prompt = torch.randint(0, vocab, (batch, prompt_len))
                model.generate(prompt, 8)   # warm-up
                out = {}
                timed = {}
                for cache in (True, False):
                    def run():
                        out[cache] = model.generate(prompt, args.new_tokens, use_cache=cache)
                    timed[cache] = best_of(run, repeats=2)
                assert torch.equal(out[True], out[False])
                tps = {c: batch * args.new_tokens / t for c, t in timed.items()}
                print(f"{vocab:>6} {batch:>5} {prompt_len:>6} {tps[True]:>12.0f} {tps[False]:>16.0f} "
                      f"{timed[False] / timed[True]:>8.1f}x")


if __name__ == "__main__":
    main()
