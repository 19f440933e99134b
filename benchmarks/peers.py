"""Our GPT against nanoGPT and minGPT, side by side in one process: training tokens/s and greedy
generation tokens/s (issue 14).

    python benchmarks/peers.py --nanogpt PATH/nanoGPT/model.py --mingpt PATH/minGPT/mingpt/model.py
                               [--rounds 3] [--steps 3] [--new-tokens 256] [--only train|generate]

The peers are not part of hw5: clone them (github.com/karpathy/nanoGPT, github.com/karpathy/minGPT)
and point at their model files; a peer left out is left out of the table. Training: one step is
forward + backward + gradient clipping (1.0) + AdamW, as each project's own training loop does it
(nanoGPT's configure_optimizers, torch.optim.AdamW for minGPT; ours is gpt.trainer.train_step with
gpt/optim.py), dropout 0, vocab 50257, at gpt-nano (block 32, batch 256) and gpt-mini (block 256,
batch 16). Ours runs with fused attention (attn_impl "sdpa", as nanoGPT's flash path) and with the
hand-written one ("manual", as minGPT). The step functions run in turn for --rounds rounds of
--steps steps each; every one keeps its best round (a slow spell of a shared machine hits all alike).

Generation: gpt-mini, block 512, batch 1, a prompt of 8 tokens, --new-tokens greedy tokens, vocab
50257 and 8192. nanoGPT's generate recomputes the whole context at every step; ours runs with the KV
cache and without it (recompute). Greedy in nanoGPT's generate is top_k=1. nanoGPT gets our weights
(the same parameter names) and, for the token comparison only, GPT-2's tanh GELU in place of its erf
one (the same cost), so all three must give the same tokens. The bandwidth bound: at batch 1 every
step reads every weight once, so tokens/s <= memory bandwidth / weight bytes; bandwidth is measured
here as the best of a few large tensor copies (read + write bytes / time).

hw5's CPU runs keep freed memory in the process (gpt.utils.keep_freed_memory: no munmap and page
faults of the large tensors at every step); the benchmark makes that setting for the whole process,
so the peers run with it too; --malloc-default runs everything with glibc's defaults instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from types import SimpleNamespace

import torch
from common import backward_and_step, best_of, ours_step, seconds_per_step

from gpt.model import GPT, GPTConfig
from gpt.utils import keep_freed_memory

TRAIN_CASES = [("gpt-nano", 32, 256), ("gpt-mini", 256, 16)]   # preset, block, batch
VOCAB = 50257


def load_module(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def peer_config(cfg: GPTConfig) -> SimpleNamespace:
    """The fields nanoGPT's GPTConfig and minGPT's CfgNode read, from ours (dropout 0)."""
    return SimpleNamespace(vocab_size=cfg.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                           n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0, bias=True, model_type=None,
                           embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)


def peer_step(model, opt):
    """step(x) as nanoGPT's train.py does it in fp32: loss, backward, clip 1.0, AdamW, zero_grad."""
    def step(x):
        _, loss = model(x[:, :-1].contiguous(), x[:, 1:].contiguous())   # its get_batch gives contiguous x, y
        return backward_and_step(model, opt, loss)
    return step


def nanogpt_model(module, cfg: GPTConfig):
    return module.GPT(module.GPTConfig(**{k: getattr(peer_config(cfg), k) for k in
                                          ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout",
                                           "bias")}))


def train_table(args, peers: dict) -> None:
    print(f"training tokens/s on the CPU ({torch.get_num_threads()} threads), vocab {VOCAB}, dropout 0, fp32, "
          f"clip 1.0 + AdamW; best of {args.rounds} rounds x {args.steps} steps")
    cols = ["ours sdpa", "ours manual"] + [p for p in ("nanoGPT", "minGPT") if p in peers]
    print(f"{'preset':<9} {'block':>5} {'batch':>5} " + " ".join(f"{c:>12}" for c in cols)
          + ("   sdpa/nanoGPT" if "nanoGPT" in peers else "") + ("   manual/minGPT" if "minGPT" in peers else ""))
    for preset, block, batch in TRAIN_CASES:
        torch.manual_seed(0)
        x = torch.randint(0, VOCAB, (batch, block + 1))
        cfg = lambda **kw: GPTConfig.preset(preset, vocab_size=VOCAB, block_size=block, dropout=0.0, **kw)
        steps = {"ours sdpa": ours_step(cfg(attn_impl="sdpa"), torch.device("cpu")),
                 "ours manual": ours_step(cfg(), torch.device("cpu"))}
        if "nanoGPT" in peers:
            m = nanogpt_model(peers["nanoGPT"], cfg()).train()
            steps["nanoGPT"] = peer_step(m, m.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu"))
        if "minGPT" in peers:
            m = peers["minGPT"].GPT(peer_config(cfg())).train()
            steps["minGPT"] = peer_step(m, torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95)))
        for step in steps.values():   # warm-up
            step(x)
        sec = seconds_per_step(steps, x, args.steps, args.rounds, torch.device("cpu"))
        tps = {k: batch * block / s for k, s in sec.items()}
        line = f"{preset:<9} {block:>5} {batch:>5} " + " ".join(f"{tps[c]:>12,.0f}" for c in cols)
        if "nanoGPT" in peers:
            line += f"   {tps['ours sdpa'] / tps['nanoGPT']:>12.2f}x"
        if "minGPT" in peers:
            line += f"   {tps['ours manual'] / tps['minGPT']:>13.2f}x"
        print(line, flush=True)


def bandwidth_gbs() -> float:
    """Memory bandwidth in GB/s: the best of a few copies of a 256 MB tensor (bytes read + written / time)."""
    src = torch.empty(64 * 2**20, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    sec = best_of(lambda: dst.copy_(src), repeats=8)
    return 2 * src.numel() * 4 / sec / 1e9


def generate_table(args, peers: dict) -> None:
    n = args.new_tokens
    bw = bandwidth_gbs()
    print(f"greedy generation, gpt-mini, block 512, batch 1, prompt 8, {n} new tokens, {torch.get_num_threads()} "
          f"CPU threads; memory bandwidth {bw:.1f} GB/s (tensor copy); tokens/s, best of {args.rounds} rounds")
    cols = ["ours cache", "ours recompute"] + (["nanoGPT"] if "nanoGPT" in peers else [])
    print(f"{'vocab':>6} {'weights MB':>10} {'bound':>7} " + " ".join(f"{c:>14}" for c in cols)
          + f" {'cache/recompute':>15}" + (f" {'cache/nanoGPT':>13} {'same tokens':>11}" if "nanoGPT" in peers else "")
          + f" {'cache/bound':>11}")
    for vocab in (VOCAB, 8192):
        torch.manual_seed(0)
        cfg = GPTConfig.preset("gpt-mini", vocab_size=vocab, block_size=512, dropout=0.0)
        model = GPT(cfg).eval()
        prompt = torch.randint(0, vocab, (1, 8))
        # every weight once per token (the tied embedding matrix is read once, as the output layer)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        bound = bw * 1e9 / weight_bytes
        runs = {"ours cache": lambda: model.generate(prompt, n, use_cache=True),
                "ours recompute": lambda: model.generate(prompt, n, use_cache=False)}
        if "nanoGPT" in peers:
            peer = nanogpt_model(peers["nanoGPT"], cfg).eval()
            peer.load_state_dict(model.state_dict(), strict=False)   # same names; its flash path keeps no mask
            for block in peer.transformer.h:
                block.mlp.gelu = torch.nn.GELU(approximate="tanh")   # GPT-2's GELU, as ours
            runs["nanoGPT"] = lambda: peer.generate(prompt, n, top_k=1)
        out, best = {}, {k: float("inf") for k in runs}
        for name, run in runs.items():   # warm-up
            out[name] = run()
        for _ in range(args.rounds):
            for name, run in runs.items():
                t0 = time.perf_counter()
                out[name] = run()
                best[name] = min(best[name], time.perf_counter() - t0)
        assert torch.equal(out["ours cache"], out["ours recompute"]), "the KV cache changed the greedy tokens"
        tps = {k: n / s for k, s in best.items()}
        line = (f"{vocab:>6} {weight_bytes / 1e6:>10.1f} {bound:>7.0f} " + " ".join(f"{tps[c]:>14,.0f}" for c in cols)
                + f" {tps['ours cache'] / tps['ours recompute']:>14.1f}x")
        if "nanoGPT" in peers:
            same = torch.equal(out["ours cache"], out["nanoGPT"])
            line += f" {tps['ours cache'] / tps['nanoGPT']:>12.1f}x {str(same):>11}"
        print(line + f" {tps['ours cache'] / bound:>10.2f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nanogpt", help="nanoGPT's model.py")
    ap.add_argument("--mingpt", help="minGPT's mingpt/model.py")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per round")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--only", choices=("train", "generate"))
    ap.add_argument("--malloc-default", action="store_true",
                    help="leave glibc's malloc as it is (hw5's runs keep freed memory: gpt.utils.keep_freed_memory)")
    args = ap.parse_args()
    if not args.malloc_default:
        keep_freed_memory()   # as hw5's own CPU runs do; the peers in this process get it too
    print("malloc: " + ("glibc's defaults" if args.malloc_default else "freed memory kept (hw5's CPU setting)"))
    peers = {}
    if args.nanogpt:
        peers["nanoGPT"] = load_module(args.nanogpt, "peer_nanogpt")
    if args.mingpt:
        peers["minGPT"] = load_module(args.mingpt, "peer_mingpt")
    if args.only != "generate":
        train_table(args, peers)
    if args.only != "train":
        generate_table(args, peers)


if __name__ == "__main__":
    main()
