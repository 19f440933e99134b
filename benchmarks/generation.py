"""Generation speed: our KV cache against recomputing the whole context at every step.

    python benchmarks/generation.py [--new-tokens 256]


gpt-mini (6 layers, 6 heads, width 192), randomly initialised, greedy, batch 1 and 8, for the
homework's own BPE vocabulary (8192) and GPT-2's (50257), and two prompt lengths. Our two paths
give identical tokens (checked). transformers' GPT2LMHeadModel.generate runs with the same weights
(loaded into ours with GPT.from_hf_gpt2), so its greedy tokens should match too (reported).
"""

from __future__ import annotations

import argparse

import torch
from common import best_of

from gpt.model import GPT, GPTConfig


def hf_pair(vocab: int, block: int):
    """transformers' GPT2LMHeadModel and our GPT with the same (random) weights."""
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPTConfig.preset("gpt-mini", vocab_size=vocab, block_size=block, dropout=0.0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=block, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                                    n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    bos_token_id=0, eos_token_id=0)).eval()
    return hf, GPT.from_hf_gpt2(hf.state_dict(), cfg).eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=512)
    args = ap.parse_args()
    torch.manual_seed(0)
    n = args.new_tokens
    print(f"generation: gpt-mini, block {args.block_size}, {n} new tokens, greedy, {torch.get_num_threads()} CPU threads;"
          " transformers' generate (KV cache on) with the same weights")
    print(f"{'vocab':>6} {'batch':>5} {'prompt':>6} {'ours cache':>11} {'ours recompute':>15} {'HF generate':>12} "
          f"{'cache/recompute':>16} {'ours/HF':>8} {'same tokens as HF':>18}")
    for vocab in (8192, 50257):
        hf, model = hf_pair(vocab, args.block_size)
        for batch in (1, 8):
            for prompt_len in (8, 128):
                prompt = torch.randint(0, vocab, (batch, prompt_len))
                model.generate(prompt, 8)   # warm-up
                out, timed = {}, {}

                def ours(cache):
                    out[cache] = model.generate(prompt, n, use_cache=cache)

                def theirs():
                    with torch.no_grad():
                        out["hf"] = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                                                min_new_tokens=n, do_sample=False, pad_token_id=0)
                timed[True] = best_of(lambda: ours(True), repeats=1)
                timed[False] = best_of(lambda: ours(False), repeats=1)
                timed["hf"] = best_of(theirs, repeats=1)
                assert torch.equal(out[True], out[False])
                same = torch.equal(out[True], out["hf"])
                tps = {k: batch * n / t for k, t in timed.items()}
                print(f"{vocab:>6} {batch:>5} {prompt_len:>6} {tps[True]:>11.0f} {tps[False]:>15.0f} {tps['hf']:>12.0f} "
                      f"{timed[False] / timed[True]:>15.1f}x {timed['hf'] / timed[True]:>7.2f}x {str(same):>18}")


if __name__ == "__main__":
    main()
