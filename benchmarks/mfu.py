"""Model FLOPs utilisation (MFU) of a training step: our GPT against transformers' GPT2LMHeadModel.

    python benchmarks/mfu.py                     # on a GPU: gpt2 (124M), block 1024, everything fast
    python benchmarks/mfu.py --device cpu --preset gpt-nano --block 64 --batch 4 --no-compile --peak-tflops 1

Both models get the same configuration and the same speed settings: bf16 autocast, torch.compile,
fused attention (sdpa), fused AdamW, TF32 for what stays fp32, dropout 0 and the vocabulary padded
from 50,257 to 50,304 (a multiple of 64, so the output matmul tiles evenly on tensor cores; the
extra rows are never a target). One step = forward + backward + clip + AdamW on batch x block tokens.

MFU = achieved FLOP/s / the device's peak dense bf16 FLOP/s, with FLOPs per token from
gpt.model.flops_per_token (6N + 12*L*H*Q*T). Peaks: H100 SXM and H200 989 TFLOP/s, H100 PCIe
756, A100 312; give --peak-tflops for any other device. Also printed: peak memory (CUDA) and
the ratio ours / transformers. The two models are timed in alternating rounds, best round kept.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ours_step, seconds_per_step, transformers_step

from gpt.model import GPTConfig, flops_per_token
from gpt.sizing import peak_tflops
from gpt.utils import enable_tf32, synchronize


def padded(n: int, multiple: int = 64) -> int:
    return (n + multiple - 1) // multiple * multiple


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak for --precision")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA GPU on this machine (MFU is a GPU figure; --device cpu runs the code path)")
        return
    enable_tf32()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or peak_tflops(device)
    cfg = GPTConfig.preset(args.preset, vocab_size=padded(50257), block_size=args.block, dropout=0.0,
                           attn_impl="sdpa")
    x = torch.randint(0, 50257, (args.batch, args.block + 1), device=device)   # T = block: targets shift by 1
    tokens = args.batch * args.block
    flops = flops_per_token(cfg) * tokens
    compile_ = not args.no_compile
    print(f"MFU on {name}: {args.preset}, vocab {cfg.vocab_size}, block {args.block}, batch {args.batch}, "
          f"{args.precision} autocast, compile {compile_}, sdpa, {'fused' if device.type == 'cuda' else 'foreach'} AdamW, TF32; "
          f"{flops_per_token(cfg) / 1e6:,.1f} MFLOP/token; peak {f'{peak:g} TFLOP/s' if peak else 'unknown'}")

    steps, memory = {}, {}
    makers = (("ours", lambda: ours_step(cfg, device, args.precision, compile_)),
              ("transformers", lambda: transformers_step(cfg, device, "sdpa", args.precision, compile_)))
    for label, make in makers:
        torch.manual_seed(0)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        step = make()
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            step(x)
        synchronize(device)
        print(f"  {label}: {args.warmup} warm-up steps (compilation included) in {time.perf_counter() - t0:.1f} s")
        steps[label] = step
        if device.type == "cuda":
            memory[label] = torch.cuda.max_memory_allocated(device) / 2**30

    best = seconds_per_step(steps, x, args.steps, args.rounds, device)

    print(f"{'model':<13} {'ms/step':>9} {'tokens/s':>12} {'TFLOP/s':>9} {'MFU':>7} {'peak mem GiB':>13}")
    for label, sec in best.items():
        achieved = flops / sec / 1e12
        mfu = f"{100 * achieved / peak:6.1f}%" if peak else "    n/a"
        mem = f"{memory[label]:13.1f}" if label in memory else f"{'n/a':>13}"
        print(f"{label:<13} {sec * 1000:9.1f} {tokens / sec:12,.0f} {achieved:9.2f} {mfu} {mem}")
    print(f"ours / transformers throughput: {best['transformers'] / best['ours']:.2f}x (target >= 1.0x; MFU target >= 45% "
          f"on an H100)")


if __name__ == "__main__":
    main()
