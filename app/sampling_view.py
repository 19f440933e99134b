"""Seeing what the sampling settings do: every combination of temperature, top-p and top-k side by side,
as a table of completions and as a picture of the next-token distribution each setting samples from.

The distribution is the one gpt.sampling.next_token draws from (the softmax of sampling_logits):
temperature reshapes all of it (below 1 sharpens towards the most likely tokens, above 1 flattens
towards uniform); top-k and top-p then cut the tail away (probability exactly 0) and renormalise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from gpt.sampling import sampling_logits
from gpt.utils import pyplot, save_figure


@dataclass(frozen=True)
class Setting:
    """One way of choosing the next token. temperature 0 means greedy (always the most likely token)."""
    temperature: float
    top_p: float | None = None
    top_k: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def label(self) -> str:
        if self.greedy:
            return "greedy"
        parts = [f"T={self.temperature:g}"]
        if self.top_p is not None and self.top_p < 1:
            parts.append(f"top-p={self.top_p:g}")
        if self.top_k is not None:
            parts.append(f"top-k={self.top_k}")
        return " ".join(parts) if len(parts) > 1 else parts[0] + " (no cut)"


def settings_grid(temperatures, top_ps=(None,), top_ks=(None,)) -> list[Setting]:
    """Every combination, temperature slowest; greedy appears once (top-p and top-k do not change it)."""
    out = []
    for t, p, k in itertools.product(temperatures, top_ps, top_ks):
        s = Setting(0.0) if t == 0 else Setting(float(t), p, k)
        if s not in out:
            out.append(s)
    return out


def setting_probs(logits: torch.Tensor, s: Setting) -> tuple[torch.Tensor, torch.Tensor]:
    """(after the temperature, after the cuts): two distributions (V,) for the logits (V,) of one position.

    The second is what sampling with `s` draws from; tokens cut away by top-k / top-p have 0 in it.
    Greedy puts everything on the argmax (the limit of temperature -> 0).
    """
    logits = logits.float()
    if s.greedy:
        onehot = torch.zeros_like(logits)
        onehot[logits.argmax()] = 1.0
        return onehot, onehot
    tempered = torch.softmax(logits / s.temperature, dim=-1)
    final = torch.softmax(sampling_logits(logits[None], s.temperature, s.top_k, s.top_p)[0], dim=-1)
    return tempered, final


def plot_next_token(path, logits: torch.Tensor, settings: list[Setting], token_text, title: str, top: int = 30):
    """One bar chart per setting over the `top` most likely tokens (at temperature 1, the same tokens in
    every panel): light bars after the temperature, dark bars what is sampled from after top-k / top-p.
    A light bar without a dark one is a token the cut removed. token_text: id -> printable label."""
    plt = pyplot()
    base = torch.softmax(logits.float(), dim=-1)
    order = torch.argsort(base, descending=True)[:top]                          # (top,)
    labels = [token_text(int(i)) for i in order]
    cols = min(3, len(settings))
    rows = -(-len(settings) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, s in zip(axes.flat, settings):
        tempered, final = setting_probs(logits, s)
        x = range(len(order))
        ax.bar(x, tempered[order].tolist(), color="#9ecae1", label="after temperature")
        ax.bar(x, final[order].tolist(), width=0.5, color="#08519c", label="sampled from (after cuts)")
        kept = int((final > 0).sum())
        outside = 1.0 - float(final[order].sum())
        ax.set_title(f"{s.label()}: {kept:,} tokens kept, {outside:.0%} of the mass beyond these {len(order)}",
                     fontsize=8)
        ax.set_xticks(list(x), labels, rotation=90, fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("probability")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def visible(text: str) -> str:
    """A token's text made printable on a plot axis: spaces as '␣', newlines as '\\n', other control
    characters as escapes (a byte-level token can be any byte), the empty string as '∅'."""
    text = text.replace(" ", "␣")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text) or "∅"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; '|' and newlines inside cells are escaped so every row stays one line."""
    clean = lambda c: str(c).replace("|", "\\|").replace("\n", " ⏎ ")
    lines = ["| " + " | ".join(map(clean, header)) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(map(clean, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"
