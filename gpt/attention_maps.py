"""Attention maps: where each position of a prompt looks, in every layer and head.

`attention_weights(model, idx)` runs the model once and records, for every block, the input of its
attention (the output of ln_1). From it the weights are recomputed here, written out on their own:
q and k from the block's c_attn, softmax(q k^T / sqrt(hs)) with the future masked. This does not
depend on how the model computes attention (the hand-written `_manual` or the fused SDPA, which
never materialises the weights); tests check that the weights times v give the block's output.

Row t of a map is query position t, column s key position s: the weight row t puts on token s.
Each row sums to 1 and is 0 right of the diagonal (causal).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from gpt.utils import pyplot, save_figure


@torch.no_grad()
def attention_weights(model, idx: torch.Tensor) -> torch.Tensor:
    """Causal attention weights (n_layer, B, n_head, T, T) of the GPT `model` on token ids idx (B, T)."""
    inputs = []
    hooks = [block.attn.register_forward_pre_hook(lambda mod, args: inputs.append(args[0]))
             for block in model.transformer.h]
    was_training = model.training
    model.eval()   # no dropout: the weights the model uses at inference
    try:
        model(idx)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return torch.stack([weights_of(block.attn, x) for block, x in zip(model.transformer.h, inputs)])


def weights_of(attn, x: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs) + causal mask) of one CausalSelfAttention on its input x (B, T, C): (B, nh, T, T)."""
    B, T, C = x.shape
    hs = C // attn.n_head
    q, k, _ = attn.c_attn(x).split(C, dim=2)                                       # each (B, T, C)
    q = q.view(B, T, attn.n_head, hs).transpose(1, 2)                              # (B, nh, T, hs)
    k = k.view(B, T, attn.n_head, hs).transpose(1, 2)                              # (B, nh, T, hs)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)                             # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)           # s > t
    return F.softmax(scores.float().masked_fill(future, float("-inf")), dim=-1)


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
