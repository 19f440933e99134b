"""Training: optimizer, learning-rate schedule, the training step, evaluation, checkpoints, resume.

Works for any language model with the interface `logits, loss = model(idx, targets, mask)`
(GPT, and the LSTM baseline). One "iteration" is one optimizer step on batch_size x grad_accum
windows. Everything written to out_dir:
    metrics.jsonl   one JSON object per log step ("kind": "train") and per evaluation ("kind": "eval")
    last.pt         the latest checkpoint (at every evaluation); --resume continues from it
    best.pt         the checkpoint with the best validation perplexity so far
    loss.png, ppl.png
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from gpt.utils import (UserError, append_jsonl, atomic_torch_save, atomic_write_bytes, choose_device, ensure_dir,
                       peak_tflops, plot_curves, read_jsonl, seed_everything)

CHECKPOINT_FORMAT = "hw5-checkpoint"
CHECKPOINT_VERSION = 1
OPTIMIZERS = ("adamw", "adam", "sgd", "momentum")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")


class DivergedError(UserError):
    """The loss became NaN or infinite."""


class Preempted(Exception):
    """Training stopped on a signal (Slurm preemption or time limit, kill, Ctrl-C) after writing last.pt."""
    exit_code = 75   # EX_TEMPFAIL: "try again later"; sbatch.sh requeues the job on it


STOP_SIGNALS = ("SIGUSR1", "SIGTERM", "SIGINT")


@dataclass
class DistInfo:
    """Where this process sits in a torchrun job (rank 0 of 1 without torchrun)."""
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "DistInfo":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))


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
    seed: int = 1337
    out_dir: str = "runs/train"
    resume: bool = False
    patience: int | None = None     # stop after this many evaluations without a new best
    log_interval: int = 10
    progress: bool = True           # tqdm progress bar

    def __post_init__(self):
        positive = ("max_iters", "batch_size", "eval_interval", "grad_accum", "log_interval")
        for name in positive:
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

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# -- optimizer and schedule ----------------------------------------------------------------

def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """Weight decay applies to the weight matrices of Linear layers (and LSTM weights) only:
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
    extra = {"fused": True} if fused else {}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=cfg.betas, **extra)
    if cfg.optimizer == "adam":   # weight decay as an L2 term in the gradient (the original Adam)
        return torch.optim.Adam(groups, lr=lr, betas=cfg.betas, **extra)
    momentum = cfg.momentum if cfg.optimizer == "momentum" else 0.0
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def lr_at(it: int, cfg: TrainConfig) -> float:
    """Learning rate for iteration `it` (0-based): linear warm-up, then constant or cosine decay."""
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / cfg.warmup_iters
    if cfg.schedule == "constant":
        return cfg.learning_rate
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (it - cfg.warmup_iters) / span)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (1 + math.cos(math.pi * progress))


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# -- one training step ---------------------------------------------------------------------

def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, micro_batches, grad_clip: float,
               autocast=None, scaler=None) -> torch.Tensor:
    """One optimizer step on a list of (x, y) micro-batches (gradient accumulation when > 1).

    Returns the mean loss as a 0-dim tensor, without reading it back (no GPU synchronisation).
    """
    autocast = autocast or contextlib.nullcontext()
    n = len(micro_batches)
    total = None
    for k, (x, y) in enumerate(micro_batches):
        # Under DistributedDataParallel, backward() also averages the gradients across processes;
        # between micro-batches that is wasted work, so it is skipped (no_sync) until the last one.
        sync = model.no_sync() if k < n - 1 and hasattr(model, "no_sync") else contextlib.nullcontext()
        with sync:
            # TODO(train-step): forward (x, y) under `autocast` to get `loss` (keep only the loss, not the
            # logits: a (B, T, V) tensor held through backward costs memory), divide it by n (so the
            # accumulated gradient is the mean over micro-batches), and backpropagate it (through
            # scaler.scale(loss) when a scaler is given).
            ### BEGIN SOLUTION
            with autocast:
                loss = model(x, y)[1]     # [1]: the logits are dropped now, not kept through backward
            loss = loss / n
            (scaler.scale(loss) if scaler is not None else loss).backward()
            ### END SOLUTION
        total = loss.detach() if total is None else total + loss.detach()
    # TODO(train-step): unscale the gradients (scaler.unscale_) if there is a scaler; clip the global
    # gradient norm to grad_clip when grad_clip > 0 (torch.nn.utils.clip_grad_norm_); step the
    # optimizer (through the scaler if any, then scaler.update()); reset the gradients to None.
    ### BEGIN SOLUTION
    if scaler is not None:
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    ### END SOLUTION
    return total


# -- evaluation ----------------------------------------------------------------------------

@dataclass
class EvalResult:
    nll: float        # total negative log-likelihood, nats, summed over every predicted token
    tokens: int       # number of predicted tokens
    loss: float       # nll / tokens
    ppl: float        # exp(loss)


@torch.inference_mode()
def evaluate(model: nn.Module, ids: np.ndarray, block_size: int, batch_size: int,
             device: torch.device | str = "cpu", max_batches: int | None = None,
             precision: str = "fp32", dist_info: "DistInfo | None" = None) -> EvalResult:
    """Perplexity of the whole stream `ids` (or of its first max_batches batches), walking it once
    in windows of block_size with stride block_size (data.eval_windows).

    Perplexity is exp(total NLL / total predicted tokens) over the split, never a mean of per-batch
    perplexities or losses: batches hold different numbers of real tokens (the last is padded).
    Under torchrun each process takes every world_size-th batch, and the sums (never the means)
    are added up across processes.
    """
    from data import eval_windows
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total_nll = torch.zeros((), dtype=torch.float64, device=device)
    total_tokens = 0
    for b, (x, y, mask) in enumerate(eval_windows(ids, block_size, batch_size)):
        if max_batches is not None and b >= max_batches:
            break
        if dist_info is not None and b % dist_info.world_size != dist_info.rank:
            continue
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        with autocast_context(device, precision):
            logits, _ = model(x)                                                  # (B, T, V)
        # TODO(perplexity): add this batch's summed NLL over the real (mask == 1) positions to
        # total_nll and their number to total_tokens. Per-token NLL: F.cross_entropy on the
        # flattened float logits (B*T, V) and targets (B*T,) with reduction="none".
        ### BEGIN SOLUTION
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="none")
        total_nll += (nll * mask.reshape(-1)).sum().double()
        total_tokens += int(mask.sum().item())
        ### END SOLUTION
    model.train(was_training)
    if dist_info is not None and dist_info.world_size > 1:
        sums = torch.stack([total_nll, torch.tensor(float(total_tokens), dtype=torch.float64, device=device)])
        torch.distributed.all_reduce(sums)
        total_nll, total_tokens = sums[0], int(sums[1].item())
    if total_tokens == 0:
        raise ValueError("evaluation saw no tokens: the split is empty")
    nll = float(total_nll)
    loss = nll / total_tokens
    return EvalResult(nll=nll, tokens=total_tokens, loss=loss, ppl=math.exp(min(loss, 700.0)))


# -- checkpoints -----------------------------------------------------------------------------

def model_kinds() -> dict:
    """Model classes a checkpoint can hold: kind -> (model class, config class)."""
    from gpt.lstm import LSTMConfig, LSTMLanguageModel
    from gpt.model import GPT, GPTConfig
    return {"gpt": (GPT, GPTConfig), "lstm": (LSTMLanguageModel, LSTMConfig)}


def model_kind_of(model: nn.Module) -> str:
    for kind, (cls, _) in model_kinds().items():
        if isinstance(model, cls):
            return kind
    raise ValueError(f"cannot checkpoint a {type(model).__name__}: not a known model kind")


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by the Trainer; a missing, truncated or foreign file is a UserError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} does not exist; train first (python main.py train) or fix the path")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint {path} is corrupt or truncated ({first[:120]}); "
                        "use another checkpoint (last.pt or best.pt) or train again") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a hw5 checkpoint")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{path} has checkpoint version {ckpt.get('version')}; this code reads {CHECKPOINT_VERSION}")
    return ckpt


def model_from_checkpoint(ckpt: dict, device: torch.device | str = "cpu"):
    """(model in eval mode, tokenizer) from a checkpoint dict."""
    from gpt.bpe import BPETokenizer
    kinds = model_kinds()
    if ckpt["model_kind"] not in kinds:
        raise UserError(f"checkpoint holds a {ckpt['model_kind']!r} model, which this code does not know")
    cls, cfg_cls = kinds[ckpt["model_kind"]]
    model = cls(cfg_cls.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    tok = BPETokenizer.from_dict(ckpt["tokenizer"]) if ckpt.get("tokenizer") else None
    return model.to(device).eval(), tok


# -- the trainer ---------------------------------------------------------------------------------

class Trainer:
    """Train `model` on a stream of token ids, evaluating on another.

    batches: a data.WindowBatches over the training ids (its device is set here).
    valid_ids: the validation stream (evaluated whole unless cfg.eval_batches is set).
    tokenizer and extra (e.g. how the data was made) are stored in every checkpoint, so a
    checkpoint alone is enough to sample or evaluate.

    Under torchrun (RANK / LOCAL_RANK / WORLD_SIZE set) the model is wrapped in
    DistributedDataParallel (nccl on CUDA, gloo on CPU); `batches` should then be built with
    rank and world_size so that each process takes its slice of every global batch. Only rank 0
    prints, logs, plots and writes checkpoints.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, batches, valid_ids: np.ndarray,
                 tokenizer=None, extra: dict | None = None):
        self.cfg = cfg
        self.dist = DistInfo.from_env()
        self.device = choose_device(cfg.device)
        if self.dist.world_size > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if cfg.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError("this GPU does not support bf16; use --precision fp16 or fp32")
        self.own_process_group = False
        if self.dist.world_size > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.own_process_group = True
        seed_everything(cfg.seed)
        self.model = model.to(self.device)
        self.batches = batches
        self.batches.device = self.device
        self.valid_ids = valid_ids
        self.tokenizer = tokenizer
        self.extra = extra or {}
        self.block_size = batches.block_size
        self.out_dir = ensure_dir(cfg.out_dir) if self.dist.is_main else cfg.out_dir
        self.metrics_path = os.path.join(self.out_dir, "metrics.jsonl")
        self.optimizer = make_optimizer(self.model, cfg, fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type) if cfg.precision == "fp16" else None
        self.autocast = autocast_context(self.device, cfg.precision)
        train_model = self.model
        if self.dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel
            train_model = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.train_model = torch.compile(train_model) if cfg.compile else train_model
        # Model FLOPs utilisation = tokens/s x mfu_per_token, logged on GPUs whose peak is known (GPT
        # only: the FLOP formula is its own). Per GPU: each of world_size GPUs does 1/world_size of the tokens.
        self.mfu_per_token = None
        if model_kind_of(self.model) == "gpt" and (peak := peak_tflops(self.device)):
            from gpt.model import flops_per_token
            self.mfu_per_token = flops_per_token(self.model.config, self.block_size) / (peak * 1e12 * self.dist.world_size)
        self.iteration = 0
        self.best_ppl = float("inf")
        self.evals_since_best = 0
        self.elapsed = 0.0                # training wall-clock seconds, carried across resumes
        self.stop_signal = None           # set by a signal handler; acted on between steps

    # checkpoints
    def checkpoint(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "model_kind": model_kind_of(self.model), "model_config": asdict(self.model.config),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "iteration": self.iteration, "best_valid_ppl": self.best_ppl,
            "evals_since_best": self.evals_since_best, "elapsed": self.elapsed,
            "train_config": asdict(self.cfg), "extra": self.extra,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer is not None else None,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def save(self, *names: str) -> None:
        if self.dist.is_main:
            ckpt = self.checkpoint()
            for name in names:
                atomic_torch_save(ckpt, os.path.join(self.out_dir, name))

    def resume_from(self, path: str) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt["model_config"] != asdict(self.model.config):
            raise UserError(f"{path} was trained with a different model configuration; "
                            "resume with the same flags, or use another --out-dir")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.iteration = ckpt["iteration"]
        self.best_ppl = ckpt["best_valid_ppl"]
        self.evals_since_best = ckpt["evals_since_best"]
        self.elapsed = ckpt["elapsed"]
        torch.set_rng_state(ckpt["rng_cpu"].cpu())
        if ckpt["rng_cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng_cuda"]])
        if self.dist.is_main:   # forget metrics logged after the checkpoint: they will be produced again
            kept = [r for r in read_jsonl(self.metrics_path) if r["iter"] <= self.iteration]
            atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    # signals
    @contextlib.contextmanager
    def _stop_on_signals(self):
        """While training, SIGUSR1 / SIGTERM / SIGINT only set a flag; the loop then finishes the
        current step, writes last.pt and stops (raising Preempted)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {}

        def handler(signum, frame):
            self.stop_signal = signal.Signals(signum).name
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), handler)
        try:
            yield
        finally:
            for name, h in previous.items():
                signal.signal(getattr(signal, name), h)

    def _should_stop(self) -> bool:
        stop = self.stop_signal is not None
        if self.dist.world_size > 1:   # every process must stop at the same step
            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    # the loop
    def train(self) -> dict:
        try:
            with self._stop_on_signals():
                return self._train()
        finally:
            if self.own_process_group and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _train(self) -> dict:
        cfg, main = self.cfg, self.dist.is_main
        last = os.path.join(self.out_dir, "last.pt")
        if cfg.resume:
            self.resume_from(last)
        elif main and os.path.exists(self.metrics_path):
            os.remove(self.metrics_path)    # a fresh run starts a fresh log
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.max_iters, initial=self.iteration, disable=not (cfg.progress and main),
                   desc="train", unit="it", dynamic_ncols=True, mininterval=1.0)
        tokens_per_iter = cfg.batch_size * cfg.grad_accum * self.block_size * self.dist.world_size
        window_loss = torch.zeros((), device=self.device)
        window_start, window_iters = time.perf_counter(), 0
        stopped_early = False
        self.model.train()
        while self.iteration < cfg.max_iters:
            lr = lr_at(self.iteration, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            first = self.iteration * cfg.grad_accum
            micro = [self.batches.get(first + k) for k in range(cfg.grad_accum)]
            loss = train_step(self.train_model, self.optimizer, micro, cfg.grad_clip, self.autocast, self.scaler)
            window_loss += loss
            window_iters += 1
            self.iteration += 1
            bar.update(1)
            if self.iteration % cfg.log_interval == 0 or self.iteration == cfg.max_iters:
                if self.dist.world_size > 1:
                    torch.distributed.all_reduce(window_loss)
                    window_loss /= self.dist.world_size
                mean_loss = float(window_loss) / window_iters        # the one sync per log interval
                now = time.perf_counter()
                self.elapsed += now - window_start
                self._check_finite(mean_loss, "training")
                tps = tokens_per_iter * window_iters / max(now - window_start, 1e-9)
                rec = {"kind": "train", "iter": self.iteration, "time": round(self.elapsed, 3), "loss": mean_loss,
                       "ppl": math.exp(min(mean_loss, 700.0)), "lr": lr, "tokens_per_sec": round(tps, 1)}
                postfix = dict(loss=f"{mean_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tps:,.0f}")
                if self.mfu_per_token:
                    rec["mfu"] = round(tps * self.mfu_per_token, 4)
                    postfix["mfu"] = f"{rec['mfu']:.0%}"
                if main:
                    append_jsonl(self.metrics_path, rec)
                bar.set_postfix(**postfix)
                window_loss.zero_()
                window_start, window_iters = time.perf_counter(), 0
            if self.iteration % cfg.eval_interval == 0 or self.iteration == cfg.max_iters:
                t0 = time.perf_counter()
                stopped_early = self._evaluate_and_checkpoint(bar)
                window_start += time.perf_counter() - t0          # evaluation time is not training time
                if stopped_early:
                    break
            if self._should_stop():
                self.elapsed += time.perf_counter() - window_start
                self.save("last.pt")
                bar.close()
                raise Preempted(f"stopped by {self.stop_signal or 'a signal on another process'} after iteration "
                                f"{self.iteration}; {last} is up to date. Resume with the same command plus --resume")
        bar.close()
        if main:
            plot_curves(read_jsonl(self.metrics_path), self.out_dir)
        return {"iterations": self.iteration, "best_valid_ppl": self.best_ppl, "train_seconds": self.elapsed,
                "stopped_early": stopped_early, "out_dir": self.out_dir}

    def _check_finite(self, value: float, what: str) -> None:
        if not math.isfinite(value):
            raise DivergedError(
                f"{what} loss became {value} at iteration {self.iteration}; stopped. The last good "
                f"checkpoint ({os.path.join(self.out_dir, 'last.pt')}, if any) is untouched. "
                "Lower --lr, keep --grad-clip on, or use --precision fp32")

    def _evaluate_and_checkpoint(self, bar) -> bool:
        """Evaluate, log, write last.pt (and best.pt); True when early stopping says stop."""
        cfg = self.cfg
        res = evaluate(self.model, self.valid_ids, self.block_size, cfg.eval_batch_size or cfg.batch_size,
                       self.device, cfg.eval_batches, cfg.precision, self.dist)
        self._check_finite(res.loss, "validation")
        improved = res.ppl < self.best_ppl
        if improved:
            self.best_ppl, self.evals_since_best = res.ppl, 0
        else:
            self.evals_since_best += 1
        rec = {"kind": "eval", "iter": self.iteration, "time": round(self.elapsed, 3),
               "valid_loss": res.loss, "valid_ppl": res.ppl, "valid_nll": res.nll, "valid_tokens": res.tokens,
               "best_valid_ppl": self.best_ppl}
        if self.device.type == "cuda":
            rec["peak_gpu_mem_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if self.dist.is_main:
            append_jsonl(self.metrics_path, rec)
        self.save(*(("last.pt", "best.pt") if improved else ("last.pt",)))
        if self.dist.is_main:
            bar.write(f"iter {self.iteration}: valid loss {res.loss:.4f}, ppl {res.ppl:.2f}"
                      + (" (best)" if improved else ""))
        return cfg.patience is not None and self.evals_since_best >= cfg.patience
