"""The autograder gives a submission only the points it earns (run as Gradescope runs it: as root).

Each attack is a malicious submission built from the generated skeleton, graded through the real
run_autograder: the bare skeleton plus the attack must still score 0, the hidden tests must not show,
and the reference solution must still score full. Needs root (as CI and Gradescope run); elsewhere
the tests are skipped, except under CI=true, where they fail."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

STUDENT_FILES = ("gpt/bpe.py", "gpt/model.py", "gpt/sampling.py", "gpt/trainer.py", "gpt/lstm.py", "gpt/extras.py")


def submitted_files(ag: Path) -> list[str]:
    return (ag / "source" / "SUBMITTED_FILES").read_text().split()


def build_autograder(tmp_path_factory, level: str = "standard"):
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the autograder attack tests must run as root in CI (as Gradescope runs run_autograder)")
        pytest.skip("run_autograder isolates the student's code only as root")
    # Gradescope's venv is readable by every user; here the interpreter may sit under /root (0700):
    # let the sandbox user traverse (not list) the folders above it.
    for folder in Path(os.path.realpath(sys.executable)).parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(folder, mode | stat.S_IXOTH)
    out = tmp_path_factory.mktemp(f"kit-{level}") / "hw5"
    proc = subprocess.run([sys.executable, "tools/make_handout.py", str(out), "--autograder", "--level", level],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, out.parent / "hw5-autograder"


@pytest.fixture(scope="module")
def autograder(tmp_path_factory):
    return build_autograder(tmp_path_factory)


def grade(autograder, files: dict[str, str | None], extra=None, time_limit: int = 5) -> tuple[dict, str, Path]:
    """Build AUTOGRADER_ROOT (source + submission), run run_autograder; (results, its text, the root).
    files: submission name -> text (None: the skeleton's file). extra(submission_folder) adds more."""
    handout, ag = autograder
    root = Path(tempfile.mkdtemp(prefix="hw5-ag-", dir="/tmp"))
    os.chmod(root, 0o755)
    shutil.copytree(ag / "source", root / "source")
    sub = root / "submission"
    sub.mkdir()
    for rel in submitted_files(ag):
        text = files.get(rel)
        (sub / os.path.basename(rel)).write_text(text if text is not None else (handout / rel).read_text())
    if extra:
        extra(sub, root)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "HW5_TIME_LIMIT": str(time_limit)}
    proc = subprocess.run(["bash", str(ag / "run_autograder")], env=env, capture_output=True, text=True, timeout=1500)
    text = (root / "results" / "results.json").read_text()
    return json.loads(text), text + proc.stdout + proc.stderr, root


def skeleton_with(autograder, rel: str, code: str) -> dict[str, str]:
    handout, _ = autograder
    return {rel: (handout / rel).read_text() + "\n" + code}


def assert_zero(results: dict, text: str):
    assert results["score"] == 0, text[:3000]
    assert len(results["tests"]) >= 20 and all(t["score"] == 0 for t in results["tests"]), text[:3000]


def test_the_solution_scores_full_through_run_autograder(autograder):
    _, ag = autograder
    assert submitted_files(ag) == list(STUDENT_FILES)
    results, text, root = grade(autograder, {rel: (ROOT / rel).read_text() for rel in STUDENT_FILES}, time_limit=60)
    assert results["score"] == sum(t["max_score"] for t in results["tests"]) + 5 > 5, text[:3000]   # + extra credit
    assert any(t["visibility"] == "after_published" for t in results["tests"]), "hidden tests run in the autograder"
    assert "files taken from the submission: gpt/bpe.py" in results["output"]


def test_the_bare_skeleton_scores_zero(autograder):
    results, text, _ = grade(autograder, {})
    assert_zero(results, text)


@pytest.mark.parametrize("level", ["intro", "advanced"])
def test_each_level_grades_the_solution_full_and_its_skeleton_zero(tmp_path_factory, level):
    """The level's autograder: its public and hidden tests only, summing to the level's points in hw5.md."""
    sys.path.insert(0, str(ROOT / "tools"))
    import levels
    ag = build_autograder(tmp_path_factory, level)
    files = submitted_files(ag[1])
    assert files == levels.level_files(level)
    t = levels.totals(level, "")
    results, text, _ = grade(ag, {rel: (ROOT / rel).read_text() for rel in files}, time_limit=60)
    assert all(x["status"] == "passed" for x in results["tests"]), text[:3000]
    assert sum(x["max_score"] for x in results["tests"]) == t["public"] + t["hidden"], text[:3000]
    assert results["score"] == t["public"] + t["hidden"] + t["extra"], text[:3000]
    assert {x["name"].split("]")[0][1:] for x in results["tests"]} == set(levels.level_todos(level))
    results, text, _ = grade(ag, {})
    assert results["score"] == 0 and results["tests"] and all(x["score"] == 0 for x in results["tests"]), text[:3000]


PATCH_THE_GRADER = """
import _pytest.python, _pytest.runner, torch, numpy, math
_pytest.python.Function.runtest = lambda self: None          # patch pytest
_pytest.runner.pytest_runtest_call = lambda item: None
torch.allclose = torch.equal = lambda *a, **k: True          # patch the comparisons
torch.Tensor.__eq__ = lambda self, other: True
numpy.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
"""

FORGE_RESULTS = """
import atexit, json, os, time
RES = {results!r}
def forge():
    try:
        with open(RES, "w") as f:
            json.dump({{"score": 1000, "tests": []}}, f)
    except OSError:
        pass
atexit.register(forge)
forge()
if os.fork() == 0:          # a daemon that keeps trying after the worker is gone
    os.setsid()
    for _ in range(300):
        forge()
        time.sleep(0.1)
    os._exit(0)
"""


def test_patching_pytest_and_comparisons_and_rewriting_results_json(autograder):
    handout, _ = autograder

    def extra(sub, root):
        forge = FORGE_RESULTS.format(results=str(root / "results" / "results.json"))
        for rel in ("gpt/bpe.py", "gpt/model.py", "gpt/trainer.py"):
            (sub / os.path.basename(rel)).write_text((handout / rel).read_text() + PATCH_THE_GRADER + forge)
    results, text, _ = grade(autograder, {}, extra=extra)
    assert_zero(results, text)


def test_reading_the_hidden_tests_and_their_inputs(autograder):
    def extra(sub, root):
        hidden = root / "source" / "grader" / "tests" / "graded" / "test_hidden_graded.py"
        handout, _ = autograder
        code = f"""
import json, sys
stolen = []
try:
    stolen.append(open({str(hidden)!r}).read())
except OSError as e:
    stolen.append(repr(e))
frame = sys._getframe()
while frame is not None:                      # the grader's request, with the probe and its inputs
    stolen += [repr(v) for v in frame.f_locals.values() if isinstance(v, (dict, str))][:3]
    frame = frame.f_back
raise ImportError("\\n".join(stolen))
"""
        (sub / "bpe.py").write_text((handout / "gpt/bpe.py").read_text() + code)
        (sub / "model.py").write_text((handout / "gpt/model.py").read_text() + code)
    results, text, _ = grade(autograder, {}, extra=extra)
    assert_zero(results, text)
    hidden_outputs = " ".join(t["output"] for t in results["tests"] if t["visibility"] != "visible")
    for secret in ("low lower lowest", "def test_hidden", "probe_train_and_encode", "n_head in (1, 8)"):
        assert secret not in hidden_outputs, secret
        assert secret not in results["output"], secret
    visible = " ".join(t["output"] for t in results["tests"] if t["visibility"] == "visible")
    assert "low lower lowest" not in visible and "def test_hidden" not in visible
    assert "Permission denied" in visible, "the student's process could not read the grader's files"


# gpt/bpe.py, gpt/sampling.py and gpt/extras.py import no other student file, so each attack below
# is what its TODOs' tests meet first. (model.py, lstm.py and trainer.py import those files.)
EXITS = [
    {"gpt/bpe.py": ("import os\nos._exit(0)", "ended the grading process"),
     "gpt/sampling.py": ("import sys\nsys.exit(0)", "SystemExit"),
     "gpt/extras.py": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", "PermissionError")},
    {"gpt/bpe.py": ("while True:\n    pass", "Timed out"),
     "gpt/sampling.py": ("import os, signal\nos.killpg(0, signal.SIGKILL)", "ended the grading process"),
     "gpt/extras.py": ("import os, signal\nos.kill(1, signal.SIGKILL)", "PermissionError")},
]
TODO_OF = {"gpt/bpe.py": "bpe-count-pairs", "gpt/sampling.py": "sample-top-p", "gpt/extras.py": "logit-bias-recovery"}


@pytest.mark.parametrize("attacks", EXITS, ids=["exit-and-kill-the-grader", "loop-and-kill-own-group"])
def test_exit_kill_or_loop_at_import(autograder, attacks):
    """Each file ends or blocks its process its own way when imported: its tests fail with a clear message."""
    files = {}
    for rel, (code, _) in attacks.items():
        files.update(skeleton_with(autograder, rel, code))
    results, text, _ = grade(autograder, files, time_limit=4)
    assert_zero(results, text)
    for rel, (_, message) in attacks.items():
        outputs = [t["output"] for t in results["tests"] if t["name"].startswith(f"[{TODO_OF[rel]}]")]
        assert outputs and any(message in o for o in outputs), (rel, outputs)


FORK_BOMB = """
import os, time
pids = []
for _ in range(10_000):                       # a fork bomb, stopped by the process limit (128)
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    pids.append(pid)
assert len(pids) < 128, "the process limit stopped the fork bomb"
"""

HUGE_OUTPUTS = """
import sys, torch
print("x" * 50_000_000)                       # floods stdout and stderr
sys.stderr.write("y" * 50_000_000)

def filter_top_p(logits, p):                  # an answer far too big to send back
    return torch.zeros(200_000_000, dtype=torch.uint8)
"""


def test_forks_and_huge_outputs(autograder):
    files = {**skeleton_with(autograder, "gpt/extras.py", FORK_BOMB),
             **skeleton_with(autograder, "gpt/sampling.py", HUGE_OUTPUTS)}
    results, text, _ = grade(autograder, files, time_limit=40)
    assert_zero(results, text)
    top_p = [t["output"] for t in results["tests"] if t["name"].startswith("[sample-top-p]")]
    assert any("more than 64 MB" in o for o in top_p), top_p
    assert all("more than 64 MB" in o or "ended the grading process" in o for o in top_p), top_p  # or out of memory
    extra = [t["output"] for t in results["tests"] if t["name"].startswith("[logit-bias-recovery]")]
    assert extra and ("ended the grading process" in extra[0] or "Not implemented" in extra[0]), extra


def test_symlinks_and_special_files_are_not_taken(autograder):
    def extra(sub, root):
        outside = root / "outside"
        outside.mkdir()
        shutil.copy(ROOT / "gpt" / "bpe.py", outside / "bpe.py")     # a correct file, outside the submission
        (sub / "bpe.py").unlink()
        (sub / "bpe.py").symlink_to(outside / "bpe.py")
        (sub / "model.py").unlink()
        os.mkfifo(sub / "model.py")
    results, text, _ = grade(autograder, {}, extra=extra)
    assert_zero(results, text)
    assert "ignored bpe.py: a symbolic link" in results["output"]
    assert "ignored model.py: not a regular file" in results["output"]
