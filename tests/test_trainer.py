"""Trainer: the perplexity definition, optimizer groups, the schedule, the training step,
exact resume after a crash, and stopping on NaN."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gpt.trainer as trainer_mod
from gpt.bpe import BPETokenizer
from gpt.model import GPT, GPTConfig
from gpt.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from gpt.optim import AdamW
from gpt.trainer import DivergedError, TrainConfig, Trainer, evaluate, lr_at, make_optimizer, train_step
from gpt.utils import read_jsonl
from gpt.windows import WindowBatches


def tiny_model(dropout=0.0, seed=0, vocab=50, block=8):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=16, dropout=dropout))


def test_perplexity_is_exp_of_total_nll_over_total_tokens():
    model = tiny_model().eval()
    ids = np.random.default_rng(0).integers(0, 50, 61)        # 60 predictions: 7 full windows of 8 + one of 4
    res = evaluate(model, ids, block_size=8, batch_size=3)
    total, count, correct = 0.0, 0, 0
    with torch.no_grad():
        for s in range(0, 60, 8):                             # by hand, window by window, token by token
            x = torch.tensor(ids[s:min(s + 8, 60)])[None]
            logp = torch.log_softmax(model(x)[0][0].double(), -1)
            for j in range(x.size(1)):
                total -= logp[j, ids[s + j + 1]].item()
                count += 1
                correct += int(max(range(50), key=lambda v: logp[j, v].item()) == ids[s + j + 1])
    assert res.tokens == count == 60
    assert res.correct == correct and res.accuracy == correct / 60     # token accuracy, padding excluded
    assert res.nll == pytest.approx(total, rel=1e-6)
    assert res.ppl == pytest.approx(math.exp(total / count), rel=1e-6)
    assert res.loss == pytest.approx(total / count, rel=1e-6)


class PredictsZero(torch.nn.Module):
    """Logits whose argmax is always token 0 (the id the padding of the last window holds)."""
    def forward(self, idx, targets=None, mask=None):
        logits = torch.zeros(*idx.shape, 5)
        logits[..., 0] = 1.0
        return logits, None


def test_token_accuracy_counts_real_tokens_only():
    ids = np.array([0, 0, 3, 0, 1, 0, 0, 2, 0, 4, 0])    # 10 predictions; targets 0,3,0,1,0,0,2,0,4,0
    res = evaluate(PredictsZero(), ids, block_size=4, batch_size=2)   # the last window has 2 real tokens, 2 padded
    assert res.tokens == 10 and res.correct == 6 and res.accuracy == 0.6   # the 2 padded zeros do not count


def test_evaluate_max_batches_and_restores_mode():
    model = tiny_model(dropout=0.1)
    model.train()
    ids = np.arange(100) % 50
    res = evaluate(model, ids, 8, 2, max_batches=1)
    assert res.tokens == 16 and model.training


def test_weight_decay_skips_biases_layernorm_and_embeddings():
    model = tiny_model()
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed == {n for n, p in model.named_parameters() if p.dim() == 2 and "wte" not in n and "wpe" not in n}
    all_params = decay["params"] + no_decay["params"]
    assert len(all_params) == len({id(p) for p in all_params}) == len(list(model.parameters()))


@pytest.mark.parametrize("name,cls,momentum", [("adamw", AdamW, None), ("adam", torch.optim.Adam, None),
                                               ("sgd", torch.optim.SGD, 0.0), ("momentum", torch.optim.SGD, 0.9)])
def test_optimizer_choice(name, cls, momentum):
    opt = make_optimizer(tiny_model(), TrainConfig(optimizer=name))
    assert type(opt) is cls
    if momentum is not None:
        assert opt.param_groups[0]["momentum"] == momentum


def test_learning_rate_schedule():
    cfg = TrainConfig(learning_rate=1.0, warmup_iters=10, max_iters=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)             # half way: (1 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    const = TrainConfig(learning_rate=1.0, warmup_iters=10, schedule="constant")
    assert lr_at(5, const) == pytest.approx(0.6) and lr_at(1000, const) == 1.0


def test_bad_train_config_names_the_field():
    for kwargs, field in [(dict(max_iters=0), "max_iters"), (dict(optimizer="lion"), "optimizer"),
                          (dict(precision="fp8"), "precision"), (dict(learning_rate=-1.0), "learning_rate")]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**kwargs)


def test_train_step_equals_a_manual_sgd_step_with_clipping():
    model, ref = tiny_model(), tiny_model()
    x = torch.randint(0, 50, (4, 8))
    y = torch.randint(0, 50, (4, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = train_step(model, opt, [(x, y)], grad_clip=0.01)
    _, ref_loss = ref(x, y)
    ref_loss.backward()
    grads = [p.grad for p in ref.parameters()]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    assert norm > 0.01                                           # so clipping matters
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.5 * p.grad * (0.01 / (norm + 1e-6))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-6)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert all(p.grad is None for p in model.parameters()), "gradients must be reset after the step"


def test_gradient_accumulation_equals_one_big_batch():
    a, b = tiny_model(), tiny_model()
    x, y = torch.randint(0, 50, (8, 8)), torch.randint(0, 50, (8, 8))
    opt_a = torch.optim.SGD(a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    la = train_step(a, opt_a, [(x, y)], grad_clip=0.0)
    lb = train_step(b, opt_b, [(x[:4], y[:4]), (x[4:], y[4:])], grad_clip=0.0)
    assert la.item() == pytest.approx(lb.item(), rel=1e-5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def make_trainer(out_dir, max_iters=12, eval_interval=4, resume=False, seed=0, **kw):
    rng = np.random.default_rng(0)
    train_ids = rng.integers(0, 50, 2000).astype(np.uint16)
    valid_ids = rng.integers(0, 50, 300).astype(np.uint16)
    tok = BPETokenizer.train("some text for the tokenizer " * 5, 260)
    cfg = TrainConfig(device="cpu", max_iters=max_iters, batch_size=4, eval_interval=eval_interval,
                      log_interval=2, warmup_iters=2, out_dir=str(out_dir), resume=resume, seed=seed,
                      progress=False, **kw)
    return Trainer(tiny_model(dropout=0.1, seed=seed), cfg, WindowBatches(train_ids, 8, 4, seed), valid_ids, tok)


def test_training_writes_metrics_checkpoints_and_plots(tmp_path):
    summary = make_trainer(tmp_path).train()
    assert summary["iterations"] == 12
    recs = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["iter"] for r in recs if r["kind"] == "train"] == [2, 4, 6, 8, 10, 12]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["iter"] for r in evals] == [4, 8, 12] and all(r["valid_tokens"] == 299 for r in evals)
    for r in recs:
        if r["kind"] == "train":
            assert r["ppl"] == pytest.approx(math.exp(r["loss"])) and r["tokens_per_sec"] > 0
    assert all(0 <= r["valid_accuracy"] <= 1 for r in evals)
    for name in ("last.pt", "best.pt", "loss.png", "ppl.png", "accuracy.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_valid_ppl"] == min(r["valid_ppl"] for r in evals)
    model, tok = model_from_checkpoint(best)                  # self-contained: model and tokenizer
    assert tok.decode(tok.encode("some text")) == "some text"
    assert model.config.n_layer == 2


def test_resume_after_a_crash_reproduces_the_uninterrupted_run_exactly(tmp_path, monkeypatch):
    full = make_trainer(tmp_path / "full")
    full.train()
    reference = {k: v.clone() for k, v in full.model.state_dict().items()}

    real_step, calls = trainer_mod.train_step, {"n": 0}

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:              # dies during iteration 7; the last checkpoint is from iteration 4
            raise RuntimeError("simulated crash")
        return real_step(*args, **kwargs)
    monkeypatch.setattr(trainer_mod, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_trainer(tmp_path / "crash").train()
    monkeypatch.setattr(trainer_mod, "train_step", real_step)
    assert load_checkpoint(tmp_path / "crash" / "last.pt")["iteration"] == 4
    resumed = make_trainer(tmp_path / "crash", resume=True)
    resumed.train()
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, reference[k]), f"{k} differs after resume"
    iters = [(r["kind"], r["iter"]) for r in read_jsonl(tmp_path / "crash" / "metrics.jsonl")]
    assert iters == [(r["kind"], r["iter"]) for r in read_jsonl(tmp_path / "full" / "metrics.jsonl")]


def test_nan_loss_stops_and_leaves_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step, calls = trainer_mod.train_step, {"n": 0}

    def step(model, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:   # poison the weights during iteration 5, as a diverging run would
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return real_step(model, *args, **kwargs)
    monkeypatch.setattr(trainer_mod, "train_step", step)
    t = make_trainer(tmp_path)
    with pytest.raises(DivergedError, match="nan at iteration 6"):
        t.train()
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_corrupt_or_missing_checkpoint_raises_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    make_trainer(tmp_path, max_iters=4).train()
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "other.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a hw5 checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_compiled_training_matches_eager_and_saves_plain_checkpoints(tmp_path):
    """compile=True (what --fast turns on for GPUs) runs the same computation through torch.compile:
    the same losses as eager (no dropout, so no random streams differ), and checkpoints without the
    wrapper's `_orig_mod.` names, so they load into a plain GPT."""
    rng = np.random.default_rng(0)
    train_ids, valid_ids = rng.integers(0, 50, 2000).astype(np.uint16), rng.integers(0, 50, 300).astype(np.uint16)
    tok = BPETokenizer.train("some text for the tokenizer " * 5, 260)
    losses = {}
    for compiled in (False, True):
        cfg = TrainConfig(device="cpu", max_iters=6, batch_size=4, eval_interval=6, log_interval=2, warmup_iters=2,
                          out_dir=str(tmp_path / str(compiled)), progress=False, compile=compiled)
        Trainer(tiny_model(), cfg, WindowBatches(train_ids, 8, 4, 0), valid_ids, tok).train()
        recs = read_jsonl(tmp_path / str(compiled) / "metrics.jsonl")
        losses[compiled] = [r["loss"] for r in recs if r["kind"] == "train"] + [r["valid_loss"] for r in recs if r["kind"] == "eval"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    ckpt = load_checkpoint(tmp_path / "True" / "last.pt")
    assert not [k for k in ckpt["model"] if "_orig_mod" in k]
    model, _ = model_from_checkpoint(ckpt)
    assert isinstance(model, GPT)


def test_mfu_is_logged_only_where_the_peak_is_known(tmp_path, monkeypatch):
    """On a GPU with a known peak each log line carries mfu = tokens/s x FLOPs per token / peak;
    on the CPU (peak unknown) there is no such field. The peak lookup is faked here (no GPU)."""
    from gpt.model import flops_per_token
    make_trainer(tmp_path / "cpu", max_iters=4, eval_interval=4).train()
    assert not [r for r in read_jsonl(tmp_path / "cpu" / "metrics.jsonl") if "mfu" in r]
    monkeypatch.setattr(trainer_mod, "peak_tflops", lambda device: 1e-3)     # a 1 GFLOP/s "GPU"
    trainer = make_trainer(tmp_path / "gpu", max_iters=4, eval_interval=4)
    trainer.train()
    per_token = flops_per_token(trainer.model.config, 8)
    assert per_token == 6 * (sum(p.numel() for p in trainer.model.parameters()) - 8 * 16) + 12 * 2 * 2 * 8 * 8
    train = [r for r in read_jsonl(tmp_path / "gpu" / "metrics.jsonl") if r["kind"] == "train"]
    assert train and all(r["mfu"] == pytest.approx(r["tokens_per_sec"] * per_token / 1e9, rel=1e-3, abs=1e-4)
                         for r in train)


def _adamw_pair(seed=0):
    """Our AdamW and torch's on two copies of one tiny model, same groups."""
    a, b = tiny_model(seed=seed), tiny_model(seed=seed)
    cfg = TrainConfig(learning_rate=1e-2)
    ours = make_optimizer(a, cfg)
    theirs = torch.optim.AdamW([{"params": list(g["params"]), "weight_decay": g["weight_decay"]}
                                for g in make_optimizer(b, cfg).param_groups], lr=1e-2, betas=cfg.betas)
    return a, ours, b, theirs


def _set_grads(models, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    for ps in zip(*(m.parameters() for m in models)):
        grad = torch.randn(ps[0].shape, generator=g)
        for k, p in enumerate(ps):
            p.grad = grad.clone() * (scale if k == 0 else 1.0)


def test_our_adamw_works_through_a_grad_scaler_and_skips_inf_steps():
    """scaler.step(our AdamW) unscales first (same step as torch's on the true gradients) and skips a step
    whose gradients hold an inf, as it does for torch's optimizers."""
    a, ours, b, theirs = _adamw_pair()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    scaler.scale(torch.ones(()))   # what scaler.scale(loss) does first: sets the scale up
    for step in range(3):
        _set_grads([a, b], step, scale=scaler.get_scale())   # as if backward ran on scaler.scale(loss)
        scaler.step(ours)
        scaler.update()
        theirs.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    before = [p.detach().clone() for p in a.parameters()]
    next(a.parameters()).grad[0] = float("inf")
    scaler.step(ours)
    scaler.update()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before)), "an inf step is skipped"
    assert scaler.get_scale() == 512.0


def test_our_adamw_continues_from_torch_adamw_state():
    """A state_dict of torch.optim.AdamW (its "step" is a tensor) loads into ours and continues identically."""
    a, ours, b, theirs = _adamw_pair()
    for step in range(2):
        _set_grads([b], step)
        theirs.step()
    a.load_state_dict(b.state_dict())
    ours.load_state_dict(copy.deepcopy(theirs.state_dict()))   # a copy, as from a file: no shared moments
    assert all(type(s["step"]) is int for s in ours.state.values())
    for step in range(2, 4):
        _set_grads([a, b], step)
        ours.step()
        theirs.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
