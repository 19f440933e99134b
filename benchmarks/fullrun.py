"""Throughput of the homework's default run: what `python main.py train` would train on this device.

    python benchmarks/fullrun.py [--device auto] [--steps 20] [--extra-flags "--fast"]

The model and training settings come from main.py itself (the `auto` profile: CPU or GPU), and the
batches from data.WindowBatches over a stream of random token ids (the path the real run takes,
pinned memory and non-blocking copies included; tokenizing WikiText is not part of a step).
Prints tokens/s, ms per iteration, seconds per 1000 iterations and the profile's max_iters
iterations of training (evaluation and the final report not included). On a GPU it also times
the profile with --fast (bf16 autocast + torch.compile + sdpa + TF32).
"""

from __future__ import annotations

import argparse
import shlex
import time

import numpy as np
import torch
import common  # noqa: F401  (puts the repository on sys.path)

import main as hw5_main
from data import WindowBatches
from gpt.trainer import TrainConfig, autocast_context, make_optimizer, train_step
from gpt.utils import choose_device, enable_tf32, synchronize


def time_profile(flags: list[str], device: torch.device, steps: int, warmup: int) -> dict:
    args = hw5_main.build_parser().parse_args(["train", *flags])
    model_settings, train_settings = hw5_main.resolve_settings(args, device.type)
    if args.fast and device.type == "cuda":
        enable_tf32()
    vocab = hw5_main.AUTO_PROFILES["gpu" if device.type == "cuda" else "cpu"]["vocab_size"]
    tcfg = TrainConfig(device=str(device), **train_settings)
    torch.manual_seed(0)
    model, cfg = hw5_main.build_model(args, vocab, model_settings)
    model = model.to(device).train()
    opt = make_optimizer(model, tcfg, fused=device.type == "cuda")
    run = torch.compile(model) if tcfg.compile else model
    autocast = autocast_context(device, tcfg.precision)
    ids = np.random.default_rng(0).integers(0, vocab, size=2_000_000, dtype=np.uint16)
    batches = WindowBatches(ids, cfg.block_size, tcfg.batch_size, seed=0, device=device)

    def iteration(i):
        micro = [batches.get(i * tcfg.grad_accum + k) for k in range(tcfg.grad_accum)]
        return train_step(run, opt, micro, tcfg.grad_clip, autocast)

    for i in range(warmup):
        iteration(i)
    synchronize(device)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + steps):
        loss = iteration(i)
    float(loss)                          # one read-back at the end, as at a log interval
    sec = (time.perf_counter() - t0) / steps
    tokens = tcfg.batch_size * tcfg.grad_accum * cfg.block_size
    return dict(flags=" ".join(flags) or "(defaults)", model=hw5_main.describe(args.model, cfg),
                params=sum(p.numel() for p in model.parameters()), batch=f"{tcfg.batch_size * tcfg.grad_accum} x {cfg.block_size}",
                precision=tcfg.precision, compile=tcfg.compile, attn=cfg.attn_impl, sec=sec, tokens_per_second=tokens / sec,
                max_iters=tcfg.max_iters)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations first (compilation happens here)")
    ap.add_argument("--extra-flags", default=None, help="time these main.py train flags too, e.g. \"--fast\"")
    args = ap.parse_args()
    device = choose_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    variants = [[]]
    if device.type == "cuda":
        variants.append(["--fast"])
    if args.extra_flags:
        variants.append(shlex.split(args.extra_flags))
    print(f"default run of `python main.py train` on {name}: {args.steps} timed iterations after {args.warmup} warm-up")
    print(f"{'flags':<18} {'precision':>9} {'compile':>7} {'attn':>6} {'tokens/s':>10} {'ms/iter':>8} "
          f"{'s/1000 iters':>12} {'max_iters':>9} {'training time':>13}")
    models = {}
    for flags in variants:
        r = time_profile(flags, device, args.steps, args.warmup)
        models.setdefault(f"{r['model']}, {r['params']:,} parameters, batch {r['batch']} tokens", []).append(r["flags"])
        total = r["sec"] * r["max_iters"]
        print(f"{r['flags']:<18} {r['precision']:>9} {str(r['compile']):>7} {r['attn']:>6} {r['tokens_per_second']:>10,.0f} "
              f"{r['sec'] * 1000:>8.1f} {r['sec'] * 1000:>12.0f} {r['max_iters']:>9} {total / 60:>9.1f} min")
    for model, flags in models.items():
        print(f"model ({'; '.join(flags)}): {model}")


if __name__ == "__main__":
    main()
