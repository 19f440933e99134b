"""The written half of the homework (hw5.md), checked by code where it can be:

- points: every question has them, parts add up, and the score table on the first page adds up to
  the questions' points and to the points of the graded tests;
- the RNN backpropagation key (Q18): its closed forms, implemented here, equal PyTorch autograd;
- the parameter-count and memory keys (Q15, Q16): every number equals what `python main.py params`
  prints, or follows by checked arithmetic from such numbers and the question's inputs;
- every `python main.py ...` / `python generate.py ...` command that hw5.md and the handout's README
  tell a student to run (also inside `sbatch --wrap "..."`, and `sbatch sbatch.sh FLAGS`, whose flags go
  to `main.py train`) is accepted by the argument parser. Nothing is run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import levels  # noqa: E402

HW5 = (ROOT / "hw5.md").read_text(encoding="utf-8")
STUDENT_README = (ROOT / "tools" / "handout" / "README.md").read_text(encoding="utf-8")
HEADING = re.compile(r"\*\*([QRE])(\d+) \((?:extra credit, )?(\d+) points?\)\.\*\*")


def question_text(label: str, text: str = HW5) -> str:
    """From the question's bold heading (**Q15 (...).**) to the next question or section."""
    m = re.search(rf"\*\*{label} \(", text)
    assert m, f"hw5.md has no question {label}"
    rest = text[m.end():]
    end = re.search(r"\n\*\*[QRE]\d+ \(|\n## |\n### |\n<!-- (?:END )?LEVELS", rest)
    return text[m.start():m.end() + (end.start() if end else len(rest))]


def answer_key(label: str) -> str:
    text = question_text(label)
    m = re.search(r"<!-- BEGIN SOLUTION -->(.*?)<!-- END SOLUTION -->", text, re.S)
    assert m, f"{label} has no answer key"
    return m.group(1)


# -- points ------------------------------------------------------------------------------------

def score_table(text: str) -> dict:
    rows = {}
    for line in text[:text.index("## 1.")].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"\**\+?\d+\**", cells[2]):
            rows[cells[0].strip("*")] = int(cells[2].strip("*+"))
    return rows


@pytest.mark.parametrize("level", list(levels.LEVELS))
def test_every_written_question_has_points_and_its_parts_add_up(level):
    text = levels.hw5_for_level(HW5, level)
    labels = re.findall(r"^\*\*([QRE]\d+)[ .]", text, re.M)
    with_points = [m.group(1) + m.group(2) for m in HEADING.finditer(text)]
    assert labels and labels == with_points, f"questions without points: {sorted(set(labels) - set(with_points))}"
    for m in HEADING.finditer(text):
        label, points = m.group(1) + m.group(2), int(m.group(3))
        parts = [int(n) for n in re.findall(r"\([a-z], (\d+) points?\)", question_text(label, text))]
        assert not parts or sum(parts) == points, f"{label}: parts {parts} do not add up to {points}"
    for kind in "QRE":   # numbered 1, 2, ... without gaps (each level renumbers what it keeps)
        numbers = [int(m.group(2)) for m in HEADING.finditer(text) if m.group(1) == kind]
        assert numbers == list(range(1, len(numbers) + 1)), (kind, numbers)


# What each level is worth (the issue asks for 100 points at the intro level; standard is the original).
LEVEL_TOTALS = {"intro": 100, "standard": 218}


@pytest.mark.parametrize("level", list(levels.LEVELS))
def test_the_first_page_shows_the_whole_score(level):
    text = levels.hw5_for_level(HW5, level)
    rows = score_table(text)
    graded = {"public": 0, "hidden": 0, "extra": 0}
    for path in (ROOT / "tests" / "graded").glob("test_*.py"):   # the marks, read here with a regex of its own
        for m in re.finditer(r"@pytest\.mark\.points\((\d+), todo=\"([a-z0-9-]+)\"([^)]*)\)", path.read_text()):
            if m.group(2) in levels.LEVELS[level].todos:
                kind = "extra" if "extra_credit=True" in m.group(3) else "hidden" if "hidden" in path.name else "public"
                graded[kind] += int(m.group(1))
    points = {kind: sum(int(m.group(3)) for m in HEADING.finditer(text) if m.group(1) == kind) for kind in "QRE"}
    assert rows["code, public tests"] == graded["public"] and rows["code, hidden tests"] == graded["hidden"]
    assert rows.get("extra credit, code", 0) == graded["extra"]
    assert rows["written questions"] == points["Q"] and rows["results of your runs"] == points["R"]
    assert rows.get("extra credit, written", 0) == points["E"]
    assert rows["total"] == graded["public"] + graded["hidden"] + points["Q"] + points["R"]
    if level in LEVEL_TOTALS:
        assert rows["total"] == LEVEL_TOTALS[level]
    head = text[:text.index("## 1.")]
    extra = graded["extra"] + points["E"]
    assert f"worth {rows['total']} points" + (f", plus up to {extra} points of extra credit" if extra else "") in head
    n = {kind: sum(1 for m in HEADING.finditer(text) if m.group(1) == kind) for kind in "QRE"}
    assert f"Q1-Q{n['Q']}" in head and f"R1-R{n['R']}" in head
    assert f"{points['Q']} in all" in text[text.index("## 4."):text.index("**Q1 (")]
    assert f"({points['R']} in all)" in text[text.index("## 5."):text.index("**R1 (")]


# -- Q18: backpropagation through time, against autograd ------------------------------------------

RNN_FORMULAS = ["dJ_t/do_t = ŷ_t - y_t", "dJ_t/dh_i = (W_hhᵀ)^(t-i) W_yhᵀ g_(o_t)",
                "dJ_t/dW_hh = Σ_(i≤t) g_(h_i) h_(i-1)ᵀ", "dJ/dW_hh = Σ_t g_(W_hh,t)"]


def test_the_rnn_key_states_the_formulas_checked_below():
    key = answer_key("Q18")
    assert re.findall(r"`([^`]+)`", key) == RNN_FORMULAS


def test_the_rnn_gradients_of_the_key_equal_autograd():
    """h_t = W_hh h_(t-1) + W_xh x_t, o_t = W_yh h_t, J_t = cross-entropy(softmax(o_t), y_t), J = sum_t J_t."""
    g = torch.Generator().manual_seed(0)
    d, m, V, T = 3, 4, 5, 6
    W_hh = (torch.randn(m, m, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    W_xh = torch.randn(m, d, generator=g, dtype=torch.float64).requires_grad_()
    W_yh = torch.randn(V, m, generator=g, dtype=torch.float64).requires_grad_()
    xs = torch.randn(T + 1, d, generator=g, dtype=torch.float64)      # xs[1..T]; index 0 unused
    targets = torch.randint(0, V, (T + 1,), generator=g)
    h = [torch.randn(m, generator=g, dtype=torch.float64).requires_grad_()]   # h_0
    o, J = [None], [None]
    for t in range(1, T + 1):
        h.append(W_hh @ h[t - 1] + W_xh @ xs[t])
        h[t].retain_grad()
        o.append(W_yh @ h[t])
        J.append(torch.nn.functional.cross_entropy(o[t][None], targets[t:t + 1]))
    onehot = lambda t: torch.nn.functional.one_hot(targets[t], V).double()
    g_o = lambda t: torch.softmax(o[t].detach(), 0) - onehot(t)                       # (b)
    g_h = lambda t, i: torch.linalg.matrix_power(W_hh.detach().T, t - i) @ W_yh.detach().T @ g_o(t)   # (c)
    g_W = lambda t: sum(torch.outer(g_h(t, i), h[i - 1].detach()) for i in range(1, t + 1))          # (d)
    for t in range(1, T + 1):
        grads = torch.autograd.grad(J[t], [o[t], *h[1:t + 1], W_hh], retain_graph=True)
        assert torch.allclose(grads[0], g_o(t)), f"dJ_{t}/do_{t}"
        for i in range(1, t + 1):
            assert torch.allclose(grads[i], g_h(t, i)), f"dJ_{t}/dh_{i}"
        assert torch.allclose(grads[-1], g_W(t)), f"dJ_{t}/dW_hh"
        later = torch.autograd.grad(J[t], h[t + 1:], retain_graph=True, allow_unused=True) if t < T else ()
        assert all(x is None for x in later), "J_t does not depend on later states"
    total = torch.autograd.grad(sum(J[1:]), W_hh, retain_graph=True)[0]
    assert torch.allclose(total, sum(g_W(t) for t in range(1, T + 1))), "dJ/dW_hh"               # (e)
    # and a wrong key fails: without the powers of W_hh^T (only the direct path), (c) is wrong
    i, t = 1, T
    direct = W_yh.detach().T @ g_o(t)
    assert not torch.allclose(torch.autograd.grad(J[t], h[i], retain_graph=True)[0], direct)


# -- Q15, Q16: the numbers `python main.py params` prints ---------------------------------------

def params_output(*args: str) -> str:
    import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main.main(["params", *args]) == 0
    return out.getvalue()


def printed(report: str) -> dict:
    """Parameter counts per configuration, and the memory table's rows (GB strings) per configuration."""
    configs = {}
    for block in re.split(r"\n(?=\S+: \d+ layers)", report.split("\nformulas:")[0]):
        name = block.split(":")[0].strip()
        total, non_emb = re.search(r"parameters: ([\d,]+) total, ([\d,]+) non-embedding", block).groups()
        rows = {tuple(line.split()[:2]): line.split()[2:] for line in block.splitlines()
                if line.strip().startswith(("fp32", "bf16"))}
        configs[name] = {"total": int(total.replace(",", "")), "non_embedding": int(non_emb.replace(",", "")),
                         "rows": rows}
    return configs


@pytest.fixture(scope="module")
def reports():
    out = printed(params_output("--preset", "gpt2", "gpt3"))
    out["custom"] = printed(params_output("--n-layer", "12", "--n-head", "20", "--n-embd", "1280"))["custom"]
    out["q16"] = printed(params_output("--preset", "gpt2", "--batch-size", "8", "--seq-len", "1024"))["gpt2"]
    return out


NUM = r"\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?"
ARITH = rf"(?:{NUM}|[\s+×()²−-])+"


def value(expr: str) -> Fraction:
    py = expr.replace(",", "").replace("×", "*").replace("−", "-").replace("²", "**2")
    if not re.fullmatch(r"[\d.\s+*()-]+", py):
        raise ValueError(expr)
    return Fraction(eval(py, {"__builtins__": {}}))       # noqa: S307 (digits and operators only)


def evaluates(expr: str) -> bool:
    try:
        value(expr)
        return bool(re.search(r"\d", expr))
    except (ValueError, SyntaxError, TypeError):
        return False


def equalities(text: str) -> list[tuple[str, str]]:
    """Pairs (left, right) of arithmetic expressions written `left = right` (chains give several pairs):
    the longest arithmetic tail of the text before each `=` and head of the text after it, at least
    one of them with an operator (so `N bytes = X GB` is not taken for an equation)."""
    pairs = []
    segments = re.split(r"(?<![<>!=])=(?!=)", text.replace("**", ""))
    for left, right in zip(segments, segments[1:]):
        lm, rm = re.search(rf"({ARITH})$", left), re.match(rf"({ARITH})", right)
        if not (lm and rm):
            continue
        lc, rc = lm.group(1), rm.group(1)
        lhs = next((lc[i:].strip() for i in range(len(lc)) if evaluates(lc[i:])), None)
        rhs = next((rc[:j].strip() for j in range(len(rc), 0, -1) if evaluates(rc[:j])), None)
        if lhs and rhs and re.search(r"[+×]", lhs + rhs):
            pairs.append((lhs, rhs))
    return pairs


def test_arithmetic_in_the_keys_is_right():
    checked = 0
    for label in ("Q15", "Q16"):
        for line in answer_key(label).split(";"):
            for lhs, rhs in equalities(line):
                if re.search(r"\d\.\d", lhs + rhs):
                    continue   # decimals are GB figures: checked against the printed table below
                assert value(lhs) == value(rhs), f"{label}: {lhs} = {rhs} is wrong ({value(lhs)})"
                checked += 1
    assert checked >= 15, f"only {checked} equalities found: has the key's format changed?"
    assert equalities("12 × 38 × 6,291,456 + 7 × 6,291,456 = 2,912,944,128") == \
        [("12 × 38 × 6,291,456 + 7 × 6,291,456", "2,912,944,128")]


def test_the_parameter_counts_in_the_key_are_what_params_prints(reports):
    key = answer_key("Q15")
    bold = [int(n.replace(",", "")) for n in re.findall(r"\*\*([\d,]+)\*\*", key)]
    assert bold == [4 * (768 ** 2 + 768), reports["gpt2"]["total"], reports["gpt3"]["total"], reports["custom"]["total"]]
    assert reports["custom"]["total"] == 301_771_520
    question = question_text("Q15").split("<!--")[0]
    inputs = {int(n.replace(",", "")) for n in re.findall(NUM, question) if "." not in n}
    # numbers inside a checked equality (test_arithmetic_in_the_keys_is_right) are verified by it
    derived = {int(n.replace(",", "")) for lhs, rhs in equalities(key) for n in re.findall(NUM, lhs + " " + rhs)}
    known = inputs | derived | {reports[c][k] for c in ("gpt2", "gpt3", "custom") for k in ("total", "non_embedding")}
    for n in re.findall(r"\d{1,3}(?:,\d{3})+", key):
        assert int(n.replace(",", "")) in known, f"Q15's key: {n} is neither printed by params nor derived"
    assert reports["custom"]["non_embedding"] == int(re.search(r"prints ([\d,]+) without", key).group(1).replace(",", ""))


def test_the_memory_figures_in_the_key_are_what_params_prints(reports):
    key = answer_key("Q16")
    rows = reports["q16"]["rows"]
    manual, fused = rows[("bf16", "manual")], rows[("bf16", "sdpa")]
    columns = ["params", "grads", "optim", "w.copies", "activ.", "logits", "logit gr.", "peak"]
    bf16 = dict(zip(columns, manual))
    figures = re.findall(r"(\d+\.\d+) GB", key)
    assert set(figures) <= set(manual) | set(fused), f"GB figures of Q16's key that params does not print: " \
                                                      f"{sorted(set(figures) - set(manual) - set(fused))}"
    for col in columns:
        assert bf16[col] in figures, f"the key does not give the {col} figure {bf16[col]} GB"
    assert fused[columns.index("activ.")] in figures and fused[-1] in figures
    # bytes written out: each `N bytes = X GB` rounds right, and the parameter count is GPT-2's
    for n, gb in re.findall(r"([\d,]+) bytes = (\d+\.\d+) GB", key):
        assert f"{int(n.replace(',', '')) / 1e9:.3f}" == gb, (n, gb)
    assert f"N = {reports['gpt2']['total']:,} parameters" in key
    for lhs, rhs in equalities(key):
        if not re.search(r"\d\.\d", lhs + rhs):
            assert value(lhs) == value(rhs), f"Q16: {lhs} = {rhs}"


# -- commands --------------------------------------------------------------------------------

def commands(markdown: str) -> list[str]:
    """Every command a document shows: inline code spans and indented code lines that run a script."""
    found = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", markdown)]
    found += [line.strip() for line in markdown.splitlines() if line.startswith("    ")]
    out = []
    for text in found:
        text = re.split(r"\s{2,}#|\s#\s", text)[0].strip()              # a trailing comment
        for part in re.split(r"&&|;", text):
            part = part.strip()
            if re.match(r"python (main|generate)\.py\b|sbatch\s", part):
                out.append(part)
    return list(dict.fromkeys(out))


def sbatch_train_prefix() -> list[str]:
    """What sbatch.sh runs before the flags it passes on: `main.py train --no-progress --auto-resume`."""
    m = re.search(r'main\.py (train[^"\n]*?) "\$@"', (ROOT / "sbatch.sh").read_text())
    assert m, "sbatch.sh no longer runs main.py train ... \"$@\""
    return m.group(1).split()


def check_parses(command: str) -> None:
    import generate
    import main
    words = shlex.split(command)
    if words[-1] == "...":          # "python generate.py ..." (the same flags as above): a placeholder
        words.pop()
        if len(words) <= 2:
            return
    if words[0] == "sbatch":
        if "--wrap" in words:
            check_parses(words[words.index("--wrap") + 1])
            return
        assert "sbatch.sh" in words, f"{command!r}: sbatch runs neither --wrap nor sbatch.sh"
        argv, parser = sbatch_train_prefix() + words[words.index("sbatch.sh") + 1:], main.build_parser()
    elif words[1] == "main.py":
        argv, parser = words[2:] or ["train"], main.build_parser()    # no command: train
    else:
        argv, parser = words[2:], argparse.ArgumentParser(prog="generate.py")
        generate.add_sampling_args(parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"{command!r} is rejected: {err.getvalue().strip()}"


@pytest.mark.parametrize("doc", ["hw5.md", "tools/handout/README.md"])
def test_every_command_a_student_is_told_to_run_parses(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = commands(text)
    assert len(found) >= (20 if doc == "hw5.md" else 2), found
    for command in found:
        check_parses(command)


def test_the_command_check_can_fail():
    for bad in ('python main.py sample --checkpoint x.pt --temprature 1.5', "python main.py train --max-iterations 100",
                'sbatch --gres=gpu:1 --wrap "python main.py compare --stepz 5"', "sbatch sbatch.sh --max-iters x",
                "python generate.py --top-p 0.5"):
        with pytest.raises(AssertionError):
            check_parses(bad)
    assert "python main.py train --max-iters 100 --eval-batches 20 --out-dir runs/smoke" in commands(HW5)
    assert 'sbatch --gres=gpu:1 --wrap "python main.py compare"' in commands(HW5)
