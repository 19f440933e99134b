"""Training memory: gpt.utils.estimate_training_memory against what a real training step takes.

    python benchmarks/memory.py                       # CUDA: gpt2, batch 8 x 1024 (issue 5's table)
    python benchmarks/memory.py --device cpu --preset gpt-mini --batch 8 --block 256 --vocab 8192

For fp32 with hand-written attention, bf16 autocast with hand-written attention and bf16 with sdpa:
build the model and AdamW, run one training step (so the optimizer state exists), then measure the
peak of a second one, in bytes of live tensors. On CUDA that is torch.cuda.max_memory_allocated;
on the CPU PyTorch's memory profiler, which records every tensor's allocation and release, gives
the same quantity. Memory held before the measured step (weights, optimizer state) is included.
"""

from __future__ import annotations

import argparse
import gc

import torch
from common import ours_step

from gpt.model import GPTConfig
from gpt.sizing import estimate_training_memory

CASES = [("fp32", "manual"), ("bf16", "manual"), ("bf16", "sdpa")]


def peak_bytes(fn, device: torch.device) -> int:
    """Peak bytes of live tensors on `device` while fn() runs (tensors alive before it included)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")   # (time, category) bytes
    return max(sum(row) for row in sizes)


def measure_training_step(cfg: GPTConfig, batch: int, precision: str, optimizer: str = "adamw",
                          device: torch.device | str = "cpu") -> int:
    """Peak bytes of the second training step of GPT(cfg) with the trainer's optimizer and train_step."""
    device = torch.device(device)
    torch.manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), device=device)
    step = ours_step(cfg, device, precision, optimizer=optimizer)
    step(x)
    return peak_bytes(lambda: step(x), device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--dropout", type=float, default=0.1)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA GPU on this machine (--device cpu measures with PyTorch's memory profiler)")
        return
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (PyTorch memory profiler)"
    print(f"training memory: {args.preset}, vocab {args.vocab}, batch {args.batch} x {args.block}, dropout "
          f"{args.dropout}, AdamW, on {where}; GB = 1e9 bytes")
    print(f"{'precision':<9} {'attention':<9} {'estimate GB':>11} {'measured GB':>11} {'measured/estimate':>17}")
    for precision, attn in CASES:
        cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab, block_size=args.block, dropout=args.dropout,
                               attn_impl=attn)
        est = estimate_training_memory(cfg, args.batch, args.block, "adamw", precision, attn, device.type)["total"]
        got = measure_training_step(cfg, args.batch, precision, "adamw", device)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"{precision:<9} {attn:<9} {est / 1e9:>11.3f} {got / 1e9:>11.3f} {got / est:>16.3f}x")


if __name__ == "__main__":
    main()
