"""Optimisation, written from scratch: the AdamW optimizer, the learning-rate schedule and gradient clipping.

All three are what the Trainer uses (gpt/trainer.py): `make_optimizer` builds AdamW for optimizer "adamw",
the loop sets every group's lr to `lr_at(iteration, cfg)` before each step, and `train_step` clips with
`clip_grad_norm`. They agree with torch.optim.AdamW and torch.nn.utils.clip_grad_norm_ to rounding.

Both AdamW and clip_grad_norm work on a whole list of tensors at once with PyTorch's "foreach" ops
(torch._foreach_mul_(tensors, x) is `for t in tensors: t.mul_(x)`, but done in C++ in one call, and on a GPU
in a few kernel launches instead of one per tensor): a model has dozens of parameter tensors, and a Python
loop of small tensor operations over them costs more than the arithmetic itself.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch


# -- AdamW ---------------------------------------------------------------------------------------

class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").

    For each parameter p with gradient g, at step t = 1, 2, ... (hyperparameters per parameter group):
        p   <- p * (1 - lr * weight_decay)                  decoupled decay: not part of the gradient
        m   <- beta1 * m + (1 - beta1) * g                  first moment (a running mean of g)
        v   <- beta2 * v + (1 - beta2) * g * g              second moment (a running mean of g^2)
        m^  = m / (1 - beta1^t),  v^ = v / (1 - beta2^t)    bias correction (m and v start at 0)
        p   <- p - lr * m^ / (sqrt(v^) + eps)

    State, per parameter, in self.state[p] (so state_dict(), load_state_dict() and checkpoints hold it):
    "step" (an int: how many updates this parameter has had), "exp_avg" (m) and "exp_avg_sq" (v).
    A parameter without a gradient is skipped (its step does not advance). Works with
    torch.amp.GradScaler (scaler.step(optimizer) unscales the gradients first and skips the step on inf/NaN)
    and with DistributedDataParallel (which averages the gradients before step() sees them).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        if not lr >= 0:
            raise ValueError(f"invalid learning rate {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid betas {betas}: each must be in [0, 1)")
        if not eps >= 0:
            raise ValueError(f"invalid eps {eps}")
        if not weight_decay >= 0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        # torch.optim.AdamW keeps "step" as a 0-dim tensor: accept its state dicts too (and keep ints).
        for state in self.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = int(state["step"].item())

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient. closure: re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:   # the first step of p: the moments start at zero
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            # TODO(adamw-step): the AdamW update of the docstring, in place, for every i: params[i] has gradient
            # grads[i], moments exp_avgs[i] = m and exp_avg_sqs[i] = v, and steps[i] = t, this update's step
            # number (1 on the first). A loop over i with the tensors' own in-place methods is correct:
            #   x.mul_(s)  x *= s;  x.lerp_(y, w)  x += w * (y - x)  (m.lerp_(g, 1 - beta1) updates m);
            #   x.addcmul_(y, z, value=c)  x += c * y * z;  x.addcdiv_(y, z, value=c)  x += c * y / z;
            #   y.sqrt(), y.div(s), y.add(s)  new tensors.
            # (1) Decoupled weight decay first: p *= 1 - lr * weight_decay (skip it when weight_decay is 0).
            # Never add weight_decay * p to the gradient: that is Adam with L2, which Adam's per-coordinate
            # normalisation then weakens wherever gradients are large. (2) m and v (v averages g * g).
            # (3) Bias correction with each parameter's own t, as plain Python numbers: bias1 = 1 - beta1 ** t,
            # bias2 = 1 - beta2 ** t (m and v start at 0, so after step 1 m is only (1 - beta1) * g).
            # (4) denominator = sqrt(v) / sqrt(bias2) + eps (eps added after the correction), then
            # p += (-lr / bias1) * m / denominator. Do not change the gradients.
            # Faster (optional): PyTorch's foreach functions do each operation for the whole list in one call
            # (torch._foreach_mul_(xs, s) is `for x in xs: x.mul_(s)`; a scalar may be a list, one per tensor),
            # which saves the fixed cost of dozens of small operations per step.
            ### BEGIN SOLUTION
            if weight_decay != 0:
                torch._foreach_mul_(params, 1 - lr * weight_decay)
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sqs, beta2)
            torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
            step_sizes = [-lr / (1 - beta1 ** t) for t in steps]
            bias2_sqrt = [math.sqrt(1 - beta2 ** t) for t in steps]
            denom = torch._foreach_sqrt(exp_avg_sqs)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avgs, denom, step_sizes)
            ### END SOLUTION
        return loss


# -- the learning-rate schedule ------------------------------------------------------------------

def lr_at(it: int, cfg) -> float:
    """Learning rate for iteration `it` (0-based): a linear warm-up over cfg.warmup_iters iterations, then
    constant (cfg.schedule == "constant") or a cosine decay from cfg.learning_rate at the end of the warm-up
    to the floor cfg.learning_rate * cfg.min_lr_ratio at cfg.max_iters, and the floor after that.
    cfg: a gpt.trainer.TrainConfig (anything with those fields)."""
    # TODO(lr-schedule): with lr = cfg.learning_rate and W = cfg.warmup_iters:
    # - warm-up, it < W: lr * (it + 1) / W (iteration 0 already trains with lr / W, not 0; it = W - 1
    #   reaches lr). W = 0 means no warm-up at all (do not divide by it).
    # - after it: lr when cfg.schedule == "constant"; else the cosine: progress = (it - W) / (max_iters - W)
    #   (at least 1 in the denominator), capped at 1 so that iterations past max_iters stay at the floor,
    #   and floor + 0.5 * (lr - floor) * (1 + cos(pi * progress)) with floor = lr * cfg.min_lr_ratio.
    #   The cosine ends at the floor, not at 0: with min_lr_ratio 0.1 the last iterations still learn.
    ### BEGIN SOLUTION
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / cfg.warmup_iters
    if cfg.schedule == "constant":
        return cfg.learning_rate
    span = max(1, cfg.max_iters - cfg.warmup_iters)
    progress = min(1.0, (it - cfg.warmup_iters) / span)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (1 + math.cos(math.pi * progress))
    ### END SOLUTION


# -- gradient clipping ---------------------------------------------------------------------------

def clip_grad_norm(parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float) -> torch.Tensor:
    """Scale all gradients together so that their global L2 norm is at most max_norm; returns the norm
    before clipping (a 0-dim tensor). Like torch.nn.utils.clip_grad_norm_: the norm is that of all gradients
    as one long vector, the scale is max_norm / (norm + 1e-6) capped at 1, and parameters without a
    gradient are skipped."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    # TODO(clip-grad-norm): the global norm is sqrt(sum over all gradients of their squared entries), i.e.
    # the norm of the vector of per-gradient norms: torch._foreach_norm(grads) gives those (one 0-dim tensor
    # each); torch.linalg.vector_norm(torch.stack(...)) combines them. Then multiply every gradient by the
    # same factor min(1, max_norm / (total + 1e-6)) (torch._foreach_mul_(grads, factor) takes a 0-dim tensor:
    # torch.clamp(..., max=1.0) keeps it on the device, no .item() and no GPU sync). Name the norm `total`.
    # Pitfalls: clipping each gradient to max_norm on its own (that changes the update's direction); leaving
    # out the cap at 1 (a small gradient would be scaled UP to max_norm).
    ### BEGIN SOLUTION
    norms = torch._foreach_norm(grads)
    device = grads[0].device
    total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    torch._foreach_mul_(grads, factor)
    ### END SOLUTION
    return total
