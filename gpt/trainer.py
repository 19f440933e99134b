"""Training: the training step, evaluation, the choice of optimizer, and the loop that runs them
(AdamW itself, the learning-rate schedule lr_at and gradient clipping are in gpt/optim.py).

Works for any language model with the interface `logits, loss = model(idx, targets, mask)` (GPT, and
the LSTM baseline). One "iteration" is one optimizer step on batch_size x grad_accum windows.
The Trainer writes to out_dir:
    metrics.jsonl   one JSON object per log step ("kind": "train") and per evaluation ("kind": "eval")
    last.pt         the latest checkpoint (at every evaluation); resume=True continues from it
    best.pt         the checkpoint with the best validation perplexity so far
    loss.png, ppl.png, accuracy.png
Running under torchrun, stopping on signals and the checkpoint files are in gpt/distributed.py and
gpt/checkpoint.py, so that this file reads as the algorithm.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from gpt import checkpoint
from gpt.distributed import (MicroBatches, Preempted, any_process, compute_cleanup, compute_init, mean_across,
                             shard, stop_on_signals, sum_across, wrap_ddp)
from gpt.metrics import perplexity
from gpt.optim import AdamW, clip_grad_norm, lr_at
from gpt.sizing import estimate_mfu, peak_tflops
from gpt.utils import (append_jsonl, atomic_copy, ensure_dir, plot_curves, read_jsonl, remove_stale_temporaries,
                       synchronize, write_jsonl)
from gpt.windows import eval_windows

# A scaler that passes everything through unchanged: the fp32 and bf16 path, and the default.
# Under fp16 the Trainer uses an enabled one (fp16 gradients underflow unless the loss is scaled up).
NO_SCALING = torch.amp.GradScaler("cpu", enabled=False)


# -- one training step ---------------------------------------------------------------------

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches, grad_clip: float,
               autocast=contextlib.nullcontext(), scaler: torch.amp.GradScaler = NO_SCALING) -> torch.Tensor:
    """One optimizer step on a list of (x, y) micro-batches, each (B, T) (gradient accumulation when > 1).

    Returns the mean loss over the micro-batches as a 0-dim tensor, without reading it back (no GPU
    synchronisation). grad_clip is the largest global gradient norm allowed; 0 turns clipping off.
    """
    n = len(micro_batches)
    total = None
    for x, y in micro_batches:
        # TODO(train-step): forward (x, y) under `autocast` to get `loss` (keep only the loss, not the
        # logits: a (B, T, V) tensor held through backward costs memory), divide it by n (so the
        # accumulated gradient is the mean over micro-batches) and keep that divided value in `loss`,
        # then backpropagate scaler.scale(loss) (the scaler returns the loss unchanged unless fp16).
        ### BEGIN SOLUTION
        with autocast:
            loss = model(x, y)[1]     # [1]: the logits are dropped now, not kept through backward
        loss = loss / n
        scaler.scale(loss).backward()
        ### END SOLUTION
        # `loss` is already divided by n here, so the sum over micro-batches is their mean.
        total = loss.detach() if total is None else total + loss.detach()
    # TODO(train-step): unscale the gradients (scaler.unscale_(optimizer)); clip the global gradient
    # norm to grad_clip when grad_clip > 0 (clip_grad_norm(model.parameters(), grad_clip), from
    # gpt/optim.py: all gradients together, after unscaling, before the step); step the optimizer through
    # the scaler (scaler.step(optimizer), then scaler.update()); reset the gradients to None.
    ### BEGIN SOLUTION
    scaler.unscale_(optimizer)
    if grad_clip > 0:
        clip_grad_norm(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    ### END SOLUTION
    return total


# -- evaluation ----------------------------------------------------------------------------

@torch.inference_mode()
def nll_sums(model: nn.Module, windows, device: torch.device | str = "cpu",
             autocast=contextlib.nullcontext()) -> tuple[float, int, int]:
    """Total negative log-likelihood (nats), number of predicted tokens, and number of them whose
    most likely token (argmax of the logits) is the target, over `windows`.

    windows: an iterable of (x, y, mask) batches, each (B, T), as gpt.windows.eval_windows yields
    them; mask is 1 where y is a real next token and 0 on the padding of the last window.
    """
    total_nll = torch.zeros((), dtype=torch.float64, device=device)
    total_tokens = 0
    total_correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y, mask in windows:
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        with autocast:
            logits, _ = model(x)                                                  # (B, T, V)
        # TODO(perplexity): add this batch's summed NLL over the real (mask == 1) positions to
        # total_nll and their number to total_tokens. Per-token NLL: F.cross_entropy on the
        # flattened float logits (B*T, V) and targets (B*T,) with reduction="none".
        ### BEGIN SOLUTION
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="none")
        total_nll += (nll * mask.reshape(-1)).sum().double()
        total_tokens += int(mask.sum().item())
        ### END SOLUTION
        # Token accuracy (given, not part of the TODO), counted over the same real positions.
        total_correct += ((logits.argmax(dim=-1) == y) & (mask == 1)).sum()
    return float(total_nll), total_tokens, int(total_correct)


@dataclass
class EvalResult:
    nll: float        # total negative log-likelihood, nats, summed over every predicted token
    tokens: int       # number of predicted tokens
    loss: float       # nll / tokens
    ppl: float        # exp(loss)
    correct: int      # predicted tokens whose argmax is the target
    accuracy: float   # correct / tokens (token accuracy)

    @classmethod
    def from_sums(cls, nll: float, tokens: int, correct: int) -> "EvalResult":
        if tokens == 0:
            raise ValueError("evaluation saw no tokens: the split is empty")
        return cls(nll=nll, tokens=tokens, loss=nll / tokens, ppl=perplexity(nll, tokens), correct=correct,
                   accuracy=correct / tokens)


def evaluate(model: nn.Module, ids: np.ndarray, block_size: int, batch_size: int,
             device: torch.device | str = "cpu", max_batches: int | None = None,
             precision: str = "fp32", stride: int | None = None) -> EvalResult:
    """Perplexity (and token accuracy) of the whole stream `ids` (or of its first max_batches
    batches), walking it once in windows of block_size with stride `stride` (default block_size;
    gpt.windows.eval_windows).

    Perplexity is exp(total NLL / total predicted tokens) over the split, never a mean of per-batch
    perplexities or losses: batches hold different numbers of real tokens (the last is padded).
    """
    device = torch.device(device)
    windows = itertools.islice(eval_windows(ids, block_size, batch_size, stride), max_batches)
    with evaluation_mode(model):
        nll, tokens, correct = nll_sums(model, windows, device, autocast_context(device, precision))
    return EvalResult.from_sums(nll, tokens, correct)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """model.eval() inside (no dropout); the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# -- configuration, optimizer and schedule -------------------------------------------------------

OPTIMIZERS = ("adamw", "adam", "sgd", "momentum")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    device: str = "auto"            # auto | cpu | cuda | cuda:N | mps
    max_iters: int = 2000
    batch_size: int = 32
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1       # cosine decays to learning_rate * min_lr_ratio
    optimizer: str = "adamw"        # adamw | adam | sgd | momentum
    weight_decay: float = 0.1       # never on biases, LayerNorm or embeddings
    betas: tuple[float, float] = (0.9, 0.95)
    momentum: float = 0.9           # for "momentum" (SGD with momentum)
    grad_clip: float = 1.0          # max global gradient norm; 0 turns clipping off
    schedule: str = "cosine"        # cosine | constant (both after a linear warm-up)
    warmup_iters: int = 100
    eval_interval: int = 250
    eval_batches: int | None = None  # None: evaluate on the whole validation split
    eval_batch_size: int | None = None  # None: same as batch_size
    precision: str = "fp32"         # fp32 | bf16 | fp16 (autocast; a gradient scaler only for fp16)
    compile: bool = False           # torch.compile the model for training
    grad_accum: int = 1
    seed: int = 1337                # the data order; the caller seeds the model's initialisation with it
    out_dir: str = "runs/train"
    resume: bool = False
    patience: int | None = None     # stop after this many evaluations without a new best
    log_interval: int = 10
    progress: bool = True           # tqdm progress bar

    def __post_init__(self):
        for name in ("max_iters", "batch_size", "eval_interval", "grad_accum", "log_interval"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")
        for name in ("eval_batches", "eval_batch_size", "patience"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise ValueError(f"TrainConfig.{name} must be a positive integer or None, got {v!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "grad_clip", "warmup_iters", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("precision", PRECISIONS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        self.betas = tuple(self.betas)


def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The optimizer of cfg.optimizer: "adamw" is gpt.optim.AdamW (on every device; `fused` asks torch's
    fused CUDA kernel for "adam" only), "adam" torch's Adam, "sgd" and "momentum" torch's SGD.

    Weight decay applies to the weight matrices of Linear layers (and LSTM weights) only:
    decaying biases, LayerNorm gains or embeddings pulls them toward 0 for no benefit."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():      # shared (tied) parameters are listed once
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    lr = cfg.learning_rate
    if cfg.optimizer == "adamw":   # ours (gpt/optim.py), on every device: what trains is what was written
        return AdamW(groups, lr=lr, betas=cfg.betas)
    if cfg.optimizer == "adam":   # weight decay as an L2 term in the gradient (the original Adam)
        return torch.optim.Adam(groups, lr=lr, betas=cfg.betas, **({"fused": True} if fused else {}))
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


class DivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


# -- the trainer ---------------------------------------------------------------------------------

# The files a run writes into its out_dir (main.py adds summary.json and samples.txt).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "loss.png", "ppl.png", "summary.json", "samples.txt")

class Trainer:
    """Train `model` on a stream of token ids, evaluating on another.

    batches: a gpt.windows.WindowBatches over the training ids (its device is set here).
    valid_ids: the validation stream (evaluated whole unless cfg.eval_batches is set).
    tokenizer and extra (e.g. how the data was made) are stored in every checkpoint, so a
    checkpoint alone is enough to sample or evaluate.

    Under torchrun the model is wrapped in DistributedDataParallel; `batches` should then be built
    with rank and world_size so that each process takes its slice of every global batch. Only rank 0
    prints, logs, plots and writes checkpoints.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, batches, valid_ids: np.ndarray,
                 tokenizer=None, extra: dict | None = None):
        self.cfg = cfg
        self.dist, self.device, self._own_group = compute_init(cfg.device)
        if cfg.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bf16 autocast; use fp16 or fp32")
        self.model = model.to(self.device)
        self.batches, self.valid_ids = batches, valid_ids
        self.batches.device = self.device
        self.block_size = batches.block_size
        self.tokenizer, self.extra = tokenizer, extra or {}
        self.out_dir = ensure_dir(cfg.out_dir) if self.dist.is_main else cfg.out_dir
        self.metrics_path = os.path.join(self.out_dir, "metrics.jsonl")
        self.optimizer = make_optimizer(self.model, cfg, fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.autocast = autocast_context(self.device, cfg.precision)
        self.ddp_model = wrap_ddp(self.model, self.dist, self.device)
        self.train_model = torch.compile(self.ddp_model) if cfg.compile else self.ddp_model
        # MFU is logged on GPUs whose peak is known, for GPT only (the FLOP formula is its own).
        self.peak = peak_tflops(self.device) if checkpoint.kind_of(self.model) == "gpt" else None
        self.tokens_per_iter = cfg.batch_size * cfg.grad_accum * self.block_size * self.dist.world_size
        # The loop's counters, saved in every checkpoint. elapsed: training seconds, across resumes;
        # best_iteration: where best.pt was taken (lets a resume repair a best.pt that a crash left stale).
        self.progress = dict(iteration=0, best_valid_ppl=float("inf"), best_iteration=None, evals_since_best=0,
                             elapsed=0.0)

    # checkpoints
    def save(self, *names: str) -> None:
        """Write the current state to each of `names` in out_dir (atomically: a file is whole or old)."""
        if self.dist.is_main:
            ckpt = checkpoint.make_checkpoint(self.model, self.optimizer, self.scaler, self.progress, self.cfg,
                                              self.tokenizer, self.extra)
            for name in names:
                path = os.path.join(self.out_dir, name)
                try:
                    checkpoint.save_checkpoint(ckpt, path)
                except OSError as e:   # a full disk, a quota: the previous file is intact
                    raise OSError(e.errno, f"cannot write {path} ({e.strerror}); an earlier {name}, if any, "
                                           "is intact") from None

    def resume_from(self, path: str) -> None:
        """Continue from a checkpoint of this run: same model, same data, same tokenizer (CheckpointError else)."""
        ckpt = checkpoint.load_checkpoint(path, map_location=self.device)
        self._check_same_data(ckpt, path)
        checkpoint.restore(ckpt, self.model, self.optimizer, self.scaler)
        self.progress.update({k: ckpt.get(k, v) for k, v in self.progress.items()})
        if self.dist.is_main:
            self._repair_best(path)
            # forget metrics logged after the checkpoint: they will be produced again
            kept = [r for r in read_jsonl(self.metrics_path) if r["iter"] <= self.progress["iteration"]]
            write_jsonl(self.metrics_path, kept)

    def _check_same_data(self, ckpt: dict, path: str) -> None:
        """Resuming on other text or with another tokenizer would silently mix two token streams."""
        theirs, ours = (ckpt.get("extra") or {}).get("corpus_key"), self.extra.get("corpus_key")
        if theirs and ours and theirs != ours:
            raise checkpoint.CheckpointError(
                f"{path} was trained on other data ({(ckpt.get('extra') or {}).get('corpus_name', theirs)}); "
                "resume with the same data flags, or start a new run in another --out-dir")
        if self.tokenizer is not None and ckpt.get("tokenizer") not in (None, self.tokenizer.to_dict()):
            raise checkpoint.CheckpointError(
                f"{path} was trained with another tokenizer (a different --tokenizer, --vocab-size or corpus); "
                "resume with the same flags, or start a new run in another --out-dir")

    def _repair_best(self, last_path: str) -> None:
        """last.pt is written before best.pt: if a crash fell between the two, last.pt is the best
        checkpoint (its best_iteration is its own iteration) and best.pt is older. Copy it over."""
        p, best_path = self.progress, os.path.join(self.out_dir, "best.pt")
        if p["best_iteration"] is None or p["best_iteration"] != p["iteration"]:
            return
        try:
            stale = checkpoint.load_checkpoint(best_path)["iteration"] != p["iteration"]
        except (FileNotFoundError, checkpoint.CheckpointError):
            stale = True
        if stale:
            atomic_copy(last_path, best_path)

    # the loop
    def train(self) -> dict:
        """Train to cfg.max_iters (or early stopping); returns the run's summary (see summary())."""
        try:
            with stop_on_signals() as stop:
                return self._train(stop)
        finally:
            compute_cleanup(self._own_group)

    def _train(self, stop) -> dict:
        cfg = self.cfg
        if self.dist.is_main:
            self._clean_out_dir(fresh=not cfg.resume)
        if cfg.resume:
            self.resume_from(os.path.join(self.out_dir, "last.pt"))
        p = self.progress
        bar = tqdm(total=cfg.max_iters, initial=p["iteration"], disable=not (cfg.progress and self.dist.is_main),
                   desc="train", unit="it", dynamic_ncols=True, mininterval=1.0)
        self._window = dict(loss=torch.zeros((), device=self.device), iters=0, start=time.perf_counter())
        stopped_early = False
        self.model.train()
        while p["iteration"] < cfg.max_iters and not stopped_early:
            lr = lr_at(p["iteration"], cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            first = p["iteration"] * cfg.grad_accum
            micro = MicroBatches([self.batches.get(first + k) for k in range(cfg.grad_accum)], self.ddp_model)
            self._window["loss"] += train_step(self.train_model, self.optimizer, micro, cfg.grad_clip,
                                               self.autocast, self.scaler)
            self._window["iters"] += 1
            p["iteration"] += 1
            bar.update(1)
            last = p["iteration"] == cfg.max_iters
            if p["iteration"] % cfg.log_interval == 0 or last:
                self._log_training(lr, bar)
            if p["iteration"] % cfg.eval_interval == 0 or last:
                t0 = time.perf_counter()
                stopped_early = self._evaluate_and_checkpoint(bar)
                self._window["start"] += time.perf_counter() - t0    # evaluation time is not training time
            if any_process(self.dist, stop.signal is not None, self.device):
                self._preempt(stop.signal, bar)
        bar.close()
        if self.dist.is_main:
            plot_curves(read_jsonl(self.metrics_path), self.out_dir)
        return self.summary(stopped_early)

    def _clean_out_dir(self, fresh: bool) -> None:
        """Before training: remove what a killed run left half-written (hidden temporaries of
        atomic writes) and the files that describe a finished run (rewritten at the end); a fresh
        run also starts a fresh log."""
        remove_stale_temporaries(self.out_dir, RUN_FILES)
        for name in ("summary.json", "samples.txt") + (("metrics.jsonl",) if fresh else ()):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.out_dir, name))

    def _log_training(self, lr: float, bar) -> None:
        """One "train" record: the mean loss since the last one (the one GPU sync per log interval)."""
        w, it = self._window, self.progress["iteration"]
        mean_loss = float(mean_across(self.dist, w["loss"])) / w["iters"]
        now = time.perf_counter()
        self.progress["elapsed"] += now - w["start"]
        self._check_finite(mean_loss, "training")
        tps = self.tokens_per_iter * w["iters"] / max(now - w["start"], 1e-9)
        rec = {"kind": "train", "iter": it, "time": round(self.progress["elapsed"], 3), "loss": mean_loss,
               "ppl": perplexity(mean_loss, 1), "lr": lr, "tokens_per_sec": round(tps, 1)}
        postfix = dict(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
        if self.peak:   # per GPU: each of world_size GPUs does 1/world_size of the tokens
            rec["mfu"] = round(estimate_mfu(self.model.config, self.block_size, tps / self.dist.world_size,
                                            self.peak), 4)
            postfix["mfu"] = f"{rec['mfu']:.0%}"
        if self.dist.is_main:
            append_jsonl(self.metrics_path, rec)
        bar.set_postfix(**postfix)
        w["loss"].zero_()
        w["iters"], w["start"] = 0, time.perf_counter()

    def _preempt(self, signal_name: str | None, bar) -> None:
        """Stopped by a signal: write last.pt and raise Preempted (exit 75: requeue and resume)."""
        self.progress["elapsed"] += time.perf_counter() - self._window["start"]
        self.save("last.pt")
        bar.close()
        raise Preempted(f"stopped by {signal_name or 'a signal on another process'} after iteration "
                        f"{self.progress['iteration']}; {os.path.join(self.out_dir, 'last.pt')} is up to date")

    def _check_finite(self, value: float, what: str) -> None:
        if not math.isfinite(value):
            raise DivergedError(
                f"{what} loss became {value} at iteration {self.progress['iteration']}; stopped. The last good "
                f"checkpoint ({os.path.join(self.out_dir, 'last.pt')}, if any) is untouched")

    def evaluate(self) -> EvalResult:
        """Validation perplexity. Like evaluate() above, but under torchrun each process takes every
        world_size-th batch and the sums (never the means) are added up across processes."""
        cfg = self.cfg
        windows = itertools.islice(eval_windows(self.valid_ids, self.block_size, cfg.eval_batch_size or cfg.batch_size),
                                   cfg.eval_batches)
        with evaluation_mode(self.model):
            nll, tokens, correct = nll_sums(self.model, shard(windows, self.dist), self.device, self.autocast)
        nll, tokens, correct = sum_across(self.dist, nll, tokens, correct, device=self.device)
        return EvalResult.from_sums(nll, int(tokens), int(correct))

    def _evaluate_and_checkpoint(self, bar) -> bool:
        """Evaluate, log, write last.pt (and best.pt); True when early stopping says stop."""
        p = self.progress
        res = self.evaluate()
        self._check_finite(res.loss, "validation")
        improved = res.ppl < p["best_valid_ppl"]
        if improved:
            p["best_valid_ppl"], p["best_iteration"], p["evals_since_best"] = res.ppl, p["iteration"], 0
        else:
            p["evals_since_best"] += 1
        rec = {"kind": "eval", "iter": p["iteration"], "time": round(p["elapsed"], 3),
               "valid_loss": res.loss, "valid_ppl": res.ppl, "valid_nll": res.nll, "valid_tokens": res.tokens,
               "valid_accuracy": res.accuracy,
               "best_valid_ppl": p["best_valid_ppl"]}
        if self.device.type == "cuda":
            rec["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if self.dist.is_main:
            append_jsonl(self.metrics_path, rec)
        # last.pt first: it records best_iteration, so a crash before best.pt is written is repaired on resume.
        self.save(*(("last.pt", "best.pt") if improved else ("last.pt",)))
        if self.dist.is_main:
            bar.write(f"iter {p['iteration']}: valid loss {res.loss:.4f}, ppl {res.ppl:.2f}, "
                      f"token accuracy {res.accuracy:.1%}"
                      + (" (best)" if improved else ""))
        return self.cfg.patience is not None and p["evals_since_best"] >= self.cfg.patience

    def summary(self, stopped_early: bool = False) -> dict:
        """The run's headline numbers, from metrics.jsonl (which covers earlier sessions of a resumed run)."""
        p = self.progress
        records = read_jsonl(self.metrics_path) if self.dist.is_main else []
        evals = [r for r in records if r["kind"] == "eval"]
        best = min(evals, key=lambda r: r["valid_ppl"]) if evals else None
        at_best = [r for r in records if r["kind"] == "train" and best and r["iter"] <= best["iter"]]
        return {"iterations": p["iteration"], "train_seconds": p["elapsed"], "stopped_early": stopped_early,
                "out_dir": self.out_dir,
                "best_valid_ppl": best["valid_ppl"] if best else None, "best_iter": best["iter"] if best else None,
                "best_valid_tokens": best["valid_tokens"] if best else None,
                "best_valid_nll": best["valid_nll"] if best else None,
                "train_ppl_at_best": at_best[-1]["ppl"] if at_best else None,
                # total tokens / total training time (a mean of per-window rates would overweight short windows)
                "tokens_per_sec": round(p["iteration"] * self.tokens_per_iter / p["elapsed"], 1) if p["elapsed"] else None,
                "peak_gpu_mem_mb": max((r.get("peak_gpu_mem_mb", 0) for r in evals), default=0) or None}


# -- speed -----------------------------------------------------------------------------------

def time_training_steps(model: nn.Module, batch_size: int, steps: int, warmup: int) -> float:
    """Seconds per training step (forward, backward, AdamW) of `model` on random tokens, warm-up excluded."""
    device = next(model.parameters()).device
    opt = make_optimizer(model, TrainConfig(), fused=device.type == "cuda")
    cfg = model.config
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
