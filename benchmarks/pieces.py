"""The hand-written model pieces (gpt.model's LayerNorm, gelu, lm_loss, the advanced level's TODOs)
against the PyTorch ops they replace, forward + backward, and one training step of the default CPU run
(4 layers, 4 heads, width 128, block 128, batch 32, vocab 4096, fp32, manual attention) with ours against
the same model with F.layer_norm, F.gelu and F.cross_entropy swapped in.

    python benchmarks/pieces.py [--rounds 5] [--repeats 5] [--threads N]

Each pair runs in alternating rounds (ours, PyTorch, ours, ...) so that a slow spell of a shared machine
hits both alike; each keeps its best round. Prints milliseconds per call and the ratio ours / PyTorch.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch                        # noqa: E402
import torch.nn.functional as F     # noqa: E402

import gpt.model as gm              # noqa: E402
import gpt.kernels as gk            # noqa: E402


def best_ms(fns: dict, rounds: int, repeats: int) -> dict:
    """{name: best milliseconds per call} over `rounds` rounds in which each fn runs `repeats` times in turn."""
    for fn in fns.values():      # warm-up
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / repeats * 1e3)
    return best


def fwd_bwd(f, *shapes, grad_shape=None, seed=0):
    """A function running f on fresh leaf tensors of `shapes` and backpropagating a fixed gradient."""
    g = torch.Generator().manual_seed(seed)
    base = [torch.randn(*s, generator=g) for s in shapes]
    out_grad = torch.randn(*(grad_shape or shapes[0]), generator=g)

    def run():
        leaves = [b.clone().requires_grad_() for b in base]
        y = f(*leaves)
        y.backward(out_grad if y.dim() else None)
    return run


def pieces(N: int, C: int, V: int) -> list[tuple[str, dict]]:
    targets = torch.randint(0, V, (N,), generator=torch.Generator().manual_seed(1))
    mask = (torch.rand(N, generator=torch.Generator().manual_seed(2)) > 0.1).float()

    def ref_loss(logits):
        nll = F.cross_entropy(logits, targets, reduction="none")
        return (nll * mask).sum() / mask.sum()
    return [
        (f"LayerNorm ({N}x{C})", {
            "ours": fwd_bwd(lambda x, w, b: gk.LayerNormFunction.apply(x, w, b, 1e-5), (N, C), (C,), (C,)),
            "torch": fwd_bwd(lambda x, w, b: F.layer_norm(x, (C,), w, b, 1e-5), (N, C), (C,), (C,))}),
        (f"GELU ({N}x{4 * C})", {
            "ours": fwd_bwd(gm.gelu, (N, 4 * C)),
            "torch": fwd_bwd(lambda x: F.gelu(x, approximate="tanh"), (N, 4 * C))}),
        (f"cross-entropy with mask ({N}x{V})", {
            "ours": fwd_bwd(lambda x: gm.lm_loss(x, targets, mask), (N, V)),
            "torch": fwd_bwd(ref_loss, (N, V))}),
    ]


@contextlib.contextmanager
def pytorch_ops():
    """gpt.model with PyTorch's LayerNorm, GELU and cross-entropy in place of the hand-written ones."""
    saved = gm.LayerNorm.forward, gm.gelu, gm.lm_loss

    def lm_loss(logits, targets, mask=None):
        flat = logits.reshape(-1, logits.size(-1)).float()
        if mask is None:
            return F.cross_entropy(flat, targets.reshape(-1))
        nll = F.cross_entropy(flat, targets.reshape(-1), reduction="none")
        m = mask.reshape(-1).to(nll.dtype)
        return (nll * m).sum() / m.sum().clamp(min=1.0)
    gm.LayerNorm.forward = lambda self, x: F.layer_norm(x, (x.size(-1),), self.weight, self.bias, self.eps)
    gm.gelu = lambda x: F.gelu(x, approximate="tanh")
    gm.lm_loss = lm_loss
    try:
        yield
    finally:
        gm.LayerNorm.forward, gm.gelu, gm.lm_loss = saved


def train_steps(batch: int, block: int, vocab: int) -> dict:
    """One forward + backward + AdamW step of the default CPU run's model, ours and with PyTorch's ops."""
    torch.manual_seed(0)
    cfg = gm.GPTConfig(vocab_size=vocab, block_size=block, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
    model = gm.GPT(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, vocab, (batch, block + 1), generator=torch.Generator().manual_seed(3))

    def step():
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def torch_step():
        with pytorch_ops():
            step()
    return {"ours": step, "torch": torch_step}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5, help="calls per round (training steps: 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batch, block, vocab, C = 32, 128, 4096, 128
    N = batch * block
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {args.rounds} alternating rounds")
    print("| piece (forward + backward) | ours ms | PyTorch ms | ours / PyTorch |\n| --- | --- | --- | --- |")
    rows = pieces(N, C, vocab) + [("training step (default CPU run)", train_steps(batch, block, vocab))]
    for name, fns in rows:
        repeats = 2 if name.startswith("training") else args.repeats
        ms = best_ms(fns, args.rounds, repeats)
        print(f"| {name} | {ms['ours']:.2f} | {ms['torch']:.2f} | {ms['ours'] / ms['torch']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
