"""Speed of our AdamW step and gradient clipping (gpt/optim.py) against PyTorch's, on the parameters of
the model `python main.py` trains on a CPU (the `auto` CPU profile: about 1.3M parameters).

    python benchmarks/optim.py [--steps 200] [--rounds 7] [--device cpu] [--train-steps 5]

Each round times `steps` optimizer steps of every contender in turn (ours, torch.optim.AdamW with its
default implementation, which on CPU is a per-parameter for-loop, and with foreach=True), then `steps`
clips (ours, torch.nn.utils.clip_grad_norm_); the best round of each is reported, with ratios
(> 1: ours is faster). Same parameter groups as the Trainer (weight decay 0.1 on matrices, 0 on the rest).
With --train-steps N > 0 it then times whole training steps (forward, backward, clipping, AdamW; batch 32 x 128)
with ours and with torch's AdamW and clip_grad_norm_, N steps per round, and prints tokens/s of each.
"""

from __future__ import annotations

import argparse
import time

from common import ROOT  # noqa: F401  (puts the repository on sys.path)


def main():
    import torch

    from gpt.model import GPT, GPTConfig
    from gpt.optim import AdamW, clip_grad_norm
    from app.profiles import AUTO_PROFILES
    from gpt.trainer import TrainConfig, make_optimizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=0, help="also time whole training steps (0: no)")
    args = ap.parse_args()
    device = torch.device(args.device)
    prof = AUTO_PROFILES["cpu"]
    cfg = GPTConfig(vocab_size=prof["vocab_size"], block_size=prof["block_size"], n_layer=prof["n_layer"],
                    n_head=prof["n_head"], n_embd=prof["n_embd"], dropout=0.0)
    tcfg = TrainConfig(learning_rate=prof["learning_rate"])

    def model():
        torch.manual_seed(0)
        m = GPT(cfg).to(device)
        for p in m.parameters():
            p.grad = torch.randn_like(p) * 1e-2
        return m

    models = {name: model() for name in ("ours", "torch", "torch-foreach")}
    groups = {name: make_optimizer(m, tcfg).param_groups for name, m in models.items()}
    opts = {"ours": AdamW(groups["ours"], lr=tcfg.learning_rate, betas=tcfg.betas),
            "torch": torch.optim.AdamW(groups["torch"], lr=tcfg.learning_rate, betas=tcfg.betas),
            "torch-foreach": torch.optim.AdamW(groups["torch-foreach"], lr=tcfg.learning_rate, betas=tcfg.betas,
                                               foreach=True)}
    params = list(models["ours"].parameters())
    clips = {"ours": lambda: clip_grad_norm(params, 1.0), "torch": lambda: torch.nn.utils.clip_grad_norm_(params, 1.0)}
    n = sum(p.numel() for p in params)
    print(f"{n:,} parameters in {len(params)} tensors on {device}; {args.steps} calls per round, best of {args.rounds}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        sync()
        return (time.perf_counter() - t0) / args.steps

    for fn in [*(o.step for o in opts.values()), *clips.values()]:   # warm-up (state allocation)
        fn()
    best = {("step", k): float("inf") for k in opts} | {("clip", k): float("inf") for k in clips}
    for _ in range(args.rounds):
        for k, o in opts.items():
            best["step", k] = min(best["step", k], timed(o.step))
        for k, c in clips.items():
            best["clip", k] = min(best["clip", k], timed(c))
    for (what, k), t in best.items():
        print(f"  {what} {k:<14} {t * 1e6:9.1f} us")
    print(f"AdamW step: torch default / ours = {best['step', 'torch'] / best['step', 'ours']:.2f}x, "
          f"torch foreach / ours = {best['step', 'torch-foreach'] / best['step', 'ours']:.2f}x")
    print(f"clipping:   torch / ours = {best['clip', 'torch'] / best['clip', 'ours']:.2f}x")
    if args.train_steps > 0:
        train_steps(cfg, tcfg, prof["batch_size"], device, args.train_steps, args.rounds)


def train_steps(cfg, tcfg, batch_size, device, n_steps, rounds):
    """Whole training steps with ours (make_optimizer, train_step) and with torch's AdamW and clipping."""
    import torch

    import gpt.trainer as trainer
    from gpt.model import GPT

    def setup(theirs: bool):
        torch.manual_seed(0)
        model = GPT(cfg).to(device).train()
        opt = trainer.make_optimizer(model, tcfg)
        if theirs:
            opt = torch.optim.AdamW(opt.param_groups, lr=tcfg.learning_rate, betas=tcfg.betas)
        return model, opt

    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size + 1), device=device)
    batch = [(x[:, :-1], x[:, 1:])]
    runs = {"ours": setup(False), "torch": setup(True)}
    ours_clip = trainer.clip_grad_norm

    def run(name):
        model, opt = runs[name]
        trainer.clip_grad_norm = ours_clip if name == "ours" else torch.nn.utils.clip_grad_norm_
        try:
            for _ in range(n_steps):
                trainer.train_step(model, opt, batch, 1.0)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        finally:
            trainer.clip_grad_norm = ours_clip

    for name in runs:
        run(name)   # warm-up
    best = {name: float("inf") for name in runs}
    for r in range(rounds):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):   # neither always goes first
            t0 = time.perf_counter()
            run(name)
            best[name] = min(best[name], (time.perf_counter() - t0) / n_steps)
    tokens = batch_size * cfg.block_size
    for name, t in best.items():
        print(f"  train step {name:<6} {t * 1e3:8.1f} ms  {tokens / t:10,.0f} tokens/s")
    print(f"training step: ours / torch tokens/s = {best['torch'] / best['ours']:.3f}")


if __name__ == "__main__":
    main()
