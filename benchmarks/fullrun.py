"""Throughput of the homework's default run: what `python main.py train` would train on this device.

    python benchmarks/fullrun.py [--device auto] [--steps 20] [--extra "attn_impl=sdpa precision=bf16"]

The model and training settings are resolved as `main.py train` resolves them (app.profiles: the
`auto` profile for the CPU or the GPU; --extra sets fields of GPTConfig / TrainConfig as flags would),
and the batches come from gpt.windows.WindowBatches over a stream of random token ids (the path the real run takes,
pinned memory and non-blocking copies included; tokenizing WikiText is not part of a step).
Prints tokens/s, ms per iteration, seconds per 1000 iterations and the profile's max_iters
iterations of training (evaluation and the final report not included). On a GPU it also times
the profile with --fast (bf16 autocast + torch.compile + sdpa + TF32).
"""

from __future__ import annotations

import argparse
import ast
import time

import numpy as np
import torch
import common  # noqa: F401  (puts the repository on sys.path)

from app.profiles import auto_profile, build_model, describe, resolve_settings
from gpt.trainer import TrainConfig, autocast_context, make_optimizer, train_step
from gpt.utils import choose_device, enable_tf32, keep_freed_memory, synchronize
from gpt.windows import WindowBatches


def parse_settings(text: str) -> dict:
    """"attn_impl=sdpa batch_size=16" -> {"attn_impl": "sdpa", "batch_size": 16}."""
    out = {}
    for item in text.split():
        key, _, value = item.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def time_profile(given: dict, fast: bool, device: torch.device, steps: int, warmup: int) -> dict:
    model_settings, train_settings = resolve_settings(given, device.type, fast=fast)
    if fast and device.type == "cuda":
        enable_tf32()
    vocab = auto_profile(device.type)["vocab_size"]
    tcfg = TrainConfig(device=str(device), **train_settings)
    torch.manual_seed(0)
    model, cfg = build_model("gpt", vocab, model_settings)
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
    label = " ".join((["--fast"] if fast else []) + [f"{k}={v}" for k, v in given.items()]) or "(defaults)"
    return dict(flags=label, model=describe(cfg),
                params=sum(p.numel() for p in model.parameters()), batch=f"{tcfg.batch_size * tcfg.grad_accum} x {cfg.block_size}",
                precision=tcfg.precision, compile=tcfg.compile, attn=cfg.attn_impl, sec=sec, tokens_per_second=tokens / sec,
                max_iters=tcfg.max_iters)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations first (compilation happens here)")
    ap.add_argument("--extra", default=None, help='time these settings too, e.g. "attn_impl=sdpa precision=bf16"')
    args = ap.parse_args()
    device = choose_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()   # as main.py's CPU runs do (gpt.distributed.compute_init)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    variants = [({}, False)]
    if device.type == "cuda":
        variants.append(({}, True))
    if args.extra:
        variants.append((parse_settings(args.extra), False))
    print(f"default run of `python main.py train` on {name}: {args.steps} timed iterations after {args.warmup} warm-up")
    print(f"{'flags':<18} {'precision':>9} {'compile':>7} {'attn':>6} {'tokens/s':>10} {'ms/iter':>8} "
          f"{'s/1000 iters':>12} {'max_iters':>9} {'training time':>13}")
    models = {}
    for given, fast in variants:
        r = time_profile(given, fast, device, args.steps, args.warmup)
        models.setdefault(f"{r['model']}, {r['params']:,} parameters, batch {r['batch']} tokens", []).append(r["flags"])
        total = r["sec"] * r["max_iters"]
        print(f"{r['flags']:<18} {r['precision']:>9} {str(r['compile']):>7} {r['attn']:>6} {r['tokens_per_second']:>10,.0f} "
              f"{r['sec'] * 1000:>8.1f} {r['sec'] * 1000:>12.0f} {r['max_iters']:>9} {total / 60:>9.1f} min")
    for model, flags in models.items():
        print(f"model ({'; '.join(flags)}): {model}")


if __name__ == "__main__":
    main()
