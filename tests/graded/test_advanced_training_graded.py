"""Graded (advanced level): the BPE training loop (gpt/bpe.py), AdamW, the learning-rate schedule and
gradient clipping (gpt/optim.py).

Each `probe_*` runs in a separate process on your code; the expected values are pinned by hand here or
computed in this process with PyTorch's own torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ on the
same tensors. A straightforward BPE trainer (recount every pair each step) is fast enough for these corpora."""

import math

import pytest
import torch

from graded.helpers import expect


# -- bpe-train ------------------------------------------------------------------------------------

def probe_bpe_train(corpus, vocab_size):
    from gpt.bpe import BPETokenizer
    tok = BPETokenizer.train(corpus, vocab_size=vocab_size, special_tokens=())
    return sorted(([a, b, i] for (a, b), i in tok.merges.items()), key=lambda m: m[2])


def check_merges(got, want, corpus, hint):
    show = {i: f"{bytes(merged)!r}" for i, merged in _merged_bytes(want).items()}
    expect(got == want, f"the merges learned from {corpus!r}, as [a, b, new id] in the order learned",
           f"{want}  (i.e. {', '.join(f'{i}={s}' for i, s in show.items())})", got, hint)


def _merged_bytes(merges):
    vocab = {i: [i] for i in range(256)}
    for a, b, i in merges:
        vocab[i] = vocab[a] + vocab[b]
    return {i: vocab[i] for _, _, i in merges}


@pytest.mark.points(3, todo="bpe-train")
def test_bpe_train_repeated_letters(student):
    """"aaaa" learns (a, a) then (256, 256); training stops when no pair is left"""
    a = ord("a")
    for corpus, vocab_size, want, hint in [
            ("aaaa", 258, [[a, a, 256], [256, 256, 257]],
             "after merging (a, a), \"aaaa\" is [256, 256]: count its pairs again from the merged word"),
            ("aaa", 258, [[a, a, 256], [256, a, 257]],
             "\"aaa\" holds (a, a) twice but merges it once (left to right): [256, a]"),
            ("aaaa", 256 + 5, [[a, a, 256], [256, 256, 257]],
             "when no adjacent pair is left (every word is one token), stop: the vocabulary is smaller than "
             "asked (no error, no endless loop)")]:
        got = student.call(probe_bpe_train, corpus, vocab_size)
        check_merges(got, want, corpus, hint)


@pytest.mark.points(3, todo="bpe-train")
def test_bpe_train_breaks_ties_by_bytes(student):
    """equal counts go to the pair whose bytes come first, compared as bytes (not ids, not first seen)"""
    a, b, c, d, sp = ord("a"), ord("b"), ord("c"), ord("d"), ord(" ")
    got = student.call(probe_bpe_train, ["cd", "ab"], 258)
    check_merges(got, [[a, b, 256], [c, d, 257]], ["cd", "ab"],
                 "(c, d) and (a, b) both occur once: the tie goes to the smaller bytes b\"ab\", not to the pair "
                 "counted first (max over a dict returns the first maximum it meets)")
    corpus = "ab ab ab cd cd"
    got = student.call(probe_bpe_train, corpus, 259)
    check_merges(got, [[a, b, 256], [sp, 256, 257], [sp, c, 258]], corpus,
                 "after (a, b) -> 256, the pairs (\" \", 256), (\" \", c) and (c, d) each occur twice: compare "
                 "their BYTES (b\" \", b\"ab\") < (b\" \", b\"c\"), not their ids (32, 256) > (32, 99)")


@pytest.mark.points(3, todo="bpe-train")
def test_bpe_train_counts_each_pretoken_with_its_frequency_and_keeps_counts_current(student):
    """a pre-token that occurs twice counts its pairs twice; after a merge, the counts are those of the merged pre-tokens"""
    a, b, c, d, e, f = (ord(ch) for ch in "abcdef")
    corpus = "ab\ncd\ncd"
    got = student.call(probe_bpe_train, corpus, 258)
    check_merges(got, [[c, d, 256], [a, b, 257]], corpus,
                 "\"cd\" occurs twice, so (c, d) has count 2 and comes before (a, b): count each distinct "
                 "pre-token's pairs with weight = its frequency")
    corpus = "\n".join(["bcd"] * 3 + ["cd"] * 3 + ["bc"] * 2 + ["ef"] * 4)
    got = student.call(probe_bpe_train, corpus, 260)
    check_merges(got, [[c, d, 256], [e, f, 257], [b, 256, 258], [b, c, 259]], corpus,
                 "first (c, d) (6 times); then \"bcd\" is [b, 256], so (b, c) drops from 5 to 2 and (e, f) (4) is "
                 "next. Counts kept incrementally must lose the pairs a merge destroyed (and heap entries with an "
                 "out-of-date count must be skipped)")


# -- adamw-step -----------------------------------------------------------------------------------

def probe_adamw(init, groups, grads, hyper, resume_after=None):
    """AdamW on copies of `init`: groups = [(indices, weight_decay)], grads[step][i] (None: no gradient).
    Returns the parameters after every step. resume_after=k: after k steps, a fresh AdamW on fresh
    parameters continues from state_dict() (what a checkpoint resume does)."""
    from gpt.optim import AdamW

    def build(values, state=None):
        params = [v.clone().requires_grad_() for v in values]
        opt = AdamW([{"params": [params[i] for i in idx], "weight_decay": wd} for idx, wd in groups], **hyper)
        if state is not None:
            opt.load_state_dict(state)
        return params, opt

    params, opt = build(init)
    after = []
    for k, step_grads in enumerate(grads):
        if resume_after is not None and k == resume_after:
            params, opt = build([p.detach() for p in params], opt.state_dict())
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        opt.step()
        after.append([p.detach().clone() for p in params])
    return {"after": after, "grads_unchanged": all(p.grad is None or torch.equal(p.grad, g)
                                                   for p, g in zip(params, grads[-1]))}


def torch_adamw(init, groups, grads, hyper, variant=None):
    """torch.optim.AdamW on the same inputs (variant: a plausible mistake, to name it in the message)."""
    params = [v.clone().requires_grad_() for v in init]
    pg = [{"params": [params[i] for i in idx], "weight_decay": wd} for idx, wd in groups]
    if variant == "l2":
        opt = torch.optim.Adam(pg, **hyper)
    elif variant == "decay-without-lr":
        opt = torch.optim.AdamW([dict(g, weight_decay=g["weight_decay"] / hyper["lr"]) for g in pg], **hyper)
    else:
        opt = torch.optim.AdamW(pg, **hyper)
    after = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = None if g is None else g.clone()
        if variant == "no-bias-correction":
            _adamw_without_bias_correction(opt)
        else:
            opt.step()
        after.append([p.detach().clone() for p in params])
    return after


@torch.no_grad()
def _adamw_without_bias_correction(opt):
    for group in opt.param_groups:
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            st = opt.state[p]
            if not st:
                st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
            p.mul_(1 - group["lr"] * group["weight_decay"])
            st["m"].lerp_(p.grad, 1 - beta1)
            st["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.addcdiv_(st["m"], st["v"].sqrt().add_(group["eps"]), value=-group["lr"])


MISTAKES = {"l2": "weight decay added to the gradient (Adam with L2): AdamW decays the parameters directly, "
                  "params *= 1 - lr * weight_decay, apart from the Adam step",
            "no-bias-correction": "no bias correction: divide m by 1 - beta1**t and v by 1 - beta2**t (t = the "
                                  "parameter's step count, 1 on the first step)",
            "decay-without-lr": "the decay factor must be 1 - lr * weight_decay, not 1 - weight_decay"}


def max_diff(a, b):
    return max((x - y).abs().max().item() if x.shape == y.shape else float("inf") for x, y in zip(a, b))


def compare_adamw(got, init, groups, grads, hyper, what):
    want = torch_adamw(init, groups, grads, hyper)
    for k, (g, w) in enumerate(zip(got, want)):
        err = max_diff(g, w)
        if not err < 1e-6:
            guess = [MISTAKES[v] for v in MISTAKES if max_diff(g, torch_adamw(init, groups, grads, hyper, v)[k]) < 1e-6]
            expect(False, f"{what}: parameters after step {k + 1}", "torch.optim.AdamW's, within 1e-6",
                   f"max difference {err:.3g}", guess[0] if guess else
                   "decay first, then m, v, the bias corrections of step t and the step -lr/bias1 * m / "
                   "(sqrt(v)/sqrt(bias2) + eps); each group's own lr, betas, eps and weight_decay")


def adamw_case(seed, shapes, n_steps, missing=()):
    g = torch.Generator().manual_seed(seed)
    init = [torch.randn(*s, generator=g) for s in shapes]
    grads = [[None if (k, i) in missing else torch.randn(*s, generator=g) * 10 ** (i - 1)
              for i, s in enumerate(shapes)] for k in range(n_steps)]
    return init, grads


HYPER = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8)


@pytest.mark.points(4, todo="adamw-step")
def test_adamw_matches_torch_step_by_step(student):
    """two groups (weight decay 0.1 and 0), six steps: the same parameters as torch.optim.AdamW after each"""
    init, grads = adamw_case(0, [(6, 4), (4,), (3, 5), (5,)], 6, missing={(2, 3)})
    groups = [([0, 2], 0.1), ([1, 3], 0.0)]
    got = student.call(probe_adamw, init, groups, grads, HYPER)
    compare_adamw(got["after"], init, groups, grads, HYPER, "AdamW (lr 1e-2, betas (0.9, 0.95), wd 0.1 and 0)")
    expect(got["grads_unchanged"], "the gradients after step()", "unchanged", "modified",
           "the update reads the gradients; it must not write them (decay the parameters, not the gradients)")


@pytest.mark.points(2, todo="adamw-step")
def test_adamw_first_step_moves_each_weight_by_lr(student):
    """hand-computed: after bias correction, step 1 moves every coordinate by lr * sign(g), whatever |g|"""
    p0 = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    grad = torch.tensor([[1e-3, -5.0, 2e2], [-1e-2, 0.3, 7.0]])
    lr, wd = 0.1, 0.5
    got = student.call(probe_adamw, [p0], [([0], wd)], [[grad]], dict(lr=lr, betas=(0.9, 0.999), eps=1e-8))
    want = p0 * (1 - lr * wd) - lr * grad / (grad.abs() + 1e-8)    # m^ = g, v^ = g^2 at t = 1
    err = max_diff(got["after"][0], [want])
    expect(err < 1e-6, "parameters after one step (lr 0.1, weight decay 0.5)",
           f"p * (1 - lr * wd) - lr * sign(g) = {want.tolist()}", f"{got['after'][0][0].tolist()}",
           "at t = 1 the corrected moments are m^ = g and v^ = g * g, so the step is lr * g / (|g| + eps); "
           "smaller means the bias correction is missing, and the decay is p * (1 - lr * weight_decay)")


@pytest.mark.points(2, todo="adamw-step")
def test_adamw_resumes_from_its_state_dict(student):
    """3 steps, state_dict() into a fresh AdamW on fresh parameters, 3 more: same as 6 uninterrupted steps"""
    init, grads = adamw_case(1, [(4, 3), (3,)], 6)
    groups = [([0], 0.1), ([1], 0.0)]
    got = student.call(probe_adamw, init, groups, grads, HYPER, 3)
    compare_adamw(got["after"], init, groups, grads, HYPER, "AdamW resumed after 3 steps from state_dict()")


# -- lr-schedule -----------------------------------------------------------------------------------

def probe_lr(cfg, its):
    from gpt.optim import lr_at
    from gpt.trainer import TrainConfig
    c = TrainConfig(**cfg)
    return [lr_at(it, c) for it in its]


def check_lr(student, cfg, cases, hint_for):
    got = student.call(probe_lr, cfg, [it for it, _ in cases])
    for (it, want), g in zip(cases, got):
        expect(_number(g) is not None and abs(_number(g) - want) < 1e-9, f"lr_at({it}) with {cfg}", want, g,
               hint_for(it))


def _number(value):
    """A returned learning rate as a float (a Python or NumPy number, or a one-element tensor), else None."""
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


COSINE = dict(learning_rate=1.0, warmup_iters=10, max_iters=110, min_lr_ratio=0.1)


@pytest.mark.points(2, todo="lr-schedule")
def test_lr_warms_up_linearly(student):
    """warm-up: lr * (it + 1) / warmup_iters, from lr/10 at iteration 0 to lr at iteration 9"""
    check_lr(student, COSINE, [(0, 0.1), (4, 0.5), (9, 1.0)],
             lambda it: "during warm-up (it < warmup_iters) the rate is lr * (it + 1) / warmup_iters: it is not 0 "
                        "at iteration 0 and reaches lr at iteration warmup_iters - 1")


@pytest.mark.points(3, todo="lr-schedule")
def test_lr_cosine_decays_to_the_floor(student):
    """cosine from lr after the warm-up to lr * min_lr_ratio at max_iters, and the floor after it"""
    quarter = 0.1 + 0.45 * (1 + math.cos(math.pi / 4))
    check_lr(student, COSINE, [(10, 1.0), (35, quarter), (60, 0.55), (110, 0.1), (111, 0.1), (500, 0.1)],
             lambda it: {10: "the cosine starts at lr right after the warm-up (progress 0)",
                         110: "at max_iters the rate is the floor lr * min_lr_ratio (0.1 here), not 0",
                         111: "past max_iters the rate stays at the floor: cap the progress at 1",
                         500: "past max_iters the rate stays at the floor: cap the progress at 1"}.get(
                 it, "floor + 0.5 * (lr - floor) * (1 + cos(pi * progress)), progress = (it - warmup) / "
                     "(max_iters - warmup), floor = lr * min_lr_ratio"))


@pytest.mark.points(2, todo="lr-schedule")
def test_lr_without_warmup_and_constant(student):
    """warmup_iters=0 starts at lr (no division by zero); schedule "constant" stays at lr after the warm-up"""
    check_lr(student, dict(learning_rate=2.0, warmup_iters=0, max_iters=100, min_lr_ratio=0.1),
             [(0, 2.0), (50, 1.1), (100, 0.2)],
             lambda it: "warmup_iters = 0: no warm-up, the cosine starts at iteration 0 with progress it / max_iters")
    check_lr(student, dict(learning_rate=1.0, warmup_iters=10, max_iters=100, schedule="constant"),
             [(5, 0.6), (10, 1.0), (1000, 1.0)],
             lambda it: "schedule \"constant\": the same warm-up, then lr for ever")


# -- clip-grad-norm --------------------------------------------------------------------------------

def probe_clip(grads, max_norm):
    from gpt.optim import clip_grad_norm
    params = [torch.zeros(3 if g is None else g.shape, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()
    total = clip_grad_norm(params, max_norm)
    return {"norm": float(total), "grads": [p.grad for p in params]}


def torch_clip(grads, max_norm):
    params = [torch.zeros(3 if g is None else g.shape, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()
    total = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return {"norm": float(total), "grads": [p.grad for p in params]}


def compare_clip(got, want, grads, what):
    expect(abs(got["norm"] - want["norm"]) < 1e-5 * want["norm"], f"{what}: the norm returned", want["norm"],
           got["norm"], "return the global norm BEFORE clipping: sqrt of the sum of all gradients' squared entries")
    for i, (g, w) in enumerate(zip(got["grads"], want["grads"])):
        if w is None:
            expect(g is None, f"{what}: gradient {i} (a parameter without gradient)", None, "a tensor",
                   "skip parameters whose .grad is None")
            continue
        err = (g - w).abs().max().item() if g is not None and g.shape == w.shape else float("inf")
        ratio = (g.norm() / grads[i].norm()).item() if g is not None and g.shape == w.shape else None
        expect(err < 1e-6, f"{what}: gradient {i} after clipping", f"{w.tolist()}",
               f"{g.tolist() if g is not None else None}",
               "every gradient is multiplied by the SAME factor min(1, max_norm / (total + 1e-6)), with total the "
               "norm of all gradients together" + (f" (gradient {i} was scaled by {ratio:.4g})" if ratio else ""))


@pytest.mark.points(4, todo="clip-grad-norm")
def test_clip_scales_all_gradients_by_the_global_norm(student):
    """the global norm of all gradients; each scaled by the same factor; parameters without gradient skipped"""
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(4, 3, generator=g), None, torch.randn(5, generator=g) * 3, torch.tensor([0.5, -0.25])]
    got = student.call(probe_clip, grads, 1.0)
    compare_clip(got, torch_clip(grads, 1.0), grads, "clip_grad_norm(params, 1.0)")
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0]])]           # global norm 5 (not 3 or 4)
    got = student.call(probe_clip, grads, 2.5)
    compare_clip(got, torch_clip(grads, 2.5), grads, "clip_grad_norm on gradients [3, 0] and [[0, 4]], max_norm 2.5")


@pytest.mark.points(2, todo="clip-grad-norm")
def test_clip_leaves_a_small_norm_alone(student):
    """a global norm below max_norm leaves every gradient as it is"""
    grads = [torch.tensor([0.3, -0.4]), torch.tensor([[0.1, 0.2], [0.0, -0.2]])]
    got = student.call(probe_clip, grads, 10.0)
    want = torch_clip(grads, 10.0)
    expect(all(torch.allclose(a, b, rtol=0, atol=1e-7) for a, b in zip(got["grads"], grads)),
           "gradients after clip_grad_norm(params, 10.0) when their norm is 0.59", [x.tolist() for x in grads],
           [x.tolist() if x is not None else None for x in got["grads"]],
           "the factor is min(1, max_norm / (total + 1e-6)): without the min, small gradients are scaled UP")
    compare_clip(got, want, grads, "clip_grad_norm(params, 10.0)")
