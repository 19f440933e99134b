"""hw5 command line. `python main.py` with no arguments runs `train` with the defaults.

  train        corpus -> tokenizer -> model -> training -> plots, checkpoints, samples
  compare      time the same training steps on the CPU and on the GPU
  sample       complete prompts from a checkpoint (same as python generate.py)
  eval         loss, perplexity, word-level perplexity and bits per byte of a checkpoint
  experiments  the model-comparison grid (GPT vs LSTM, depth, optimizers)
  params       parameter counts and training-memory estimates

Every subcommand has --help.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from gpt.utils import (ArgumentParser, UserError, non_negative_float, non_negative_int, positive_float,
                       positive_int, probability, run_cli)

# The `auto` preset: what `python main.py` trains. The CPU profile finishes in about 5 minutes on a
# 2-core laptop; the GPU profile is the full homework run. See README.md for the measurements.
AUTO_PROFILES = {
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0, vocab_size=4096,
                batch_size=32, learning_rate=2e-3, warmup_iters=50, max_iters=600, eval_interval=300,
                precision="fp32"),
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, vocab_size=8192,
                batch_size=64, learning_rate=1e-3, warmup_iters=200, max_iters=5000, eval_interval=250,
                patience=4, precision="bf16"),
}


# -- shared flags ----------------------------------------------------------------------------

def add_data_args(p):
    g = p.add_argument_group("data")
    g.add_argument("--corpus", default=None, help="wikitext-2-raw-v1 (default), wikitext-2-v1, wikitext-103-raw-v1, "
                   "wikitext-103-v1, builtin, or a .txt file")
    g.add_argument("--data-dir", default=None, help="folder with wiki.{train,valid,test}.{raw,tokens} (no download)")
    g.add_argument("--tokenizer", choices=("bpe", "gpt2"), default="bpe",
                   help="bpe: train one on the train split (default); gpt2: GPT-2's files from --gpt2-dir")
    g.add_argument("--vocab-size", type=positive_int, default=None, help="BPE vocabulary size (auto: 4096 CPU, 8192 GPU)")
    g.add_argument("--gpt2-dir", default=None, help="folder with GPT-2's encoder.json and vocab.bpe")
    g.add_argument("--cache-dir", default="runs/cache", help="where tokenizers and token ids are cached")


def add_model_args(p):
    from gpt.model import PRESETS
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=("auto",) + tuple(PRESETS), default="auto",
                   help="model size; auto picks by device (default)")
    g.add_argument("--n-layer", type=positive_int)
    g.add_argument("--n-head", type=positive_int)
    g.add_argument("--n-embd", type=positive_int)
    g.add_argument("--block-size", type=positive_int, help="context length")
    g.add_argument("--dropout", type=non_negative_float)
    g.add_argument("--attn-impl", choices=("manual", "sdpa"), default="manual",
                   help="manual: the hand-written attention (default); sdpa: PyTorch's fused kernel")
    g.add_argument("--fast", action="store_true",
                   help="fused attention everywhere; on CUDA also bf16 autocast (fp16 where bf16 is missing), "
                        "torch.compile and TF32 matmuls")
    g.add_argument("--model", choices=("gpt", "lstm"), default="gpt", help="gpt (default) or the LSTM baseline")
    g.add_argument("--n-hidden", type=positive_int, default=512, help="LSTM hidden size (default 512)")


def add_train_args(p):
    g = p.add_argument_group("training")
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    g.add_argument("--max-iters", type=positive_int)
    g.add_argument("--epochs", type=positive_float, help="train for this many passes over the data (sets --max-iters)")
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--lr", type=positive_float, dest="learning_rate")
    g.add_argument("--optimizer", choices=("adamw", "adam", "sgd", "momentum"))
    g.add_argument("--weight-decay", type=non_negative_float)
    g.add_argument("--momentum", type=non_negative_float, help="for --optimizer momentum (default 0.9)")
    g.add_argument("--grad-clip", type=non_negative_float, help="max gradient norm; 0 turns it off")
    g.add_argument("--warmup-iters", type=non_negative_int)
    g.add_argument("--schedule", choices=("cosine", "constant"))
    g.add_argument("--eval-interval", type=positive_int)
    g.add_argument("--eval-batches", type=positive_int, help="limit each evaluation (default: whole split)")
    g.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--grad-accum", type=positive_int)
    g.add_argument("--seed", type=int)
    g.add_argument("--patience", type=positive_int, help="early stopping: evaluations without a new best")
    g.add_argument("--log-interval", type=positive_int)
    g.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    g.add_argument("--auto-resume", action="store_true",
                   help="continue from OUT_DIR/last.pt if it exists, else start (for requeued batch jobs)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    g.add_argument("--max-new-tokens", type=non_negative_int, default=60, help="length of the final samples")
    g.add_argument("--no-report", action="store_true",
                   help="skip the final whole-split report and the samples (used by experiments)")


# -- train ---------------------------------------------------------------------------------

def resolve_settings(args, device_type: str) -> tuple[dict, dict]:
    """Model and training settings: explicit flags > named preset > the auto profile > defaults."""
    from gpt.model import PRESETS
    profile = dict(AUTO_PROFILES["gpu" if device_type == "cuda" else "cpu"])
    if args.preset != "auto":
        n_layer, n_head, n_embd, block = PRESETS[args.preset]
        profile.update(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block)
    if getattr(args, "fast", False):
        args.attn_impl = "sdpa"
        if device_type == "cuda":
            profile.update(precision="bf16", compile=True)
    if profile.get("precision") == "bf16" and device_type == "cuda":
        import torch
        if not torch.cuda.is_bf16_supported():
            profile["precision"] = "fp16" if getattr(args, "fast", False) else "fp32"
    model_keys = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
    train_keys = ("max_iters", "batch_size", "learning_rate", "optimizer", "weight_decay", "momentum", "grad_clip",
                  "warmup_iters", "schedule", "eval_interval", "eval_batches", "precision", "compile",
                  "grad_accum", "seed", "patience", "log_interval")
    pick = lambda k: getattr(args, k) if getattr(args, k, None) is not None else profile.get(k)
    model = {k: pick(k) for k in model_keys}
    train = {k: v for k in train_keys if (v := pick(k)) is not None}
    return model, train


def prepare_data(args, vocab_size: int):
    """(corpus, tokenizer, ids per split): text -> tokenizer -> cached token ids."""
    from data import DEFAULT_CORPUS, encode_splits, get_tokenizer, load_corpus
    corpus = load_corpus(args.corpus or DEFAULT_CORPUS, args.data_dir)
    tok = get_tokenizer(corpus, args.tokenizer, vocab_size, args.gpt2_dir, args.cache_dir)
    ids = encode_splits(corpus, tok, args.cache_dir)
    return corpus, tok, ids


def cmd_train(args) -> int:
    import torch
    from data import WindowBatches
    from generate import HANDOUT_PROMPTS, complete
    from gpt.trainer import DistInfo, TrainConfig, Trainer, evaluate, load_checkpoint, model_from_checkpoint
    from gpt.utils import atomic_write_bytes, choose_device, enable_tf32, ensure_dir, seed_everything

    device = choose_device(args.device)
    out_dir = ensure_dir(args.out_dir)
    model_settings, train_settings = resolve_settings(args, device.type)
    if args.fast and device.type == "cuda":
        enable_tf32()
    vocab = args.vocab_size or AUTO_PROFILES["gpu" if device.type == "cuda" else "cpu"]["vocab_size"]
    t0 = time.perf_counter()
    corpus, tok, ids = prepare_data(args, vocab)
    print(f"corpus: {corpus.name}; tokenizer: {args.tokenizer}, vocab {tok.vocab_size}; tokens: "
          + ", ".join(f"{s} {len(a):,}" for s, a in ids.items()) + f" ({time.perf_counter() - t0:.1f} s)")
    if args.epochs is not None:   # one epoch = every training window once
        windows = (len(ids["train"]) - 1) // model_settings["block_size"]
        per_iter = train_settings.get("batch_size", 32) * train_settings.get("grad_accum", 1)
        train_settings["max_iters"] = max(1, math.ceil(args.epochs * (windows // per_iter)))
    try:
        resume = args.resume or (args.auto_resume and os.path.exists(os.path.join(out_dir, "last.pt")))
        tcfg = TrainConfig(device=str(device), out_dir=out_dir, resume=resume,
                           progress=not args.no_progress, **train_settings)
        seed_everything(tcfg.seed)     # the initial weights too depend on --seed (and agree across processes)
        model, cfg = build_model(args, tok.vocab_size, model_settings)
    except ValueError as e:
        raise UserError(str(e)) from None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {describe(args.model, cfg)}: {n_params:,} parameters; device {device}; {tcfg.max_iters} "
          f"iterations of {tcfg.batch_size * tcfg.grad_accum} x {cfg.block_size} tokens")
    dist = DistInfo.from_env()   # under torchrun: this process' rank among world_size
    batches = WindowBatches(ids["train"], cfg.block_size, tcfg.batch_size * dist.world_size, tcfg.seed,
                            rank=dist.rank, world_size=dist.world_size)
    extra = {"corpus": args.corpus, "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
             "tokenizer": args.tokenizer, "gpt2_dir": args.gpt2_dir}
    trainer = Trainer(model, tcfg, batches, ids["valid"], tok, extra)
    summary = trainer.train()
    if not dist.is_main:
        return 0
    write_summary(out_dir, args, cfg, tcfg, n_params, summary)
    if args.no_report:
        return 0

    best_ckpt = load_checkpoint(os.path.join(out_dir, "best.pt"), device)
    best, tok = model_from_checkpoint(best_ckpt, device)
    res = whole_split_result(out_dir, best_ckpt["iteration"], len(ids["valid"]) - 1)
    if res is None:   # the trainer evaluated only part of the split (--eval-batches): do it whole now
        res = evaluate(best, ids["valid"], cfg.block_size, tcfg.batch_size, device)
    words, nbytes = len_words_bytes(corpus.texts["valid"])
    print(f"done in {summary['train_seconds']:.0f} s of training ({time.perf_counter() - t0:.0f} s in all). "
          f"Best checkpoint on the whole validation split: loss {res.loss:.4f}, perplexity {res.ppl:.2f}, "
          f"word-level perplexity {math.exp(res.nll / words):.2f}, bits per byte {res.nll / (math.log(2) * nbytes):.4f}")
    lines = []
    for prompt in HANDOUT_PROMPTS:
        text = complete(best, tok, prompt, max_new_tokens=args.max_new_tokens, seed=tcfg.seed)[0]
        lines.append(f"{prompt!r} ->{prompt}{text}")
    atomic_write_bytes(os.path.join(out_dir, "samples.txt"), ("\n\n".join(lines) + "\n").encode("utf-8"))
    print("\n" + "\n\n".join(lines))
    print(f"\nwrote {out_dir}/: metrics.jsonl, loss.png, ppl.png, best.pt, last.pt, samples.txt")
    return 0


def build_model(args, vocab_size: int, settings: dict):
    """(model, config) for --model gpt or lstm from the resolved settings."""
    from gpt.lstm import LSTMConfig, LSTMLanguageModel
    from gpt.model import GPT, GPTConfig
    if args.model == "lstm":
        cfg = LSTMConfig(vocab_size=vocab_size, block_size=settings["block_size"], n_layer=settings["n_layer"],
                         n_embd=settings["n_embd"], n_hidden=args.n_hidden, dropout=settings["dropout"])
        return LSTMLanguageModel(cfg), cfg
    cfg = GPTConfig(vocab_size=vocab_size, attn_impl=args.attn_impl, **settings)
    return GPT(cfg), cfg


def describe(kind: str, cfg) -> str:
    if kind == "lstm":
        return f"LSTM, {cfg.n_layer} layers, embedding {cfg.n_embd}, hidden {cfg.n_hidden}, context {cfg.block_size}"
    return f"GPT, {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, context {cfg.block_size}"


def write_summary(out_dir: str, args, cfg, tcfg, n_params: int, summary: dict) -> None:
    """summary.json: the run's headline numbers (read by `experiments`)."""
    import json
    from gpt.utils import atomic_write_bytes, read_jsonl
    records = read_jsonl(os.path.join(out_dir, "metrics.jsonl"))
    evals = [r for r in records if r["kind"] == "eval"]
    train = [r for r in records if r["kind"] == "train"]
    best = min(evals, key=lambda r: r["valid_ppl"]) if evals else None
    at_best = [r for r in train if best and r["iter"] <= best["iter"]]
    out = {"model": args.model, "n_layer": cfg.n_layer, "optimizer": tcfg.optimizer, "parameters": n_params,
           "best_valid_ppl": best["valid_ppl"] if best else None, "best_iter": best["iter"] if best else None,
           "train_ppl_at_best": at_best[-1]["ppl"] if at_best else None,
           "iterations": summary["iterations"], "train_seconds": round(summary["train_seconds"], 2),
           "tokens_per_sec": round(sum(r["tokens_per_sec"] for r in train) / len(train), 1) if train else None,
           "peak_gpu_mem_mb": max((r.get("peak_gpu_mem_mb", 0) for r in evals), default=0) or None,
           "stopped_early": summary["stopped_early"]}
    atomic_write_bytes(os.path.join(out_dir, "summary.json"), json.dumps(out, indent=1).encode())


def whole_split_result(out_dir: str, iteration: int, n_tokens: int):
    """The trainer's evaluation at `iteration` from metrics.jsonl, if it covered all n_tokens."""
    from gpt.trainer import EvalResult
    from gpt.utils import read_jsonl
    for r in read_jsonl(os.path.join(out_dir, "metrics.jsonl")):
        if r["kind"] == "eval" and r["iter"] == iteration and r["valid_tokens"] == n_tokens:
            return EvalResult(r["valid_nll"], r["valid_tokens"], r["valid_loss"], r["valid_ppl"])
    return None


def len_words_bytes(text: str) -> tuple[int, int]:
    from data import count_words
    return count_words(text), len(text.encode("utf-8"))


# -- eval ------------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    from data import DEFAULT_CORPUS, encode_splits, load_corpus
    from gpt.trainer import evaluate, load_checkpoint, model_from_checkpoint
    from gpt.utils import choose_device
    device = choose_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, map_location=device)
    model, tok = model_from_checkpoint(ckpt, device)
    if args.corpus or args.data_dir:          # data given on the command line
        corpus = load_corpus(args.corpus or DEFAULT_CORPUS, args.data_dir)
    else:                                     # else the data the checkpoint was trained on
        extra = ckpt.get("extra") or {}
        corpus = load_corpus(extra.get("corpus") or DEFAULT_CORPUS, extra.get("data_dir"))
    ids = encode_splits(corpus, tok, args.cache_dir)[args.split]
    block = model.config.block_size
    res = evaluate(model, ids, block, args.batch_size, device)
    words, nbytes = len_words_bytes(corpus.texts[args.split])
    print(f"checkpoint: {args.checkpoint} (iteration {ckpt['iteration']})")
    print(f"data: {corpus.name}, split {args.split}: {res.tokens:,} tokens, {words:,} words, {nbytes:,} bytes; "
          f"windows of {block} tokens with stride {block}")
    print(f"loss {res.loss:.4f} nats/token")
    print(f"token perplexity {res.ppl:.2f}")
    print(f"word-level perplexity {math.exp(res.nll / words):.2f}")
    print(f"bits per byte {res.nll / (math.log(2) * nbytes):.4f}")
    return 0


# -- compare ---------------------------------------------------------------------------------

def time_training_steps(device, cfg, batch_size: int, steps: int, warmup: int) -> float:
    """Seconds per training step (forward, backward, AdamW) on random tokens, warm-up excluded."""
    import torch
    from gpt.model import GPT
    from gpt.trainer import TrainConfig, make_optimizer, train_step
    from gpt.utils import synchronize
    torch.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = make_optimizer(model, TrainConfig(), fused=device.type == "cuda")
    x = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size + 1), device=device)
    batch = [(x[:, :-1], x[:, 1:])]
    for _ in range(warmup):
        train_step(model, opt, batch, 1.0)
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, opt, batch, 1.0)
    synchronize(device)
    return (time.perf_counter() - t0) / steps


def cmd_compare(args) -> int:
    import torch
    from gpt.model import GPTConfig
    cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab_size, block_size=args.block_size, dropout=0.0)
    print(f"timing {args.steps} training steps of {args.preset} (batch {args.batch_size} x {args.block_size} "
          f"tokens, vocab {args.vocab_size}), after {args.warmup} warm-up steps")
    cpu = time_training_steps(torch.device("cpu"), cfg, args.batch_size, args.steps, args.warmup)
    tokens = args.batch_size * args.block_size
    print(f"cpu:  {cpu * 1000:9.1f} ms/step  {tokens / cpu:12,.0f} tokens/s  ({torch.get_num_threads()} threads)")
    if torch.cuda.is_available():
        gpu_name, dev = torch.cuda.get_device_name(0), torch.device("cuda")
    elif torch.backends.mps.is_available():
        gpu_name, dev = "Apple MPS", torch.device("mps")
    else:
        print("gpu:  no GPU available on this machine (no CUDA or MPS device); only the CPU was timed")
        return 0
    gpu = time_training_steps(dev, cfg, args.batch_size, args.steps, args.warmup)
    print(f"gpu:  {gpu * 1000:9.1f} ms/step  {tokens / gpu:12,.0f} tokens/s  ({gpu_name})")
    print(f"speed-up: {cpu / gpu:.1f}x")
    return 0


# -- experiments ------------------------------------------------------------------------------

QUICK = ["--vocab-size", "512", "--block-size", "32", "--n-embd", "32", "--n-head", "2", "--n-hidden", "64",
         "--max-iters", "40", "--eval-interval", "20", "--eval-batches", "20", "--device", "cpu"]


def cmd_experiments(args) -> int:
    import torch
    from gpt.experiments import default_grid, load_grid, run_grid
    runs = load_grid(args.grid) if args.grid else default_grid()
    if args.only:
        wanted = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = sorted(set(wanted) - {r.id for r in runs})
        if unknown:
            raise UserError(f"--only names unknown runs {unknown}; the runs are: {', '.join(r.id for r in runs)}")
        runs = [r for r in runs if r.id in wanted]
    flags = ["--lr", str(args.lr), "--momentum", str(args.momentum), "--weight-decay", str(args.weight_decay),
             "--batch-size", str(args.batch_size), "--cache-dir", args.cache_dir]
    for name in ("corpus", "data_dir", "tokenizer", "gpt2_dir"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    if args.quick:
        flags += QUICK
    else:
        for name in ("vocab_size", "block_size", "n_embd", "n_head", "n_hidden", "max_iters", "epochs",
                     "eval_interval", "eval_batches"):
            value = getattr(args, name)
            if value is not None:
                flags += [f"--{name.replace('_', '-')}", str(value)]
        flags += ["--device", args.device]
    gpu = not args.quick and args.device in ("auto", "cuda") and torch.cuda.is_available()
    print(run_grid(runs, args.out_dir, flags, gpu))
    return 0


# -- params ---------------------------------------------------------------------------------

def cmd_params(args) -> int:
    from gpt.model import GPTConfig, count_parameters
    from gpt.utils import estimate_training_memory
    custom = [args.n_layer, args.n_head, args.n_embd]
    try:
        if any(v is not None for v in custom):
            if not all(v is not None for v in custom):
                raise UserError("give all of --n-layer, --n-head and --n-embd for a custom configuration")
            configs = [("custom", GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size or 1024,
                                            n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd))]
        else:
            configs = [(name, GPTConfig.preset(name, vocab_size=args.vocab_size, block_size=args.block_size))
                       for name in args.preset]
    except ValueError as e:
        raise UserError(str(e)) from None
    gb = lambda x: f"{x / 1e9:9.3f}"
    for name, cfg in configs:
        T = args.seq_len or cfg.block_size
        print(f"{name}: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, vocab {cfg.vocab_size}, "
              f"context {cfg.block_size}")
        print(f"  parameters: {count_parameters(cfg):,} total, {count_parameters(cfg, non_embedding=True):,} "
              f"non-embedding")
        print(f"  training memory, GB (1e9 bytes), batch {args.batch_size} x {T} tokens, optimizer {args.optimizer}:")
        print(f"  {'precision':<9} {'attention':<9} {'params':>9} {'grads':>9} {'optim':>9} {'w.copies':>9} "
              f"{'activ.':>9} {'logits':>9} {'logit gr.':>9} {'peak':>9}")
        for precision in ("fp32", "bf16"):
            for attn in ("manual", "sdpa"):
                m = estimate_training_memory(cfg, args.batch_size, T, args.optimizer, precision, attn)
                print(f"  {precision:<9} {attn:<9} {gb(m['parameters'])} {gb(m['gradients'])} "
                      f"{gb(m['optimizer_state'])} {gb(m['weight_copies'])} {gb(m['activations'])} "
                      f"{gb(m['logits'])} {gb(m['logit_gradients'])} {gb(m['total'])}")
        print()
    print("formulas: total = V*C + T*C + L*(12*C^2 + 13*C) + 2*C (tied output layer); states 4N weights + 4N grads\n"
          "+ optimizer (sgd 0, momentum 4N, adam(w) 8N) + 2N bf16 weight copies; activations per layer\n"
          "s*b*h*(16w + 4 for fp32 LayerNorm inputs under autocast + 2 masks) + a*s*s*b*(w + mask + w),\n"
          "w bytes per value (Korthikanti et al. 2022: 34sbh + 5as^2b at w = 2; the a*s*s*b term is the\n"
          "stored T x T attention, absent with the fused kernel); logits: the fp32 log-softmax b*s*V*4, and\n"
          "its gradients b*s*V*8 when backward starts.\n"
          "peak = weights + optimizer + max(copies + activations + logits + logit gradients, gradients), on CUDA.\n"
          "See gpt/utils.py estimate_training_memory; benchmarks/memory.py measures a real step against it.")
    return 0


# -- the parser ------------------------------------------------------------------------------

def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="main.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)

    t = sub.add_parser("train", help="train a GPT on WikiText (the main job)",
                       description="Train a GPT: corpus, tokenizer, model, training, plots, checkpoints, samples.")
    add_data_args(t)
    add_model_args(t)
    add_train_args(t)
    t.add_argument("--out-dir", default="runs/train", help="output folder (default runs/train)")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("compare", help="time training steps on CPU and GPU",
                       description="Time identical training steps on the CPU and on the GPU and print the speed-up.")
    c.add_argument("--steps", type=positive_int, default=50, help="timed steps (default 50)")
    c.add_argument("--warmup", type=non_negative_int, default=3, help="untimed warm-up steps (default 3)")
    c.add_argument("--preset", default="gpt-mini", help="model preset (default gpt-mini)")
    c.add_argument("--block-size", type=positive_int, default=128)
    c.add_argument("--batch-size", type=positive_int, default=16)
    c.add_argument("--vocab-size", type=positive_int, default=8192)
    c.add_argument("--out-dir", default="runs/compare", help="unused; accepted for symmetry")
    c.set_defaults(func=cmd_compare)

    from generate import add_sampling_args, run_sampling
    s = sub.add_parser("sample", help="complete prompts from a checkpoint",
                       description="Complete prompts from a checkpoint (same flags as generate.py).")
    add_sampling_args(s)
    s.add_argument("--out-dir", default="runs/sample", help="unused; accepted for symmetry")
    s.set_defaults(func=run_sampling)

    e = sub.add_parser("eval", help="perplexity and bits per byte of a checkpoint",
                       description="Token loss, token perplexity, word-level perplexity and bits per byte of a "
                                   "checkpoint on a whole split.")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--split", choices=("valid", "test", "train"), default="valid")
    e.add_argument("--corpus", default=None, help="default: the checkpoint's training corpus")
    e.add_argument("--data-dir", default=None, help="default: the checkpoint's training data folder")
    e.add_argument("--batch-size", type=positive_int, default=32)
    e.add_argument("--device", default="auto")
    e.add_argument("--cache-dir", default="runs/cache")
    e.add_argument("--out-dir", default="runs/eval", help="unused; accepted for symmetry")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("experiments", help="GPT vs LSTM, depth and optimizer comparison grid",
                       description="Train the comparison grid (default: LSTM and GPT with 1 layer under adam, adamw, "
                                   "sgd and momentum; 2 and 4 layers under adamw), then write results.md, results.csv "
                                   "and comparison plots.")
    add_data_args(x)
    x.add_argument("--quick", action="store_true", help="tiny sizes on the CPU: checks the plumbing in minutes")
    x.add_argument("--grid", help="a JSON file with the runs to make instead of the default grid")
    x.add_argument("--only", help="comma-separated run ids to make")
    x.add_argument("--lr", type=positive_float, default=1e-3)
    x.add_argument("--momentum", type=non_negative_float, default=0.9)
    x.add_argument("--weight-decay", type=non_negative_float, default=5e-4)
    x.add_argument("--batch-size", type=positive_int, default=16)
    x.add_argument("--max-iters", type=positive_int)
    x.add_argument("--epochs", type=positive_float)
    x.add_argument("--eval-interval", type=positive_int)
    x.add_argument("--eval-batches", type=positive_int)
    x.add_argument("--block-size", type=positive_int)
    x.add_argument("--n-embd", type=positive_int)
    x.add_argument("--n-head", type=positive_int)
    x.add_argument("--n-hidden", type=positive_int)
    x.add_argument("--device", default="auto")
    x.add_argument("--out-dir", default="runs/experiments")
    x.set_defaults(func=cmd_experiments)

    from gpt.model import PRESETS
    pa = sub.add_parser("params", help="parameter counts and training-memory estimates",
                        description="Exact parameter counts and a training-memory estimate (parameters, gradients, "
                                    "optimizer state, activations, logits) for presets or a given configuration.")
    pa.add_argument("--preset", nargs="+", choices=tuple(PRESETS), default=["gpt-nano", "gpt2", "gpt3"])
    pa.add_argument("--n-layer", type=positive_int)
    pa.add_argument("--n-head", type=positive_int)
    pa.add_argument("--n-embd", type=positive_int)
    pa.add_argument("--vocab-size", type=positive_int, default=50257)
    pa.add_argument("--block-size", type=positive_int, default=None, help="default: the preset's")
    pa.add_argument("--batch-size", type=positive_int, default=8)
    pa.add_argument("--seq-len", type=positive_int, default=None, help="tokens per sequence (default: block size)")
    pa.add_argument("--optimizer", choices=("adamw", "adam", "sgd", "momentum"), default="adamw")
    pa.add_argument("--out-dir", default="runs/params", help="unused; accepted for symmetry")
    pa.set_defaults(func=cmd_params)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        argv = ["train"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("choose a command")
    return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
