"""hw5 command line. `python main.py` with no arguments runs `train` with the defaults.

  train        corpus -> tokenizer -> model -> training -> plots, checkpoints, samples
  compare      time the same training steps on the CPU and on the GPU
  sample       complete prompts from a checkpoint (same as python generate.py); settings and models side by side
  eval         loss, perplexity, word-level perplexity and bits per byte of a checkpoint
  attention    pictures of the attention weights of every layer and head on a prompt
  experiments  the model-comparison grid (GPT vs LSTM, depth, optimizers)
  params       parameter counts and training-memory estimates

Every subcommand has --help.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import numpy as np
import torch

from app.data import DEFAULT_CORPUS, SPLITS, encode_splits, get_tokenizer, load_corpus
from generate import (HANDOUT_PROMPTS, add_sampling_args, add_source_args, complete, load_model, prompt_ids,
                      prompt_seed, run_sampling)
from app.attention_maps import attention_weights, plot_attention
from gpt.checkpoint import MODEL_KINDS, CheckpointError, load_checkpoint, model_from_checkpoint
from app.cli import (ArgumentParser, UserError, flag_errors, non_negative_float, non_negative_int, positive_float,
                     positive_int, run_cli, seed_int)
from gpt.distributed import DistInfo, Preempted
from app.experiments import RunFailed, default_grid, load_grid, run_grid
from gpt.metrics import describe_metrics, split_metrics
from gpt.model import ATTN_IMPLS, GPT, GPTConfig
from gpt.pretrained import PretrainedError, load_gpt2, with_block_size
from app.profiles import FINE_TUNE_LR, auto_profile, describe, run_spec
from gpt.sizing import MEMORY_FORMULAS, PRESETS, check_fits, memory_report
from gpt.trainer import OPTIMIZERS, PRECISIONS, SCHEDULES, DivergedError, TrainConfig, Trainer, evaluate, \
    time_training_steps
from app.sampling_view import visible
from gpt.utils import atomic_write_bytes, choose_device, enable_tf32, ensure_dir, seed_everything
from gpt.windows import WindowBatches


# -- train ---------------------------------------------------------------------------------

def prepare_data(args, vocab_size: int, tok=None):
    """(corpus, tokenizer, ids per split): text -> tokenizer (unless given) -> cached token ids."""
    corpus = load_corpus(args.corpus or DEFAULT_CORPUS, args.data_dir)
    given = tok is not None
    with flag_errors("--cache-dir", "choose a folder you can write to", kinds=(OSError,)):
        tok = tok or get_tokenizer(corpus, args.tokenizer, vocab_size, args.gpt2_dir, args.cache_dir)
        ids = encode_splits(corpus, tok, args.cache_dir)
    if not given and args.tokenizer == "bpe" and tok.vocab_size < vocab_size:
        print(f"notice: --vocab-size {vocab_size:,} is more than this corpus gives: its BPE ran out of pairs "
              f"to merge at {tok.vocab_size:,} tokens, so the model uses {tok.vocab_size:,}", file=sys.stderr)
    return corpus, tok, ids


def setup_run(args, device, ids, vocab_size: int, pretrained=None):
    """(model, config, TrainConfig) from the flags; ValueError (a bad combination) names no flag.
    pretrained: a GPT to fine-tune (--init-from) instead of a new model."""
    spec = run_spec(vars(args), device, len(ids["train"]), vocab_size, pretrained and pretrained.config)
    seed_everything(spec.train.seed)   # the initial weights depend on --seed (and agree across processes)
    if pretrained is not None:
        pretrained = with_block_size(pretrained, spec.model.block_size, dropout=spec.model.dropout)
    if spec.kind == "gpt":     # refuse a run that cannot fit before allocating it
        check_fits(spec.model, spec.train.batch_size, spec.train.optimizer, spec.train.precision, device)
    model = pretrained if pretrained is not None else MODEL_KINDS[spec.kind][0](spec.model)
    return model, model.config, spec.train


def pretrained_for_training(args):
    """(GPT-2 model, its tokenizer) for train --init-from, or (None, None); the flags that would change the
    architecture are refused (the weights fix it), --block-size may shorten the context."""
    if not args.init_from:
        return None, None
    fixed = {"--n-layer": args.n_layer, "--n-head": args.n_head, "--n-embd": args.n_embd,
             "--preset": None if args.preset == "auto" else args.preset,
             "--model": None if args.model == "gpt" else args.model,
             "--vocab-size": args.vocab_size}
    for flag, value in fixed.items():
        if value is not None:
            raise UserError(f"{flag} cannot be combined with --init-from: the pretrained model fixes it")
    with flag_errors("--init-from", kinds=(PretrainedError,)):
        return load_gpt2(args.init_from, args.gpt2_dir)


def cmd_train(args) -> int:
    dist = DistInfo.from_env()   # under torchrun: this process' rank among world_size
    with flag_errors("--device", "use --device auto or cpu"):
        device = choose_device(args.device)
    with flag_errors("--out-dir", "choose another --out-dir", kinds=(OSError,)):
        ensure_dir(args.out_dir)
    if args.fast and device.type == "cuda":
        enable_tf32()
    t0 = time.perf_counter()
    pretrained, gpt2_tok = pretrained_for_training(args)
    corpus, tok, ids = prepare_data(args, args.vocab_size or auto_profile(device.type)["vocab_size"], gpt2_tok)
    print(f"corpus: {corpus.name}; tokenizer: {'gpt2' if gpt2_tok else args.tokenizer}, vocab {tok.vocab_size}; "
          "tokens: " + ", ".join(f"{s} {len(a):,}" for s, a in ids.items()) + f" ({time.perf_counter() - t0:.1f} s)")
    with flag_errors("the model and training flags", kinds=(ValueError,)):
        model, cfg, tcfg = setup_run(args, device, ids, tok.vocab_size, pretrained)
        batches = WindowBatches(ids["train"], cfg.block_size, tcfg.batch_size * dist.world_size, tcfg.seed,
                                rank=dist.rank, world_size=dist.world_size)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {describe(cfg)}{f' from {args.init_from}' if args.init_from else ''}: {n_params:,} parameters; "
          f"device {device}; {tcfg.max_iters} "
          f"iterations of {tcfg.batch_size * tcfg.grad_accum} x {cfg.block_size} tokens")
    trainer = Trainer(model, tcfg, batches, ids["valid"], tok, data_record(args, corpus, gpt2_tok is not None))
    with flag_errors("--out-dir", "free some space or choose another --out-dir", kinds=(OSError,)):
        summary = run_training(trainer)
        if dist.is_main:
            write_summary(args.out_dir, args.model, cfg, tcfg, n_params, summary, corpus.name)
            if not args.no_report:
                report_run(args, corpus, ids, summary, tcfg, device, t0)
    return 0


def data_record(args, corpus, pretrained_tokenizer: bool = False) -> dict:
    """How the data was made, stored in every checkpoint: eval finds the corpus again from any folder
    (paths are absolute), and --resume refuses other data (corpus_key is a hash of the text)."""
    is_file = args.corpus is not None and os.path.isfile(args.corpus)
    return {"corpus": os.path.abspath(args.corpus) if is_file else args.corpus,
            "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
            "tokenizer": "gpt2" if pretrained_tokenizer else args.tokenizer,
            "gpt2_dir": os.path.abspath(args.gpt2_dir) if args.gpt2_dir else None, "init_from": os.path.abspath(args.init_from) if args.init_from and os.path.isdir(args.init_from) else args.init_from,
            "corpus_key": corpus.key, "corpus_name": corpus.name}


def run_training(trainer) -> dict:
    with flag_errors("--resume", "resume with the same flags, or use another --out-dir",
                     kinds=(FileNotFoundError, CheckpointError)):
        try:
            return trainer.train()
        except DivergedError as e:
            raise UserError(f"{e}. Lower --lr, keep --grad-clip on, or use --precision fp32") from None
        except Preempted as e:
            e.args = (f"{e}. Resume with the same command plus --resume (or --auto-resume)",)
            raise


def write_summary(out_dir: str, kind: str, cfg, tcfg, n_params: int, summary: dict, corpus_name: str) -> None:
    """summary.json: the run's headline numbers (read by `experiments`)."""
    keys = ("best_valid_ppl", "best_iter", "train_ppl_at_best", "iterations", "train_seconds", "tokens_per_sec",
            "peak_gpu_mem_mb", "stopped_early")
    out = {"model": kind, "corpus": corpus_name, "n_layer": cfg.n_layer, "optimizer": tcfg.optimizer,
           "parameters": n_params,
           **{k: summary[k] for k in keys}}
    out["train_seconds"] = round(out["train_seconds"], 2)
    atomic_write_bytes(os.path.join(out_dir, "summary.json"), json.dumps(out, indent=1).encode())


def report_run(args, corpus, ids, summary: dict, tcfg, device, t0: float) -> None:
    """The best checkpoint's metrics on the whole validation split, and its completions of the handout prompts."""
    best_ckpt = load_checkpoint(os.path.join(args.out_dir, "best.pt"), device)
    best, tok = model_from_checkpoint(best_ckpt, device)
    if summary["best_valid_tokens"] == len(ids["valid"]) - 1:   # the trainer's evaluation covered the whole split
        nll, tokens = summary["best_valid_nll"], summary["best_valid_tokens"]
    else:                                                      # it saw part of it (--eval-batches): do it whole now
        res = evaluate(best, ids["valid"], best.config.block_size, tcfg.batch_size, device)
        nll, tokens = res.nll, res.tokens
    stats = corpus.stats("valid")
    metrics = split_metrics(nll, tokens, stats.words, stats.bytes)
    print(f"done in {summary['train_seconds']:.0f} s of training ({time.perf_counter() - t0:.0f} s in all). "
          f"Best checkpoint on the whole validation split: {describe_metrics(metrics)}")
    lines = []
    for k, prompt in enumerate(HANDOUT_PROMPTS):
        text = complete(best, tok, prompt, max_new_tokens=args.max_new_tokens, seed=prompt_seed(tcfg.seed, k))[0]
        lines.append(f"{prompt!r} ->{prompt}{text}")
    atomic_write_bytes(os.path.join(args.out_dir, "samples.txt"), ("\n\n".join(lines) + "\n").encode("utf-8"))
    print("\n" + "\n\n".join(lines))
    print(f"\nwrote {args.out_dir}/: metrics.jsonl, loss.png, ppl.png, accuracy.png, best.pt, last.pt, samples.txt, summary.json")


# -- eval ------------------------------------------------------------------------------------

def cmd_eval(args) -> int:
    model, tok, ckpt = load_model(args)
    extra = (ckpt or {}).get("extra") or {}
    if args.corpus or args.data_dir:          # data given on the command line
        corpus = load_corpus(args.corpus or DEFAULT_CORPUS, args.data_dir)
    else:                                     # else the data the checkpoint was trained on
        corpus = load_corpus(extra.get("corpus") or DEFAULT_CORPUS, extra.get("data_dir"))
    with flag_errors("--cache-dir", "choose a folder you can write to", kinds=(OSError,)):
        ids = encode_splits(corpus, tok, args.cache_dir)[args.split]
    block = model.config.block_size
    stride = args.stride or block
    if stride > block:
        raise UserError(f"--stride {stride} is longer than the model's context (block_size {block})")
    with flag_errors("--split", kinds=(ValueError,)):
        res = evaluate(model, ids, block, args.batch_size, next(model.parameters()).device, stride=stride)
    stats = corpus.stats(args.split)
    m = split_metrics(res.nll, res.tokens, stats.words, stats.bytes)
    if ckpt is not None:
        print(f"checkpoint: {args.checkpoint} (iteration {ckpt['iteration']})")
    else:
        print(f"model: {args.init_from} (pretrained weights, GPT-2's tokenizer)")
    print(f"data: {corpus.name}, split {args.split}: {m['tokens']:,} tokens, {m['words']:,} words, {m['bytes']:,} "
          f"bytes; windows of {block} tokens with stride {stride}"
          + (f" (each token sees at least {block - stride} tokens of context)" if stride < block else ""))
    print(f"loss {m['loss']:.4f} nats/token")
    print(f"token perplexity {m['ppl']:.2f}")
    print(f"word-level perplexity {m['word_ppl']:.2f}")
    print(f"bits per byte {m['bits_per_byte']:.4f}")
    print(f"token accuracy {res.accuracy:.4f} (argmax = next token)")
    with flag_errors("--out-dir", "choose another --out-dir", kinds=(OSError,)):
        path = os.path.join(ensure_dir(args.out_dir), f"eval-{args.split}.json")
        record = {"checkpoint": os.path.abspath(args.checkpoint) if args.checkpoint else None,
                  "init_from": args.init_from, "iteration": ckpt["iteration"] if ckpt else None,
                  "corpus": corpus.name, "split": args.split, "stride": stride, **m, "accuracy": res.accuracy}
        atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    print(f"wrote {path}")
    return 0


# -- attention -------------------------------------------------------------------------------

def cmd_attention(args) -> int:
    model, tok, _ = load_model(args)
    if not isinstance(model, GPT):
        raise UserError(f"{args.checkpoint} holds an LSTM, which has no attention to show")
    cfg = model.config
    layers = chosen(args.layer, cfg.n_layer, "--layer")
    heads = chosen(args.head, cfg.n_head, "--head")
    ids = prompt_ids(tok, args.prompt, cfg.block_size)
    idx = torch.tensor([ids], device=next(model.parameters()).device)
    weights = attention_weights(model, idx)[:, 0]                                 # (n_layer, n_head, T, T)
    weights = weights[layers][:, heads].cpu().numpy()                             # (layers, heads, T, T)
    tokens = [visible(tok.decode([i])) for i in ids]
    with flag_errors("--out-dir", "choose another --out-dir", kinds=(OSError,)):
        out = ensure_dir(args.out_dir)
        buf = io.BytesIO()
        np.save(buf, weights)
        atomic_write_bytes(os.path.join(out, "attention.npy"), buf.getvalue())
        meta = {"model": args.checkpoint or args.init_from, "prompt": args.prompt, "ids": ids, "tokens": tokens,
                "layers": layers, "heads": heads, "shape": ["layer", "head", "query", "key"]}
        atomic_write_bytes(os.path.join(out, "attention.json"), json.dumps(meta, indent=1, ensure_ascii=False).encode())
        plot_attention(os.path.join(out, "attention.png"), weights, tokens, layers, heads,
                       f"{args.checkpoint or args.init_from}: attention on {args.prompt!r}")
    print(f"{len(tokens)} tokens: {' '.join(tokens)}")
    for r, layer in enumerate(layers):   # where each head looks from the last token, in one line per layer
        print(f"layer {layer}: last token attends most to " + ", ".join(
            f"h{h}:{tokens[int(weights[r, c, -1].argmax())]}" for c, h in enumerate(heads)))
    print(f"wrote {out}/: attention.png, attention.npy ({' x '.join(map(str, weights.shape))}: layer, head, "
          f"query, key), attention.json")
    return 0


def chosen(values: list[int] | None, n: int, flag: str) -> list[int]:
    """The layers (or heads) asked for, all of them by default; out of range is a UserError."""
    if values is None:
        return list(range(n))
    bad = [v for v in values if v >= n]
    if bad:
        raise UserError(f"{flag} {bad[0]} does not exist: the model has {n} (numbered 0..{n - 1})")
    return values


# -- compare ---------------------------------------------------------------------------------

def cmd_compare(args) -> int:
    with flag_errors("--preset", kinds=(ValueError,)):
        cfg = GPTConfig.preset(args.preset, vocab_size=args.vocab_size, block_size=args.block_size, dropout=0.0)
    print(f"timing {args.steps} training steps of {args.preset} (batch {args.batch_size} x {args.block_size} "
          f"tokens, vocab {args.vocab_size}), after {args.warmup} warm-up steps")
    tokens = args.batch_size * args.block_size
    cpu = time_on(torch.device("cpu"), cfg, args)
    print(f"cpu:  {cpu * 1000:9.1f} ms/step  {tokens / cpu:12,.0f} tokens/s  ({torch.get_num_threads()} threads)")
    if torch.cuda.is_available():
        gpu_name, dev = torch.cuda.get_device_name(0), torch.device("cuda")
    elif torch.backends.mps.is_available():
        gpu_name, dev = "Apple MPS", torch.device("mps")
    else:
        print("gpu:  no GPU available on this machine (no CUDA or MPS device); only the CPU was timed")
        return 0
    gpu = time_on(dev, cfg, args)
    print(f"gpu:  {gpu * 1000:9.1f} ms/step  {tokens / gpu:12,.0f} tokens/s  ({gpu_name})")
    print(f"speed-up: {cpu / gpu:.1f}x")
    return 0


def time_on(device, cfg, args) -> float:
    torch.manual_seed(0)   # the same initial weights on both devices
    return time_training_steps(GPT(cfg).to(device), args.batch_size, args.steps, args.warmup)


# -- experiments ------------------------------------------------------------------------------

QUICK = ["--vocab-size", "512", "--block-size", "32", "--n-embd", "32", "--n-head", "2", "--n-hidden", "64",
         "--max-iters", "40", "--eval-interval", "20", "--eval-batches", "20", "--device", "cpu"]


def cmd_experiments(args) -> int:
    with flag_errors("--grid", kinds=(ValueError,)):
        runs = load_grid(args.grid) if args.grid else default_grid()
    if args.only:
        wanted = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = sorted(set(wanted) - {r.id for r in runs})
        if unknown:
            raise UserError(f"--only names unknown runs {unknown}; the runs are: {', '.join(r.id for r in runs)}")
        runs = [r for r in runs if r.id in wanted]
    flags = ["--lr", str(args.lr), "--momentum", str(args.momentum), "--weight-decay", str(args.weight_decay),
             "--batch-size", str(args.batch_size), "--cache-dir", args.cache_dir]
    passed = ("corpus", "data_dir", "tokenizer", "gpt2_dir") + (() if args.quick else (
        "vocab_size", "block_size", "n_embd", "n_head", "n_hidden", "max_iters", "epochs", "eval_interval",
        "eval_batches"))
    for name in passed:
        if (value := getattr(args, name)) is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    flags += QUICK if args.quick else ["--device", args.device]
    gpu = not args.quick and args.device in ("auto", "cuda") and torch.cuda.is_available()
    train_command = [sys.executable, os.path.abspath(__file__), "train"]
    with flag_errors("experiments", kinds=(RunFailed,)):
        print(run_grid(runs, args.out_dir, flags, gpu, train_command))
    return 0


# -- params ---------------------------------------------------------------------------------

def cmd_params(args) -> int:
    custom = [args.n_layer, args.n_head, args.n_embd]
    with flag_errors("the model flags", kinds=(ValueError,)):
        if any(v is not None for v in custom):
            if not all(v is not None for v in custom):
                raise ValueError("give all of --n-layer, --n-head and --n-embd for a custom configuration")
            configs = [("custom", GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size or 1024,
                                            n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd))]
        else:
            configs = [(name, GPTConfig.preset(name, vocab_size=args.vocab_size, block_size=args.block_size))
                       for name in args.preset]
    for name, cfg in configs:
        print(memory_report(name, cfg, args.batch_size, args.seq_len, args.optimizer))
    print(MEMORY_FORMULAS)
    return 0


# -- the parser ------------------------------------------------------------------------------

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
    g = p.add_argument_group("model")
    g.add_argument("--preset", choices=("auto",) + tuple(PRESETS), default="auto",
                   help="model size; auto picks by device (default)")
    g.add_argument("--n-layer", type=positive_int)
    g.add_argument("--n-head", type=positive_int)
    g.add_argument("--n-embd", type=positive_int)
    g.add_argument("--block-size", type=positive_int, help="context length")
    g.add_argument("--dropout", type=non_negative_float)
    g.add_argument("--attn-impl", choices=ATTN_IMPLS, default=None,
                   help="manual: the hand-written attention (default); sdpa: PyTorch's fused kernel")
    g.add_argument("--fast", action="store_true",
                   help="fused attention (unless --attn-impl says otherwise); on CUDA also bf16 autocast (fp16 "
                        "where bf16 is missing), torch.compile and TF32 matmuls")
    g.add_argument("--model", choices=tuple(MODEL_KINDS), default="gpt", help="gpt (default) or the LSTM baseline")
    g.add_argument("--init-from", metavar="gpt2|gpt2-medium|gpt2-large|gpt2-xl|DIR", default=None,
                   help="fine-tune pretrained GPT-2 weights (through transformers; a folder saved with "
                        f"save_pretrained works offline) with GPT-2's tokenizer; --lr defaults to {FINE_TUNE_LR:g}")
    g.add_argument("--n-hidden", type=positive_int, default=512, help="LSTM hidden size (default 512)")


def add_train_args(p):
    g = p.add_argument_group("training")
    g.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps")
    g.add_argument("--max-iters", type=positive_int)
    g.add_argument("--epochs", type=positive_float, help="train for this many passes over the data (sets --max-iters)")
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--lr", type=positive_float, dest="learning_rate")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--weight-decay", type=non_negative_float)
    g.add_argument("--momentum", type=non_negative_float, help="for --optimizer momentum (default 0.9)")
    g.add_argument("--grad-clip", type=non_negative_float, help="max gradient norm; 0 turns it off")
    g.add_argument("--warmup-iters", type=non_negative_int)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--eval-interval", type=positive_int)
    g.add_argument("--eval-batches", type=positive_int, help="limit each evaluation (default: whole split)")
    g.add_argument("--precision", choices=PRECISIONS)
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    g.add_argument("--grad-accum", type=positive_int)
    g.add_argument("--seed", type=seed_int)
    g.add_argument("--patience", type=positive_int, help="early stopping: evaluations without a new best")
    g.add_argument("--log-interval", type=positive_int)
    g.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    g.add_argument("--auto-resume", action="store_true",
                   help="continue from OUT_DIR/last.pt if it exists, else start (for requeued batch jobs)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    g.add_argument("--max-new-tokens", type=non_negative_int, default=60, help="length of the final samples")
    g.add_argument("--no-report", action="store_true",
                   help="skip the final whole-split report and the samples (used by experiments)")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="main.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for add in (add_train_command, add_compare_command, add_sample_command, add_eval_command,
                add_attention_command, add_experiments_command, add_params_command):
        add(sub)
    return p


def add_train_command(sub):
    t = sub.add_parser("train", help="train a GPT on WikiText (the main job)",
                       description="Train a GPT: corpus, tokenizer, model, training, plots, checkpoints, samples.")
    add_data_args(t)
    add_model_args(t)
    add_train_args(t)
    t.add_argument("--out-dir", default="runs/train", help="output folder (default runs/train)")
    t.set_defaults(func=cmd_train)


def add_compare_command(sub):
    c = sub.add_parser("compare", help="time training steps on CPU and GPU",
                       description="Time identical training steps on the CPU and on the GPU and print the speed-up.")
    c.add_argument("--steps", type=positive_int, default=50, help="timed steps (default 50)")
    c.add_argument("--warmup", type=non_negative_int, default=3, help="untimed warm-up steps (default 3)")
    c.add_argument("--preset", choices=tuple(PRESETS), default="gpt-mini", help="model preset (default gpt-mini)")
    c.add_argument("--block-size", type=positive_int, default=128)
    c.add_argument("--batch-size", type=positive_int, default=16)
    c.add_argument("--vocab-size", type=positive_int, default=8192)
    c.set_defaults(func=cmd_compare)


def add_sample_command(sub):
    s = sub.add_parser("sample", help="complete prompts from a checkpoint",
                       description="Complete prompts from a checkpoint or GPT-2 (same flags as generate.py). "
                                   "Several --temperature / --top-p / --top-k values run every combination with "
                                   "the same seed, and --compare adds a second model: samples.md and "
                                   "samples.json hold them side by side.")
    add_sampling_args(s)
    s.add_argument("--out-dir", default="runs/sample",
                   help="where samples.txt (and samples.md, samples.json, distribution-K.png) go (default runs/sample)")
    s.set_defaults(func=run_sampling)


def add_eval_command(sub):
    e = sub.add_parser("eval", help="perplexity and bits per byte of a checkpoint",
                       description="Token loss, token perplexity, word-level perplexity and bits per byte of a "
                                   "checkpoint on a whole split; also written to OUT_DIR/eval-SPLIT.json.")
    add_source_args(e)
    e.add_argument("--stride", type=positive_int, default=None,
                   help="windows start every S tokens and score only their new tokens, so each token has at "
                        "least block_size - S tokens of context (default block_size: non-overlapping windows)")
    e.add_argument("--split", choices=SPLITS, default="valid")
    e.add_argument("--corpus", default=None, help="default: the checkpoint's training corpus")
    e.add_argument("--data-dir", default=None, help="default: the checkpoint's training data folder")
    e.add_argument("--batch-size", type=positive_int, default=32)
    e.add_argument("--device", default="auto")
    e.add_argument("--cache-dir", default="runs/cache")
    e.add_argument("--out-dir", default="runs/eval", help="where eval-SPLIT.json goes (default runs/eval)")
    e.set_defaults(func=cmd_eval)


def add_attention_command(sub):
    a = sub.add_parser("attention", help="attention maps of a prompt (every layer and head)",
                       description="Draw the causal attention weights of a prompt, one map per layer and head "
                                   "(queries down, keys across, decoded tokens on both axes): attention.png, "
                                   "the weights as attention.npy (layer, head, query, key) and attention.json.")
    add_source_args(a)
    a.add_argument("--prompt", default=" The best way to learn", help="text to look at (default %(default)r)")
    a.add_argument("--layer", type=non_negative_int, nargs="+", default=None, help="layers to show (default all)")
    a.add_argument("--head", type=non_negative_int, nargs="+", default=None, help="heads to show (default all)")
    a.add_argument("--device", default="auto")
    a.add_argument("--out-dir", default="runs/attention", help="output folder (default runs/attention)")
    a.set_defaults(func=cmd_attention)


def add_experiments_command(sub):
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


def add_params_command(sub):
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
    pa.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    pa.set_defaults(func=cmd_params)




def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv or ["train"])
    if args.command is None:
        parser.error("choose a command")
    return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
