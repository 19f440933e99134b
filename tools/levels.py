"""The assignment levels: which TODOs each level strips, and what hw5.md says about them.

One source of truth for tools/make_handout.py --level: the TODO table, its hints and the score table of
hw5.md are generated from this file and from the points marks of the graded tests (tests/graded/), so
the three assignments never drift apart. hw5.md keeps the standard level's tables between
<!-- BEGIN GENERATED name --> ... <!-- END GENERATED --> markers (tests/test_levels.py checks they are
current; `python tools/levels.py --update` rewrites them), and blocks that belong to some levels only
between <!-- LEVELS intro,standard --> ... <!-- END LEVELS -->.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Todo:
    id: str
    file: str
    function: str            # Markdown for the table's "function" column
    needs: str = ""          # Markdown for the "needs" column: the TODOs its tests also use
    hint: str = ""           # one Markdown bullet for "Hints that save time" (empty: none)


# Every TODO, in the order a student should work (each level lists a subset, in this order).
TODOS = [
    Todo("bpe-count-pairs", "gpt/bpe.py", "`count_pairs`"),
    Todo("bpe-merge", "gpt/bpe.py", "`merge` (used by `BPETokenizer.train`)", "`bpe-count-pairs` (for the training test; at the advanced level also `bpe-train`)",
         "**BPE.** `count_pairs` and `merge` are the two primitives; the trainer calls them in an incremental "
         "loop, so a slow `merge` makes training slow."),
    Todo("bpe-train", "gpt/bpe.py", "`BPETokenizer.train` (the merge loop)", "`bpe-count-pairs`, `bpe-merge`",
         "**BPE training.** Each step takes the most frequent pair over all words, each word counted with its "
         "frequency; ties go to the smaller *bytes* (`(vocab[a], vocab[b])`), not the smaller ids. A loop that "
         "recounts everything each step is correct (and passes the tests) but slow on the real corpus: keep "
         "counts up to date with `_merge_in_words`, which only revisits the words that hold the pair."),
    Todo("bpe-encode-word", "gpt/bpe.py", "`BPETokenizer._encode_chunk`", "",
         "**Encoding.** `_encode_chunk` must apply merges in the order they were learned (lowest id first), not "
         "left to right: on \"abc\" with merges (b,c)→256 then (a,b)→257 the answer is [a, 256] (left to right "
         "would wrongly give [257, c])."),
    Todo("attention-mask", "gpt/model.py", "`CausalSelfAttention.__init__`"),
    Todo("attention-forward", "gpt/model.py", "`CausalSelfAttention._manual`", "`attention-mask`",
         "**Attention.** The mask buffer has ones where attention is allowed. In `_manual`, `q` holds only the new "
         "positions (during generation with the KV cache, a single one at position `past`), while `k` and `v` "
         "hold all positions so far: use rows `past .. past+T-1` of the mask. Scale by 1/sqrt(head size), not "
         "1/head size. The softmax runs over the keys (last dimension)."),
    Todo("sample-top-p", "gpt/sampling.py", "`filter_top_p`", "",
         "**Top-p.** Keep the smallest set of most likely tokens whose total probability reaches p: a token is "
         "kept when the probability of the tokens ranked above it is still below p. Decide in sorted order, then "
         "put the decision back in the original token order."),
    Todo("perplexity", "gpt/trainer.py", "`nll_sums` (used by `evaluate`)", "",
         "**Perplexity.** exp(total NLL / total predicted tokens) over the whole split. Never average per-batch "
         "losses or perplexities: the last batch is shorter and padded."),
    Todo("adamw-step", "gpt/optim.py", "`AdamW.step`", "",
         "**AdamW.** Decay the parameters (`p *= 1 - lr * weight_decay`), never the gradient; correct both moments "
         "by `1 - beta**t` with the parameter's own step `t` (1 on the first step), and add `eps` after the "
         "square root. One `torch._foreach_*` call per operation, over the whole group."),
    Todo("lr-schedule", "gpt/optim.py", "`lr_at`", "",
         "**Schedule.** Warm-up `lr * (it + 1) / warmup_iters`, then the cosine from `lr` down to the floor "
         "`lr * min_lr_ratio` (not 0) at `max_iters`, and the floor after it; `warmup_iters = 0` means no warm-up."),
    Todo("clip-grad-norm", "gpt/optim.py", "`clip_grad_norm` (used by `train_step`)", "",
         "**Clipping.** One norm over all gradients together (the norm of the per-gradient norms), and one factor "
         "`min(1, max_norm / (norm + 1e-6))` for all of them; return the norm before clipping."),
    Todo("train-step", "gpt/trainer.py", "`train_step`", "`clip-grad-norm` (advanced level)",
         "**Training step.** Backward every micro-batch (each loss divided by their number), clip the global "
         "gradient norm, step, and reset the gradients."),
    Todo("lstm-forward", "gpt/lstm.py", "`LSTMLanguageModel._run`", "",
         "**LSTM.** `nn.LSTM(..., batch_first=True)` takes (B, T, n_embd) and an optional (h, c) state and returns "
         "the outputs (B, T, n_hidden) and the new state; return that state, generation relies on it."),
    Todo("logit-bias-recovery", "gpt/extras.py", "`recover_distribution` (extra credit, E1)"),
]
BY_ID = {t.id: t for t in TODOS}


@dataclass(frozen=True)
class Level:
    name: str
    todos: tuple[str, ...]
    what: str                # what the student writes, one phrase (hw5.md's opening, the README)


_STANDARD = ("bpe-count-pairs", "bpe-merge", "bpe-encode-word", "attention-mask", "attention-forward", "sample-top-p",
             "perplexity", "train-step", "lstm-forward", "logit-bias-recovery")
LEVELS = {
    "intro": Level("intro", ("attention-mask", "attention-forward", "sample-top-p"),
                   "the causal mask and the attention forward pass of the transformer, and nucleus sampling"),
    "standard": Level("standard", _STANDARD,
                      "the tokenizer's merges, causal attention, nucleus sampling, perplexity, the training step, "
                      "an LSTM baseline, and an extra-credit puzzle"),
    "advanced": Level("advanced", _STANDARD + ("bpe-train", "adamw-step", "lr-schedule", "clip-grad-norm"),
                      "nearly everything: the tokenizer and its training loop, LayerNorm, GELU, the MLP, the block, "
                      "the GPT's forward pass and loss, the KV cache, attention, sampling, AdamW, the schedule, "
                      "gradient clipping, perplexity, the training step and an LSTM baseline"),
}
DEFAULT_LEVEL = "standard"


def level_todos(level: str) -> list[str]:
    """The TODO ids of a level, in working order."""
    wanted = set(LEVELS[level].todos)
    return [t.id for t in TODOS if t.id in wanted]


# -- points, from the graded tests' marks ---------------------------------------------------------

@dataclass(frozen=True)
class Points:
    todo: str
    points: float
    hidden: bool
    extra_credit: bool


def graded_points(folder: Path = ROOT / "tests" / "graded") -> list[Points]:
    """Every `@pytest.mark.points(n, todo=..., visibility=..., extra_credit=...)` of the graded tests."""
    marks = []
    for path in sorted(folder.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _is_points_mark(node.func):
                kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
                n = ast.literal_eval(node.args[0]) if node.args else kw["n"]
                marks.append(Points(kw["todo"], float(n), kw.get("visibility", "visible") != "visible",
                                    bool(kw.get("extra_credit", False))))
    return marks


def _is_points_mark(func) -> bool:
    return isinstance(func, ast.Attribute) and func.attr == "points" and isinstance(func.value, ast.Attribute) \
        and func.value.attr == "mark"


def points_by_todo(todos, marks=None) -> dict[str, dict[str, float]]:
    """{todo: {"public": .., "hidden": ..}} for the given TODOs."""
    marks = graded_points() if marks is None else marks
    out = {t: {"public": 0.0, "hidden": 0.0} for t in todos}
    for m in marks:
        if m.todo in out:
            out[m.todo]["hidden" if m.hidden else "public"] += m.points
    return out
