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
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Todo:
    id: str
    file: str
    function: str            # Markdown for the table's "function" column
    needs: tuple[str, ...] = ()   # TODOs its tests also use (the "needs" column shows those of the level)
    hint: str = ""           # one Markdown bullet for "Hints that save time" (empty: none)
    note: str = ""           # after the needs, e.g. "(for the training test)"

    def needs_in(self, level: str) -> str:
        ids = [n for n in self.needs if n in LEVELS[level].todos]
        return ", ".join(f"`{n}`" for n in ids) + (f" {self.note}" if ids and self.note else "")


# Every TODO, in the order a student should work (each level lists a subset, in this order).
TODOS = [
    Todo("bpe-count-pairs", "gpt/bpe.py", "`count_pairs`"),
    Todo("bpe-merge", "gpt/bpe.py", "`merge` (used by `BPETokenizer.train`)", ("bpe-count-pairs", "bpe-train"),
         "**BPE.** `count_pairs` and `merge` are the two primitives; the training loop calls them, so a slow "
         "`merge` makes training slow.", "(for the training test)"),
    Todo("bpe-train", "gpt/bpe.py", "`BPETokenizer.train` (the merge loop)", ("bpe-count-pairs", "bpe-merge"),
         "**BPE training.** Each step takes the most frequent pair over all pre-tokens, each counted with its "
         "frequency; ties go to the smaller *bytes* (`(vocab[a], vocab[b])`), not the smaller ids. A loop that "
         "recounts everything each step is correct (and passes the tests) but slow on the real corpus: keep "
         "counts up to date with `_merge_in_pretokens`, which only revisits the pre-tokens that hold the pair."),
    Todo("bpe-encode-pretoken", "gpt/bpe.py", "`BPETokenizer.encode_pretoken`", "",
         "**Encoding.** `encode_pretoken` must apply merges in the order they were learned (lowest id first), not "
         "left to right: on \"abc\" with merges (b,c)→256 then (a,b)→257 the answer is [a, 256] (left to right "
         "would wrongly give [257, c])."),
    Todo("layer-norm", "gpt/functional.py", "`layer_norm`", "",
         "**LayerNorm.** Mean and *biased* variance (divide by C, not C - 1) over the last dimension, kept as "
         "(..., 1) so they broadcast; eps goes inside the square root. Keep the names `xhat` and `rstd`: the "
         "given backward pass uses them. On a CPU, `torch.var` is slow for short rows: use `(xc * xc).mean(...)`."),
    Todo("gelu", "gpt/functional.py", "`gelu` and `gelu_derivative`", "",
         "**GELU.** GPT-2's tanh approximation, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))); 0.5(1 + tanh z) = "
         "sigmoid(2z) is the same number in fewer operations. The backward pass is the chain rule through it, "
         "checked against autograd of `F.gelu(x, approximate=\"tanh\")`."),
    Todo("mlp-forward", "gpt/model.py", "`MLP.forward`", ("gelu",),
         "**MLP.** c_fc (C → 4C), then `gelu`, then c_proj (4C → C), then dropout."),
    Todo("cross-entropy", "gpt/functional.py", "`cross_entropy` (used by `lm_loss`)", "",
         "**Cross-entropy.** nll = logsumexp(logits) - logits[target]; subtract each row's largest logit "
         "before `exp` (exp(1e4) is inf in float32). With a mask, divide by the number of ones, not by B·T."),
    Todo("attention-mask", "gpt/model.py", "`CausalSelfAttention.__init__`"),
    Todo("attention-forward", "gpt/model.py", "`CausalSelfAttention.attend`",
         ("attention-mask", "layer-norm", "gelu", "mlp-forward", "block-forward", "gpt-forward", "cross-entropy"),
         "**Attention.** The mask buffer has ones where attention is allowed. In `attend`, `q` holds only the new "
         "positions (during generation with the KV cache, a single one at position `past`), while `k` and `v` "
         "hold all positions so far: use rows `past .. past+T-1` of the mask. Scale by 1/sqrt(head size), not "
         "1/head size. The softmax runs over the keys (last dimension)."),
    Todo("block-forward", "gpt/model.py", "`Block.forward`",
         ("attention-mask", "attention-forward", "layer-norm", "gelu", "mlp-forward"),
         "**Block.** Pre-LayerNorm: `x = x + attn(ln_1(x), kv_cache, layer)`, then `x = x + mlp(ln_2(x))`. "
         "Normalizing the sum instead (post-LN) or dropping the `x +` gives a different network, and GPT-2's "
         "weights would not load right."),
    Todo("gpt-forward", "gpt/model.py", "`GPT.hidden_states` and `GPT.forward`",
         ("attention-mask", "attention-forward", "layer-norm", "gelu", "mlp-forward", "block-forward", "cross-entropy"),
         "**GPT forward.** Positions run from `past` (the tokens already in the KV cache) to past + T - 1, not "
         "from 0. Do not forget the final LayerNorm `ln_f`, and score with `self.lm_head` (tied to `wte`)."),
    Todo("kv-cache-append", "gpt/model.py", "`KVCache.append`",
         ("attention-mask", "attention-forward", "layer-norm", "gelu", "mlp-forward", "block-forward", "gpt-forward"),
         "**KV cache.** Write the new keys and values at positions `length .. length + T - 1` of the buffers "
         "(not at 0), leave `length` alone (`advance` moves it once every layer has appended), and return slices "
         "of the buffers up to `length + T`."),
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
         "square root. A loop over the group's tensors is right; `torch._foreach_*` does each operation for the "
         "whole group in one call (faster, optional)."),
    Todo("lr-schedule", "gpt/optim.py", "`lr_at`", "",
         "**Schedule.** Warm-up `lr * (it + 1) / warmup_iters`, then the cosine from `lr` down to the floor "
         "`lr * min_lr_ratio` (not 0) at `max_iters`, and the floor after it; `warmup_iters = 0` means no warm-up."),
    Todo("clip-grad-norm", "gpt/optim.py", "`clip_grad_norm` (used by `train_step`)", "",
         "**Clipping.** One norm over all gradients together (the norm of the per-gradient norms), and one factor "
         "`min(1, max_norm / (norm + 1e-6))` for all of them; return the norm before clipping."),
    Todo("train-step", "gpt/trainer.py", "`train_step`", ("clip-grad-norm",),
         "**Training step.** Backward every micro-batch (each loss divided by their number), clip the global "
         "gradient norm, step, and reset the gradients."),
    Todo("lstm-forward", "gpt/lstm.py", "`LSTMLanguageModel.run`", "",
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


_STANDARD = ("bpe-count-pairs", "bpe-merge", "bpe-encode-pretoken", "attention-mask", "attention-forward", "sample-top-p",
             "perplexity", "train-step", "lstm-forward", "logit-bias-recovery")
LEVELS = {
    "intro": Level("intro", ("attention-mask", "attention-forward", "sample-top-p"),
                   "the causal mask and the forward pass of the self-attention at the heart of the transformer, "
                   "and nucleus (top-p) sampling"),
    "standard": Level("standard", _STANDARD,
                      "the byte-pair encoding tokenizer that turns text into integers, the causal self-attention at "
                      "the heart of the transformer, nucleus sampling, the evaluation and the training step, and an "
                      "LSTM baseline to compare against"),
    "advanced": Level("advanced", _STANDARD + ("layer-norm", "gelu", "mlp-forward", "block-forward", "gpt-forward",
                                               "cross-entropy", "kv-cache-append", "bpe-train", "adamw-step",
                                               "lr-schedule", "clip-grad-norm"),
                      "nearly all of it: the byte-pair encoding tokenizer and its training loop, LayerNorm, GELU, the "
                      "MLP, the transformer block, the causal self-attention, the GPT's forward pass and loss, the "
                      "KV cache, nucleus sampling, AdamW, the learning-rate schedule, gradient clipping, evaluation, "
                      "the training step, and an LSTM baseline"),
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
    return [m for path in sorted(folder.glob("test_*.py")) for m in points_in_file(path)]


def points_in_file(path: Path) -> list[Points]:
    """The points marks of one graded test file."""
    marks = []
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


def level_files(level: str) -> list[str]:
    """The files a student of this level edits and submits (those holding its TODOs)."""
    return list(dict.fromkeys(BY_ID[t].file for t in level_todos(level)))


# -- hw5.md for a level ---------------------------------------------------------------------------

LEVEL_BLOCK = re.compile(r"^<!-- LEVELS ([a-z,]+) -->\n(.*?)^<!-- END LEVELS -->\n", re.S | re.M)
GENERATED = re.compile(r"^<!-- BEGIN GENERATED ([a-z-]+) -->\n(.*?)^<!-- END GENERATED -->\n", re.S | re.M)
HEADING = re.compile(r"\*\*([QRE])(\d+) \((?:extra credit, )?(\d+) points?\)\.\*\*")
LABEL = re.compile(r"(?<![\w-])([QRE])(\d+)(?!\d)")


class LevelError(Exception):
    pass


def _keep_level_blocks(text: str, level: str) -> str:
    def pick(m):
        names = m.group(1).split(",")
        unknown = set(names) - set(LEVELS)
        if unknown:
            raise LevelError(f"hw5.md: <!-- LEVELS {m.group(1)} --> names unknown levels {sorted(unknown)}")
        return m.group(2) if level in names else ""
    return LEVEL_BLOCK.sub(pick, text)


def _renumber(text: str, full: str) -> str:
    """Number the questions that are left Q1, Q2, ... (R and E alike) and rewrite references to them;
    a reference to a question of the full hw5.md (`full`) that this level left out is an error."""
    everything = {(m.group(1), int(m.group(2))) for m in HEADING.finditer(full)}
    kept = [(m.group(1), int(m.group(2))) for m in HEADING.finditer(text)]
    mapping = {}
    for kind in "QRE":
        mapping.update({key: i for i, key in enumerate([k for k in kept if k[0] == kind], start=1)})

    def fix(m):
        key = (m.group(1), int(m.group(2)))
        if key in mapping:
            return f"{key[0]}{mapping[key]}"
        if key in everything:
            line = text[:m.start()].count("\n") + 1
            raise LevelError(f"hw5.md (this level's line {line}) refers to {key[0]}{key[1]}, which the level leaves out")
        return m.group(0)
    return LABEL.sub(fix, text)


def question_points(text: str) -> dict[str, list[tuple[str, int]]]:
    """{"Q": [("Q1", 2), ...], "R": [...], "E": [...]} from the bold headings of a level's hw5.md."""
    out = {"Q": [], "R": [], "E": []}
    for m in HEADING.finditer(text):
        out[m.group(1)].append((m.group(1) + m.group(2), int(m.group(3))))
    return out


def _span(labels: list[str]) -> str:
    return f"{labels[0]}-{labels[-1]}" if len(labels) > 1 else (labels[0] if labels else "none")


def totals(level: str, text: str, marks=None) -> dict:
    """The level's points: graded code (public, hidden, extra credit) and written (Q, R, E)."""
    marks = graded_points() if marks is None else marks
    todos = set(level_todos(level))
    code = {"public": 0.0, "hidden": 0.0, "extra": 0.0}
    for m in marks:
        if m.todo in todos:
            code["extra" if m.extra_credit else "hidden" if m.hidden else "public"] += m.points
    q = question_points(text)
    written = {k: sum(p for _, p in v) for k, v in q.items()}
    total = code["public"] + code["hidden"] + written["Q"] + written["R"]
    return {**code, **written, "total": total, "labels": {k: [l for l, _ in v] for k, v in q.items()}}


def _fill(text: str, first: str = "", rest: str = "") -> str:
    return textwrap.fill(text, width=104, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False)


def _n(x: float) -> str:
    return f"{x:g}"


def render(name: str, level: str, text: str, marks=None) -> str:
    """The content of the generated block `name` of hw5.md for `level` (text: the level's hw5.md)."""
    lv, t = LEVELS[level], totals(level, text, marks)
    todos = level_todos(level)
    extra_todos = [i for i in todos if any(m.todo == i and m.extra_credit for m in (marks or graded_points()))]
    if name == "opening":
        return _fill(f"In this homework you write the key pieces of a small GPT language model yourself: {lv.what}. "
                     "Then you train it on WikiText-2, on a laptop and on a GPU cluster, and you sample from it.") + "\n"
    if name == "score":
        lines = [f"**Score.** The whole homework is worth {_n(t['total'])} points"
                 + (f", plus up to {_n(t['extra'] + t['E'])} points of extra credit:" if t["extra"] + t["E"] else ":"),
                 "", "| part | where | points |", "| --- | --- | --- |",
                 f"| code, public tests | section 2 (run them yourself) | {_n(t['public'])} |",
                 f"| code, hidden tests | run by the autograder on the same TODOs | {_n(t['hidden'])} |",
                 f"| written questions | section 4, {_span(t['labels']['Q'])} | {_n(t['Q'])} |",
                 f"| results of your runs | section 5, {_span(t['labels']['R'])} | {_n(t['R'])} |",
                 f"| **total** | | **{_n(t['total'])}** |"]
        if t["extra"]:
            lines.append(f"| extra credit, code | TODO {', '.join(f'`{i}`' for i in extra_todos)} | +{_n(t['extra'])} |")
        if t["E"]:
            lines.append(f"| extra credit, written | section 4, {_span(t['labels']['E'])} | +{_n(t['E'])} |")
        return "\n".join(lines) + "\n"
    if name == "todos":
        pts = points_by_todo(todos, marks)
        rows = ["| TODO | file | function | points | needs |", "| --- | --- | --- | --- | --- |"]
        for i in todos:
            td = BY_ID[i]
            needs = td.needs_in(level)
            rows.append(f"| `{i}` | {td.file} | {td.function} | {_n(pts[i]['public'])} |"
                        + (f" {needs} |" if needs else " |"))
        intro = ("Each TODO is a marked block in the code, `raise NotImplementedError(\"TODO(<id>)\")`, with\n"
                 "instructions in the comment right above it (shapes and hints). Work in this order; the public\n"
                 f"tests tell you when each part is right. The public tests are worth **{_n(t['public'])} points**; "
                 f"the autograder\nalso runs {_n(t['hidden'])} points of hidden tests on the same TODOs with inputs "
                 "you have not seen.")
        if t["extra"]:
            intro += f" The\nextra-credit TODO adds up to {_n(t['extra'])} points beyond the total."
        hints = [_fill(BY_ID[i].hint, "- ", "  ") for i in todos if BY_ID[i].hint]
        # an example of the "needs" message, from the level's own table
        pair = next(((i, n) for i in todos for n in BY_ID[i].needs if n in todos), ("a", "b"))
        needs = _fill(f"A test whose TODO needs another one says so when it fails (\"this test of TODO({pair[0]}) "
                      f"needs TODO({pair[1]}) first\"). The tests run your code in a separate process and compare "
                      "what it returns; `print` output from your code shows with `python -m pytest -s`.")
        return "\n".join([intro, "", *rows, "", needs, "", "Hints that save time:", *hints]) + "\n"
    if name == "written-points":
        line = f"Answer briefly; show your work for the computations. Points are in parentheses: {_n(t['Q'])} in all"
        if t["E"]:
            line += f", and {_n(t['E'])} of extra credit ({', '.join(t['labels']['E'])})"
        return _fill(line + ".") + "\n"
    if name == "runs-points":
        return f"Include the numbers, plots and samples asked for; points are in parentheses ({_n(t['R'])} in all).\n"
    if name == "submit":
        files = level_files(level)
        regular = [f for f in files if not all(BY_ID[i].file != f or i in extra_todos for i in todos)]
        extra = [f for f in files if f not in regular]
        listed = ", ".join(f"`{f}`" for f in regular) + (
            f" and, for the extra credit, {', '.join(f'`{f}`' for f in extra)}" if extra else "")
        written = "section 4" + (f" (extra credit {' and '.join(t['labels']['E'])} included)" if t["E"] else "")
        return (f"- To the **code** assignment on Gradescope: {listed} (upload the files; folders are optional). "
                "The autograder runs the public tests\n  and the hidden ones.\n"
                f"- To the **written** assignment: one PDF with your answers to {written}, and the numbers, plots "
                "and samples asked for in section 5.\n")
    raise LevelError(f"hw5.md has a generated block named {name!r}; tools/levels.py knows no such block")


def hw5_for_level(text: str, level: str, keep_markers: bool = False, marks=None) -> str:
    """hw5.md as the level's students read it: its blocks only, questions renumbered, tables generated.
    keep_markers: leave the LEVELS blocks and GENERATED markers in (the solution's own hw5.md)."""
    if level not in LEVELS:
        raise LevelError(f"unknown level {level!r}; the levels are {', '.join(LEVELS)}")
    empty = lambda t: GENERATED.sub(lambda m: f"<!-- BEGIN GENERATED {m.group(1)} -->\n<!-- END GENERATED -->\n", t)
    view = _renumber(empty(_keep_level_blocks(text, level)), text)   # generated blocks are filled below
    body = empty(text) if keep_markers else view
    marks = graded_points() if marks is None else marks

    def fill(m):
        content = render(m.group(1), level, view, marks)
        return f"<!-- BEGIN GENERATED {m.group(1)} -->\n{content}<!-- END GENERATED -->\n" if keep_markers else content
    return GENERATED.sub(fill, body)


def main(argv=None) -> int:
    import argparse
    import sys
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true", help="rewrite hw5.md's generated blocks (standard level)")
    ap.add_argument("--show", metavar="LEVEL", help="print hw5.md as LEVEL's students get it (answers kept)")
    args = ap.parse_args(argv)
    path = ROOT / "hw5.md"
    try:
        if args.show:
            sys.stdout.write(hw5_for_level(path.read_text(encoding="utf-8"), args.show))
        if args.update:
            path.write_text(hw5_for_level(path.read_text(encoding="utf-8"), DEFAULT_LEVEL, keep_markers=True),
                            encoding="utf-8")
            print(f"updated the generated blocks of {path.relative_to(ROOT)}")
    except LevelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
