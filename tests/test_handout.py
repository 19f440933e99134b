"""The homework kit: the skeleton generator, the autograder, and the strength of the graded tests.

CI checks both directions: the solution gets full points; the generated handout gets 0 with every
graded test failing; and every hand-written wrong answer (tools/mutants.py) fails a graded test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import levels  # noqa: E402
import make_handout  # noqa: E402
from make_handout import HandoutError, find_regions, strip_markdown, strip_python  # noqa: E402


def run(args, cwd=ROOT, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=900, **kw)


def graded_results(cwd, *extra) -> dict:
    """Run the graded tests in `cwd` and return the results.json they write."""
    out = os.path.join(str(cwd), "results.json")
    if os.path.exists(out):
        os.remove(out)              # never read a stale file from an earlier run
    proc = run(["-m", "pytest", "tests", "-m", "graded", "-q", "-p", "no:cacheprovider",
                "--gradescope-results", out, *extra], cwd=cwd)
    assert proc.returncode in (0, 1) and os.path.exists(out), \
        f"the graded run did not complete (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    with open(out) as f:
        return json.load(f)


# -- the marker parser ------------------------------------------------------------------------

GOOD = '''def f(x):
    # TODO(add-one): return x + 1
    ### BEGIN SOLUTION
    y = x + 1
    ### END SOLUTION
    return y
'''


def test_region_becomes_raise_at_its_indentation():
    text, stripped = strip_python("f.py", GOOD, None)
    assert text == ('def f(x):\n    # TODO(add-one): return x + 1\n'
                    '    raise NotImplementedError("TODO(add-one)")\n    return y\n')
    assert [r.todo for r in stripped] == ["add-one"]
    kept, none = strip_python("f.py", GOOD, {"other"})
    assert none == [] and "    y = x + 1" in kept and "SOLUTION" not in kept
    assert kept == 'def f(x):\n    # Return x + 1\n    y = x + 1\n    return y\n', "a kept region reads as given code"


@pytest.mark.parametrize("line,given", [
    ("    # TODO(gelu): set y = 0.5 * x", "    # Set y = 0.5 * x"),
    ("        # TODO(mlp-forward): x (B, T, C) -> self.c_fc", "        # x (B, T, C) -> self.c_fc"),
    ("# TODO(gpt-forward): logits = self.lm_head(...)", "# logits = self.lm_head(...)"),
    ("# TODO(kv-cache-append): self.k[layer] and", "# self.k[layer] and"),
    ("# TODO(a): `causal_mask`, a tensor", "# `causal_mask`, a tensor"),
])
def test_a_kept_regions_comment_loses_its_marker(line, given):
    assert make_handout.given_comment(line) == given


@pytest.mark.parametrize("text,message", [
    ("# TODO(a): x\n### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "f.py:3: nested"),
    ("x = 1\n### END SOLUTION\n", "f.py:2: ### END SOLUTION without"),
    ("# TODO(a): x\n### BEGIN SOLUTION\nx = 1\n", "f.py:2: ### BEGIN SOLUTION is never closed"),
    ("# no id here\n### BEGIN SOLUTION\n### END SOLUTION\n", "f.py:2: solution region has no"),
])
def test_malformed_markers_name_file_and_line(text, message):
    with pytest.raises(HandoutError, match=message):
        find_regions("f.py", text)


def test_the_handout_check_finds_names_of_missing_files(tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "model.py").write_text("")
    text = "edit `gpt/model.py`, run `tools/mutants.py` and `python main.py`; outputs go to runs/train/best.pt"
    assert make_handout.missing_paths(tmp_path, text) == ["tools/mutants.py", "main.py"]


def test_markdown_answers_are_removed():
    md = "Q1\n<!-- BEGIN SOLUTION -->\nsecret\n<!-- END SOLUTION -->\nQ2\n"
    assert strip_markdown("hw.md", md) == "Q1\nQ2\n"
    with pytest.raises(HandoutError, match="hw.md:2"):
        strip_markdown("hw.md", "Q1\n<!-- BEGIN SOLUTION -->\n")


# -- the generated handout ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("kit") / "hw5"
    proc = run(["tools/make_handout.py", str(out), "--zip", "--autograder"])
    assert proc.returncode == 0, proc.stderr
    return out


def test_handout_content(handout):
    files = {str(p.relative_to(handout)) for p in handout.rglob("*") if p.is_file()}
    assert {"main.py", "generate.py", "app/data.py", "app/bpe_corpus.py", "hw5.md", "requirements.txt", "gpt/model.py",
            "gpt/bpe.py", "tests/graded/test_model_graded.py", "tests/graded/fixtures/gpt2_tiny.pt"} <= files
    assert not any("hidden" in f or f.startswith(("tools/", "benchmarks/")) or f == "tests/test_model.py" for f in files)
    for f in files:
        if f.endswith((".py", ".md")):
            text = (handout / f).read_text(encoding="utf-8")
            assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, f
    model = (handout / "gpt/model.py").read_text()
    assert 'raise NotImplementedError("TODO(attention-forward)")' in model
    assert "TODO(attention-forward): compute the attention output" in model      # instructions are kept
    assert "torch.tril(torch.ones(config.block_size" not in model
    readme = (handout / "README.md").read_text()
    assert "This folder is your homework" in readme and "reference solution" not in readme
    assert "--gradescope-results=results.json" in readme, "the student README says how to see the score"
    hw5 = (handout / "hw5.md").read_text()
    assert "## 4. Written questions" in hw5 and "**Q15 (8 points).**" in hw5 and "**Answer" not in hw5
    assert "**Grading" not in hw5 and "**Score.**" in hw5, "keys and grading notes are stripped; the score stays"
    import zipfile
    names = zipfile.ZipFile(handout.parent / "hw5.zip").namelist()
    assert "hw5/gpt/model.py" in names and all(n.startswith("hw5/") for n in names), "unzips into one folder"
    ag_names = zipfile.ZipFile(handout.parent / "hw5-autograder.zip").namelist()
    assert "setup.sh" in ag_names and "run_autograder" in ag_names, "Gradescope wants them at the top"


def test_the_score_command_of_the_readme_works_twice(handout):
    """The command the student README gives for the score, run twice (the second time results.json exists)."""
    readme = (handout / "README.md").read_text()
    command = next(line.split() for line in readme.splitlines() if "--gradescope-results" in line)
    assert command[:2] == ["python", "-m"]
    for _ in range(2):
        proc = run([*command[1:], "--todo", "logit-bias-recovery", "-p", "no:cacheprovider"], cwd=handout)
        assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout + proc.stderr
        assert "graded tests: score 0 extra-credit points (of 5)" in proc.stdout, "not 'score 0 of 0 points'"
        assert json.loads((handout / "results.json").read_text())["score"] == 0
    (handout / "results.json").unlink()


_LEVEL_HANDOUTS: dict = {}


def level_handout(tmp_path_factory, level: str, todos: str | None = None):
    """The level's handout (stripping `todos` instead of the level's TODOs), built once per session."""
    if (level, todos) not in _LEVEL_HANDOUTS:
        out = tmp_path_factory.mktemp(f"{level}-{todos or 'skeleton'}") / "hw5"
        proc = run(["tools/make_handout.py", str(out), "--level", level] + (["--todos", todos] if todos else []))
        assert proc.returncode == 0, proc.stderr
        _LEVEL_HANDOUTS[level, todos] = out
    return _LEVEL_HANDOUTS[level, todos]


def todo_markers(folder) -> set[str]:
    """The ids of every TODO(id) in the folder's .py files (what `grep -rn "TODO(" --include=*.py` shows)."""
    return {m.group(1) for p in folder.rglob("*.py") for m in make_handout.TODO_RE.finditer(p.read_text(encoding="utf-8"))}


def expected_graded_tests(level: str, hidden: bool = False) -> set[str]:
    """The graded test files with a points mark for a TODO of the level (parsed here, not by make_handout)."""
    todos = set(levels.level_todos(level))
    return {p.name for p in (ROOT / "tests" / "graded").glob("test_*.py")
            if (hidden or not p.name.startswith("test_hidden_")) and todos & {m.todo for m in levels.points_in_file(p)}}


@pytest.mark.parametrize("level,todos", [(level, None) for level in levels.LEVELS]
                         + [("standard", "all"), ("intro", "none"), ("advanced", "none")])
def test_the_handout_shows_exactly_its_own_work(tmp_path_factory, level, todos):
    """TODO(id) markers name exactly the stripped TODOs, kept regions read as given code (no solution
    markers), and only the graded test files of the level's TODOs ship, with the fixtures they use."""
    out = level_handout(tmp_path_factory, level, todos)
    stripped = {"all": set(levels.BY_ID), "none": set()}.get(todos, set(levels.level_todos(level)))
    assert todo_markers(out) == stripped, "grep 'TODO(' in the handout's .py files lists exactly its TODOs"
    for p in out.rglob("*"):
        if p.is_file() and p.suffix in (".py", ".md", ".sh", ".txt"):
            text = p.read_text(encoding="utf-8")
            assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, p
    for doc in ("hw5.md", "README.md"):
        cited = set(make_handout.TODO_RE.findall((out / doc).read_text(encoding="utf-8")))
        assert cited <= set(levels.level_todos(level)), f"{doc} cites TODO(...) of another level: {cited}"
    shipped = {p.name for p in (out / "tests" / "graded").glob("test_*.py")}
    assert shipped == expected_graded_tests(level), "only the graded test files of the level's TODOs ship"
    assert not any(name.startswith("test_advanced_") for name in shipped) or level == "advanced"
    fixtures = {p.name for p in (out / "tests" / "graded" / "fixtures").iterdir()}
    assert fixtures == ({"gpt2_tiny.pt"} if level == "intro" else {"gpt2_tiny.pt", "bpe.json"})


def test_the_build_check_catches_another_levels_work(tmp_path_factory, tmp_path):
    """make_handout's own check fails on a TODO(id) marker of a TODO the handout gives, and on a graded test
    file of another level."""
    out = tmp_path / "hw5"
    shutil.copytree(level_handout(tmp_path_factory, "intro"), out)
    todos = set(levels.level_todos("intro"))
    stripped = [r for p in sorted((ROOT / "gpt").glob("*.py"))
                for r in find_regions(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8")) if r.todo in todos]
    make_handout.verify(out, stripped, list(levels.BY_ID), "intro")        # as built: fine
    model = out / "gpt" / "model.py"
    good = model.read_text(encoding="utf-8")
    model.write_text(good + "\n# TODO(gelu): given at this level\n", encoding="utf-8")
    with pytest.raises(HandoutError, match=r"markers differ .*\['gelu'\].*gpt/model\.py"):
        make_handout.verify(out, stripped, list(levels.BY_ID), "intro")
    model.write_text(good, encoding="utf-8")
    shutil.copy(ROOT / "tests" / "graded" / "test_lstm_graded.py", out / "tests" / "graded")
    with pytest.raises(HandoutError, match="graded tests .*test_lstm_graded.py"):
        make_handout.verify(out, stripped, list(levels.BY_ID), "intro")


def test_a_kept_region_reads_as_given_code_at_the_standard_level(tmp_path_factory):
    gpt = level_handout(tmp_path_factory, "standard") / "gpt"
    model = (gpt / "model.py").read_text(encoding="utf-8")
    functional = (gpt / "functional.py").read_text(encoding="utf-8")
    assert "        # x (B, T, C) -> self.c_fc -> (B, T, 4C) -> gelu -> self.c_proj -> (B, T, C)\n" in model
    assert "        return self.dropout(self.c_proj(gelu(self.c_fc(x))))\n" in model       # the MLP is given
    assert "    # Set y = 0.5 * x * (1 + tanh(" in functional and "TODO(gelu)" not in functional
    assert "        # Compute the attention output y" not in model, "the level's own TODO keeps its marker"


def expected_score_line(level: str, got_public, got_extra) -> str:
    t = levels.totals(level, "")
    line = f"score {got_public + got_extra:g} of {t['public']:g} points"
    if t["extra"]:
        line += f" ({got_public:g} of {t['public']:g}, plus {got_extra:g} of {t['extra']:g} extra credit)"
    return line


@pytest.mark.parametrize("level", list(levels.LEVELS))
def test_every_graded_test_of_the_level_fails_on_its_skeleton(tmp_path_factory, level):
    """The level's handout: exactly its TODOs' graded tests run, each fails on a TODO, the score is 0."""
    out = level_handout(tmp_path_factory, level)
    res = graded_results(out)
    assert res["score"] == 0
    assert res["tests"] and all(t["status"] == "failed" for t in res["tests"])
    assert all("Not implemented yet: TODO(" in t["output"] for t in res["tests"]), [t["output"] for t in res["tests"]]
    ran = {t["name"].split("]")[0][1:] for t in res["tests"]}
    assert ran == set(levels.level_todos(level)), "every TODO of the level has graded tests, and no other TODO's run"
    t = levels.totals(level, "")
    assert sum(x["max_score"] for x in res["tests"]) == t["public"]
    assert res["output"].endswith(expected_score_line(level, 0, 0))
    full = expected_score_line(level, t["public"], t["extra"])
    readme = " ".join((out / "README.md").read_text().split())
    assert full in readme and f"the **{level}** level" in readme, "the README names the level and its full score"
    hw5 = (out / "hw5.md").read_text()
    listed = re.findall(r"^\| `([a-z0-9-]+)` \|", hw5, re.M)
    assert listed == levels.level_todos(level), "hw5.md's TODO table lists exactly the level's TODOs"
    assert f"The public tests are worth **{t['public']:g} points**" in hw5


@pytest.mark.parametrize("level", ["intro", "advanced"])
def test_the_solution_scores_full_on_the_level(tmp_path_factory, level):
    """The level's handout with every solution kept scores the level's maximum (plus its extra credit).
    (The standard level's is test_the_solution_scores_full_through_run_autograder.)"""
    out = level_handout(tmp_path_factory, level, todos="none")
    res = graded_results(out)
    t = levels.totals(level, "")
    assert all(x["status"] == "passed" for x in res["tests"]), [x["name"] for x in res["tests"] if x["status"] != "passed"]
    assert res["score"] == t["public"] + t["extra"] and res["output"].endswith(expected_score_line(level, t["public"], t["extra"]))


def test_solution_gets_full_points():
    res = graded_results(ROOT)
    total = sum(t["max_score"] for t in res["tests"])
    extra = sum(m.points for m in levels.graded_points() if m.extra_credit)
    assert res["score"] == total + extra and all(t["status"] == "passed" for t in res["tests"])   # + extra credit
    assert any(t["max_score"] == 0 < t["score"] for t in res["tests"]), "extra credit counts beyond the maximum"
    assert {t["name"].split("]")[0][1:] for t in res["tests"]} == set(make_handout.all_todo_ids()), \
        "every TODO region has graded tests"


def test_todos_option_strips_only_the_chosen_regions(tmp_path):
    out = tmp_path / "one"
    proc = run(["tools/make_handout.py", str(out), "--todos", "sample-top-p"])
    assert proc.returncode == 0, proc.stderr
    res = graded_results(out)
    failed = {t["name"].split("]")[0][1:] for t in res["tests"] if t["status"] == "failed"}
    assert failed == {"sample-top-p"}            # the other TODOs keep their solutions and pass
    assert 'raise NotImplementedError("TODO(sample-top-p)")' in (out / "gpt/sampling.py").read_text()
    assert "NotImplementedError" not in (out / "gpt/model.py").read_text()
    bad = run(["tools/make_handout.py", str(tmp_path / "x"), "--todos", "no-such-todo"])
    assert bad.returncode == 2 and "unknown TODO ids" in bad.stderr


def test_autograder_layout(handout):
    """The grader and the student's code are apart; the grading itself is tested in test_autograder.py."""
    ag = handout.parent / "hw5-autograder"
    assert (ag / "setup.sh").exists() and os.access(ag / "run_autograder", os.X_OK)
    source = ag / "source"
    assert (source / "grade.py").is_file() and (source / "SUBMITTED_FILES").is_file()
    assert (source / "grader" / "tests" / "graded" / "test_hidden_graded.py").is_file()
    grader_tests = {p.name for p in (source / "grader" / "tests" / "graded").glob("test_*.py")}
    assert grader_tests == expected_graded_tests("standard", hidden=True), "the level's tests, hidden ones too"
    assert not (source / "skeleton" / "tests").exists(), "no tests in the student's folder"
    assert 'raise NotImplementedError("TODO(attention-forward)")' in (source / "skeleton" / "gpt" / "model.py").read_text()


def test_every_mutant_fails_the_graded_tests():
    proc = run(["tools/mutants.py"])
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SURVIVED" not in proc.stdout


def code_lines_before_first_todo(path: Path) -> int | None:
    """Lines of code (not blank, not comments, not docstrings) above the file's first TODO( marker."""
    import ast
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines, start=1) if "# TODO(" in line), None)
    if first is None:
        return None
    docs = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.update(range(node.lineno, node.end_lineno + 1))
    return sum(1 for i, line in enumerate(lines[:first - 1], start=1)
               if line.strip() and not line.strip().startswith("#") and i not in docs)


@pytest.mark.parametrize("level", list(levels.LEVELS))
def test_each_lesson_file_starts_with_its_lesson(tmp_path_factory, level):
    """In every lesson file of every level the first TODO the level strips comes within the first 60 lines
    of code: speed paths and machinery live elsewhere (gpt/kernels.py, app/), not above the lesson."""
    out = level_handout(tmp_path_factory, level)
    files = {out / f for f in levels.level_files(level)}
    assert files, level
    late = {p.name: n for p in files if (n := code_lines_before_first_todo(p)) is None or n > 60}
    assert not late, f"{level}: lines of code before the first TODO: {late}"


def test_code_lines_before_first_todo_counts_code_only(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('"""doc\n\nmore"""\nimport os\n\n# a comment\ndef f():\n    """doc"""\n    x = 1\n    # TODO(a): do it\n')
    assert code_lines_before_first_todo(p) == 3, "import, def and x = 1"
