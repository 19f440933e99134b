"""Attention maps: where each position of a prompt looks, in every layer and head.

`attention_weights(model, idx)` runs the model once and records the weights its own hand-written
attention computes (CausalSelfAttention.attend, your TODO): they are what `attend` passes through
`self.attn_dropout`, which is the identity in eval mode, so a forward hook on that module sees them
without changing the model. Models built with attn_impl="sdpa" (whose fused kernel never forms the
weights) are switched to the manual path for this one pass; the result is the same function.

Row t of a map is query position t, column s key position s: the weight row t puts on token s.
Each row sums to 1 and is 0 right of the diagonal (causal).
"""

from __future__ import annotations

import numpy as np
import torch

from gpt.utils import pyplot, save_figure


@torch.no_grad()
def attention_weights(model, idx: torch.Tensor) -> torch.Tensor:
    """Causal attention weights (n_layer, B, n_head, T, T) of the GPT `model` on token ids idx (B, T)."""
    attns = [block.attn for block in model.transformer.h]
    seen = []   # one (B, nh, T, T) per layer, in order
    hooks = [a.attn_dropout.register_forward_hook(lambda mod, args, out: seen.append(args[0])) for a in attns]
    impls, was_training = [a.attn_impl for a in attns], model.training
    try:
        model.eval()   # no dropout: the weights the model uses at inference
        for a in attns:
            a.attn_impl = "manual"
        model(idx)
    finally:
        for a, impl in zip(attns, impls):
            a.attn_impl = impl
        model.train(was_training)
        for h in hooks:
            h.remove()
    if len(seen) != len(attns):
        raise RuntimeError(f"saw {len(seen)} attention weight tensors for {len(attns)} layers: attend must pass "
                           "its softmax weights through self.attn_dropout (TODO attention-forward)")
    return torch.stack(seen).float()


def plot_attention(path, weights: np.ndarray, tokens: list[str], layers: list[int], heads: list[int],
                   title: str = "") -> None:
    """A grid of maps, one row per layer and one column per head. weights: (len(layers), len(heads), T, T).

    Every panel has the prompt's tokens on both axes: queries down (the token doing the looking),
    keys across (the token looked at). Brighter is more weight; the masked future (upper triangle) is grey.
    """
    plt = pyplot()
    T = len(tokens)
    cell = max(2.4, 0.22 * T + 1.0)                                # inches per panel: every label fits
    fig, axes = plt.subplots(len(layers), len(heads), figsize=(cell * len(heads) + 1, cell * len(layers) + 0.6),
                             squeeze=False, layout="constrained")
    font = 8                                                       # each token has about 0.22 inch
    cmap = plt.get_cmap("viridis").with_extremes(bad="#e8e8e8")      # the masked future in light grey
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    for r, layer in enumerate(layers):
        for c, head in enumerate(heads):
            ax = axes[r, c]
            im = ax.imshow(np.ma.masked_where(future, weights[r, c]), cmap=cmap, vmin=0.0, vmax=1.0,
                           interpolation="nearest")
            ax.set_title(f"layer {layer}, head {head}", fontsize=8)
            ax.set_xticks(range(T), tokens if r == len(layers) - 1 or len(layers) == 1 else [""] * T,
                          rotation=90, fontsize=font)
            ax.set_yticks(range(T), tokens if c == 0 else [""] * T, fontsize=font)
    axes[-1, 0].set_xlabel("key (attended to)", fontsize=8)
    axes[-1, 0].set_ylabel("query (attending)", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=100 if len(layers) * len(heads) > 16 else 120)
