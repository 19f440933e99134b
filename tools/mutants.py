"""Mutation check for the graded tests: plausible wrong answers to each TODO must fail them.

    python tools/mutants.py [--only NAME]

Each mutant edits one solution region (an exact text replacement, or a few in one file). For each,
the repository's handout files are copied to a temporary folder, the edit is applied there, and the
graded tests of its TODO run; the mutant is "caught" when at least one of them fails. Prints a table
(mutant -> the tests that caught it) and exits 1 if any mutant survives.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from make_handout import END, HANDOUT_FILES, collect  # noqa: E402


@dataclass(frozen=True)
class Mutant:
    name: str
    todo: str
    path: str
    old: str
    new: str
    more: tuple[tuple[str, str], ...] = ()   # further (old, new) edits of the same file, for one mistake in two places


MUTANTS = [
    Mutant("count-pairs-ignores-weight", "bpe-count-pairs", "gpt/bpe.py",
           "counts[pair] = counts.get(pair, 0) + weight", "counts[pair] = counts.get(pair, 0) + 1"),
    Mutant("count-pairs-overwrites", "bpe-count-pairs", "gpt/bpe.py",
           "counts[pair] = counts.get(pair, 0) + weight", "counts[pair] = weight"),
    Mutant("merge-overlapping", "bpe-merge", "gpt/bpe.py", "            i += 2\n", "            i += 1\n"),
    Mutant("merge-first-occurrence-only", "bpe-merge", "gpt/bpe.py",
           "            out.append(new_id)\n            i += 2\n",
           "            out.append(new_id)\n            out.extend(ids[i + 2:])\n            break\n"),
    Mutant("bpe-train-ties-by-id-not-bytes", "bpe-train", "gpt/bpe.py",
           "heap = [(-c, vocab[a], vocab[b], a, b) for", "heap = [(-c, a, b, a, b) for",
           more=(("heapq.heappush(heap, (-c, vocab[pair[0]], vocab[pair[1]], pair[0], pair[1]))",
                  "heapq.heappush(heap, (-c, pair[0], pair[1], pair[0], pair[1]))"),)),
    Mutant("bpe-train-ignores-pretoken-frequency", "bpe-train", "gpt/bpe.py",
           "            count_pairs(pretoken, pair_counts, f)\n", "            count_pairs(pretoken, pair_counts)\n"),
    Mutant("bpe-train-uses-stale-counts", "bpe-train", "gpt/bpe.py",
           "            if pair_counts.get((a, b)) != -neg_count:\n                continue  # stale entry\n",
           "            if (a, b) not in pair_counts:\n                continue\n"),
    Mutant("encode-leftmost-pair-not-lowest-rank", "bpe-encode-pretoken", "gpt/bpe.py",
           'best = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))',
           "best = next((p for p in zip(ids, ids[1:]) if p in merges), ids[:2] and (ids[0], ids[1]))"),
    Mutant("encode-highest-rank-first", "bpe-encode-pretoken", "gpt/bpe.py",
           'best = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, float("inf")))',
           'best = max(zip(ids, ids[1:]), key=lambda p: merges.get(p, -1))'),
    Mutant("mask-includes-the-future", "attention-mask", "gpt/model.py",
           "causal_mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))",
           "causal_mask = torch.triu(torch.ones(config.block_size, config.block_size, dtype=torch.bool))"),
    Mutant("mask-all-ones", "attention-mask", "gpt/model.py",
           "causal_mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))",
           "causal_mask = torch.ones(config.block_size, config.block_size, dtype=torch.bool)"),
    Mutant("attention-missing-scaling", "attention-forward", "gpt/model.py",
           "att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))", "att = q @ k.transpose(-2, -1)"),
    Mutant("attention-scales-by-d-not-sqrt-d", "attention-forward", "gpt/model.py",
           "(1.0 / math.sqrt(k.size(-1)))", "(1.0 / k.size(-1))"),
    Mutant("attention-softmax-wrong-dim", "attention-forward", "gpt/model.py",
           "att = F.softmax(att, dim=-1)", "att = F.softmax(att, dim=-2)"),
    Mutant("attention-no-mask", "attention-forward", "gpt/model.py",
           'att = att.masked_fill(mask == 0, float("-inf"))', "pass"),
    Mutant("attention-skips-dropout", "attention-forward", "gpt/model.py",
           "        att = self.attn_dropout(att)\n", ""),
    Mutant("attention-mask-rows-ignore-cache", "attention-forward", "gpt/model.py",
           "mask = self.causal_mask[:, :, past:past + T, :S]   ", "mask = self.causal_mask[:, :, :T, :S]   "),
    Mutant("layer-norm-unbiased-variance", "layer-norm", "gpt/functional.py",
           "var = (xc * xc).mean(dim=-1, keepdim=True)             # (..., 1) biased variance",
           "var = (xc * xc).sum(dim=-1, keepdim=True) / (x.size(-1) - 1)"),
    Mutant("layer-norm-eps-outside-sqrt", "layer-norm", "gpt/functional.py",
           "rstd = torch.rsqrt(var + eps)", "rstd = 1.0 / (torch.sqrt(var) + eps)"),
    Mutant("layer-norm-ignores-bias", "layer-norm", "gpt/functional.py",
           "y = xhat * weight if bias is None else torch.addcmul(bias, xhat, weight)", "y = xhat * weight"),
    Mutant("gelu-missing-half", "gelu", "gpt/functional.py",
           "z = z.mul_(2.0 * GELU_C * 0.044715).add_(2.0 * GELU_C).mul_(x)", "z = z.mul_(GELU_C * 0.044715).add_(GELU_C).mul_(x)"),
    Mutant("gelu-wrong-constant", "gelu", "gpt/functional.py",
           "z = z.mul_(2.0 * GELU_C * 0.044715).add_(2.0 * GELU_C).mul_(x)",
           "z = z.mul_(2.0 * GELU_C * 0.044715).add_(2.0 * math.sqrt(2.0) / math.pi).mul_(x)"),
    Mutant("gelu-derivative-drops-chain-rule", "gelu", "gpt/functional.py",
           "return (1.0 - s).mul_(x).mul_(du).add_(1.0).mul_(s)", "return (1.0 - s).mul_(x).add_(1.0).mul_(s)"),
    Mutant("mlp-gelu-after-projection", "mlp-forward", "gpt/model.py",
           "return self.dropout(self.c_proj(gelu(self.c_fc(x))))", "return self.dropout(gelu(self.c_proj(self.c_fc(x))))"),
    Mutant("mlp-no-dropout", "mlp-forward", "gpt/model.py",
           "return self.dropout(self.c_proj(gelu(self.c_fc(x))))", "return self.c_proj(gelu(self.c_fc(x)))"),
    Mutant("block-no-residual", "block-forward", "gpt/model.py",
           f"        x = x + self.mlp(self.ln_2(x))\n        return x\n        {END}",
           f"        x = self.mlp(self.ln_2(x))\n        return x\n        {END}"),
    Mutant("block-post-layernorm", "block-forward", "gpt/model.py",
           "        x = x + self.attn(self.ln_1(x), kv_cache, layer)\n        x = x + self.mlp(self.ln_2(x))\n        return x\n",
           "        x = self.ln_1(x + self.attn(x, kv_cache, layer))\n        x = self.ln_2(x + self.mlp(x))\n        return x\n"),
    Mutant("block-drops-the-cache", "block-forward", "gpt/model.py",
           "        x = x + self.attn(self.ln_1(x), kv_cache, layer)\n        x = x + self.mlp(self.ln_2(x))\n        return x\n",
           "        x = x + self.attn(self.ln_1(x))\n        x = x + self.mlp(self.ln_2(x))\n        return x\n"),
    Mutant("gpt-positions-ignore-past", "gpt-forward", "gpt/model.py",
           "pos = torch.arange(past, past + T, dtype=torch.long, device=idx.device)",
           "pos = torch.arange(0, T, dtype=torch.long, device=idx.device)"),
    Mutant("gpt-no-final-layernorm", "gpt-forward", "gpt/model.py",
           f"        x = self.transformer.ln_f(x)\n        {END}", f"        {END}"),
    Mutant("gpt-head-uses-wte", "gpt-forward", "gpt/model.py",
           "logits = self.lm_head(self.hidden_states(idx))  ", "logits = self.hidden_states(idx) @ self.transformer.wte.weight.t()  "),
    Mutant("gpt-loss-ignores-mask", "gpt-forward", "gpt/model.py",
           "loss = lm_loss(logits, targets, mask)", "loss = lm_loss(logits, targets)"),
    Mutant("cross-entropy-no-max-subtraction", "cross-entropy", "gpt/functional.py",
           "torch.logsumexp(block, dim=-1)", "block.exp().sum(dim=-1).log()"),
    Mutant("cross-entropy-mean-over-padding", "cross-entropy", "gpt/functional.py",
           "weights = weights / weights.sum().clamp(min=1.0)", "weights = weights / weights.numel()"),
    Mutant("cross-entropy-counts-padding", "cross-entropy", "gpt/functional.py",
           "        weights = mask.to(nll.dtype)\n", "        weights = torch.ones_like(nll)\n"),
    Mutant("kv-append-overwrites-at-zero", "kv-cache-append", "gpt/model.py",
           "        self.k[layer][:, :, self.length:end] = k\n        self.v[layer][:, :, self.length:end] = v\n",
           "        self.k[layer][:, :, :k.size(2)] = k\n        self.v[layer][:, :, :k.size(2)] = v\n"),
    Mutant("kv-append-returns-only-the-new", "kv-cache-append", "gpt/model.py",
           "return self.k[layer][:, :, :end], self.v[layer][:, :, :end]", "return k, v"),
    Mutant("top-p-drops-the-token-that-crosses-p", "sample-top-p", "gpt/sampling.py",
           "remove_sorted = mass_before >= p", "remove_sorted = torch.cumsum(probs, dim=-1) > p"),
    Mutant("top-p-keeps-the-wrong-order", "sample-top-p", "gpt/sampling.py",
           "remove = torch.zeros_like(remove_sorted).scatter(-1, order, remove_sorted)", "remove = remove_sorted"),
    Mutant("top-p-keeps-the-least-likely", "sample-top-p", "gpt/sampling.py",
           "torch.sort(logits, dim=-1, descending=True)", "torch.sort(logits, dim=-1, descending=False)"),
    Mutant("perplexity-mean-of-batch-losses", "perplexity", "gpt/trainer.py",
           "        total_nll += (nll * mask.reshape(-1)).sum().double()\n        total_tokens += int(mask.sum().item())\n",
           "        total_nll += ((nll * mask.reshape(-1)).sum() / mask.sum()).double()\n        total_tokens += 1\n"),
    Mutant("perplexity-counts-padding", "perplexity", "gpt/trainer.py",
           "total_tokens += int(mask.sum().item())", "total_tokens += mask.numel()"),
    Mutant("perplexity-nll-includes-padding", "perplexity", "gpt/trainer.py",
           "total_nll += (nll * mask.reshape(-1)).sum().double()", "total_nll += nll.sum().double()"),
    Mutant("lstm-ignores-state", "lstm-forward", "gpt/lstm.py",
           "out, state = self.lstm(x, state)", "out, state = self.lstm(x)"),
    Mutant("lstm-skips-the-recurrence", "lstm-forward", "gpt/lstm.py",
           "logits = self.head(self.drop(out))", "logits = self.head(self.drop(torch.tanh(x @ torch.ones(x.size(-1), out.size(-1)))))"),
    Mutant("recovery-forgets-the-bias", "logit-bias-recovery", "gpt/extras.py",
           "math.log(answer[i]) - math.log(other_p) - bias", "math.log(answer[i]) - math.log(other_p)"),
    Mutant("adamw-l2-in-the-gradient", "adamw-step", "gpt/optim.py",
           "torch._foreach_mul_(params, 1 - lr * weight_decay)", "torch._foreach_add_(grads, params, alpha=weight_decay)"),
    Mutant("adamw-no-bias-correction", "adamw-step", "gpt/optim.py",
           "step_sizes = [-lr / (1 - beta1 ** t) for t in steps]\n            bias2_sqrt = [math.sqrt(1 - beta2 ** t) for t in steps]",
           "step_sizes = [-lr for t in steps]\n            bias2_sqrt = [1.0 for t in steps]"),
    Mutant("adamw-decay-without-lr", "adamw-step", "gpt/optim.py",
           "torch._foreach_mul_(params, 1 - lr * weight_decay)", "torch._foreach_mul_(params, 1 - weight_decay)"),
    Mutant("adamw-eps-inside-the-correction", "adamw-step", "gpt/optim.py",
           "            torch._foreach_div_(denom, bias2_sqrt)\n            torch._foreach_add_(denom, eps)\n",
           "            torch._foreach_add_(denom, eps)\n            torch._foreach_div_(denom, bias2_sqrt)\n"),
    Mutant("lr-no-warmup", "lr-schedule", "gpt/optim.py",
           "    if it < cfg.warmup_iters:\n        return cfg.learning_rate * (it + 1) / cfg.warmup_iters\n",
           "    if it < cfg.warmup_iters:\n        return cfg.learning_rate\n"),
    Mutant("lr-warmup-starts-at-zero", "lr-schedule", "gpt/optim.py",
           "cfg.learning_rate * (it + 1) / cfg.warmup_iters", "cfg.learning_rate * it / cfg.warmup_iters"),
    Mutant("lr-cosine-to-zero", "lr-schedule", "gpt/optim.py",
           "    floor = cfg.learning_rate * cfg.min_lr_ratio\n", "    floor = 0.0\n"),
    Mutant("lr-progress-not-capped", "lr-schedule", "gpt/optim.py",
           "progress = min(1.0, (it - cfg.warmup_iters) / span)", "progress = (it - cfg.warmup_iters) / span"),
    Mutant("clip-per-parameter", "clip-grad-norm", "gpt/optim.py",
           "    torch._foreach_mul_(grads, factor)\n",
           "    for g, n in zip(grads, norms):\n        g.mul_(torch.clamp(max_norm / (n + 1e-6), max=1.0))\n"),
    Mutant("clip-without-the-min", "clip-grad-norm", "gpt/optim.py",
           "factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)", "factor = max_norm / (total + 1e-6)"),
    Mutant("clip-sums-the-norms", "clip-grad-norm", "gpt/optim.py",
           "total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))",
           "total = torch.stack([n.to(device) for n in norms]).sum()"),
    Mutant("train-step-no-clipping", "train-step", "gpt/trainer.py",
           "    if grad_clip > 0:\n        clip_grad_norm(", "    if False:\n        clip_grad_norm("),
    Mutant("train-step-clips-to-zero-when-off", "train-step", "gpt/trainer.py",
           "    if grad_clip > 0:\n        clip_grad_norm(model.parameters(), grad_clip)\n",
           "    clip_grad_norm(model.parameters(), grad_clip)\n"),
    Mutant("train-step-no-zero-grad", "train-step", "gpt/trainer.py",
           "    optimizer.zero_grad(set_to_none=True)\n", "\n"),
    Mutant("train-step-sums-micro-batches", "train-step", "gpt/trainer.py",
           "        loss = loss / n\n", ""),
]


def run_mutant(m: Mutant, workdir: Path) -> list[str]:
    """Apply m in a fresh copy; return the names of the graded tests of m.todo that failed."""
    if workdir.exists():
        shutil.rmtree(workdir)
    for src in collect(HANDOUT_FILES, include_hidden=True):
        dst = workdir / src.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    target = workdir / m.path
    text = target.read_text(encoding="utf-8")
    for old, new in ((m.old, m.new), *m.more):
        if text.count(old) != 1:
            raise SystemExit(f"mutant {m.name}: the text to replace occurs {text.count(old)} times in {m.path}")
        text = text.replace(old, new)
    target.write_text(text, encoding="utf-8")
    results = workdir / "results.json"
    # only the graded tests of the mutant's TODO: the others cannot be affected by its edit
    subprocess.run([sys.executable, "-m", "pytest", "-m", "graded", "-q", "-p", "no:cacheprovider", "--todo", m.todo,
                    "--gradescope-results", str(results)], cwd=workdir, capture_output=True, text=True, timeout=600)
    tests = json.loads(results.read_text())["tests"]
    return [t["name"].split(":")[0] for t in tests
            if t["status"] == "failed" and (t["name"].startswith(f"[{m.todo}]") or t["name"].startswith("collecting"))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="run one mutant by name")
    args = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if args.only in (None, m.name)]
    survivors = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        # each mutant runs in its own copy, so they can run side by side (one per core)
        caught_by = pool.map(lambda im: run_mutant(im[1], Path(tmp) / f"work{im[0]}"), enumerate(mutants))
        print("| mutant | TODO | caught by |\n| --- | --- | --- |")
        for m, caught in zip(mutants, caught_by):
            print(f"| {m.name} | {m.todo} | {', '.join(caught) if caught else 'SURVIVED'} |", flush=True)
            if not caught:
                survivors.append(m.name)
    if survivors:
        print(f"{len(survivors)} mutant(s) survived: {', '.join(survivors)}", file=sys.stderr)
        return 1
    print(f"all {len(mutants)} mutants caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
