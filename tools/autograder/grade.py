"""The autograder's driver (run_autograder calls it): take the submission as files, set the student's
code apart from the grader, run the graded tests, and make sure Gradescope gets a results.json.

    AUTOGRADER_ROOT/source/grader/      the graded tests, their fixtures, hidden tests (trusted)
    AUTOGRADER_ROOT/source/skeleton/    the handout's code, the base of the student's folder
    AUTOGRADER_ROOT/submission/         what the student uploaded
    AUTOGRADER_ROOT/workspace/          made here: skeleton + the submitted files
    AUTOGRADER_ROOT/results/results.json

As root (as on Gradescope) the student's code runs as the unprivileged user SANDBOX_USER (created
if needed), which can read the workspace but not change it, and can neither read source/ nor write
results/. The grading process
(pytest) never imports the student's files: it calls them through tests/graded/sandbox.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

SANDBOX_USER = "hw5student"
TOTAL_TIME_LIMIT = 1200   # seconds for the whole graded run


def intake(submission: Path, wanted: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """The submitted files by their place in the repository, read as regular files only, and notes on
    what was ignored. A file is accepted at its path (gpt/model.py) or anywhere by name (model.py)."""
    found: dict[str, tuple[int, Path]] = {}
    notes = []
    for folder, dirs, files in os.walk(submission, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            rel = path.relative_to(submission).as_posix()
            for want in wanted:
                if name != os.path.basename(want):
                    continue
                mode = os.lstat(path).st_mode
                if not stat.S_ISREG(mode):
                    kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                    notes.append(f"ignored {rel}: {kind}; upload the file itself")
                    continue
                rank = 0 if rel.endswith(want) else 1       # its place in the repository wins over its name
                if want not in found or rank < found[want][0]:
                    found[want] = (rank, path)
    accepted = {}
    for want, (_, path) in found.items():
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            accepted[want] = f.read(4 << 20)
    missing = [w for w in wanted if w not in accepted]
    if missing:
        notes.append("not in the submission (the handout's version is used): " + ", ".join(missing))
    return accepted, notes


def sandbox_user() -> pwd.struct_passwd | None:
    """The unprivileged user for the student's code (made if missing); None unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SANDBOX_USER],
                       check=True, capture_output=True)
        return pwd.getpwnam(SANDBOX_USER)


def check_interpreter(user) -> str | None:
    """None if `user` can run this Python with torch; else why not."""
    proc = subprocess.run([sys.executable, "-I", "-c", "import torch"], user=user.pw_uid, group=user.pw_gid,
                          extra_groups=[], capture_output=True, text=True, cwd="/")
    if proc.returncode == 0:
        return None
    return (f"the sandbox user {user.pw_name} cannot run {sys.executable} with torch "
            f"({(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}); make the Python environment readable by all")


def make_workspace(root: Path, files: dict[str, bytes]) -> Path:
    work = root / "workspace"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(root / "source" / "skeleton", work, symlinks=False)
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    for folder, dirs, names in os.walk(work):   # owned by root, readable by all: the student's code
        os.chmod(folder, 0o755)                  # may read its folder but not change it between tests
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    os.chmod(work, 0o755)
    return work


def lock_down(root: Path) -> None:
    """Only root may read the grader (tests, fixtures, hidden tests) or write the results."""
    os.chmod(root / "source", 0o700)
    (root / "results").mkdir(exist_ok=True)
    os.chmod(root / "results", 0o755)


def main() -> int:
    root = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder")).resolve()
    source, results = root / "source", root / "results" / "results.json"
    wanted = [ln.strip() for ln in (source / "SUBMITTED_FILES").read_text().splitlines() if ln.strip()]
    files, notes = intake(root / "submission", wanted)
    user = sandbox_user()
    if user is not None and (problem := check_interpreter(user)):
        (root / "results").mkdir(exist_ok=True)
        results.write_text(json.dumps({"score": 0, "tests": [], "output": "autograder set-up error: " + problem}))
        print(problem, file=sys.stderr)
        return 1
    if user is None:
        notes.append("not run as root: the student's code ran as this user, without isolation (local try-out)")
    work = make_workspace(root, files)
    (root / "results").mkdir(exist_ok=True)
    if user is not None:
        lock_down(root)
    if results.exists():
        results.unlink()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME", "HW5_TIME_LIMIT", "OMP_NUM_THREADS")}
    env.update(HW5_STUDENT_DIR=str(work), PYTHONDONTWRITEBYTECODE="1")
    if user is not None:
        env["HW5_SANDBOX_USER"] = user.pw_name
    grader = source / "grader"
    cmd = [sys.executable, "-I", "-m", "pytest", "tests", "-m", "graded", "-q", "-p", "no:cacheprovider",
           "--rootdir", str(grader), "--gradescope-results", str(results)]
    try:
        subprocess.run(cmd, cwd=grader, env=env, timeout=TOTAL_TIME_LIMIT)
    except subprocess.TimeoutExpired:
        notes.append(f"the graded run took longer than {TOTAL_TIME_LIMIT} s and was stopped")
    finally:
        if user is not None:
            sys.path.insert(0, str(grader / "tests"))
            from graded.sandbox import kill_user_processes
            kill_user_processes(user.pw_uid)
    try:
        result = json.loads(results.read_text())
    except (OSError, ValueError):
        result = {"score": 0, "tests": [], "output": "The tests crashed or ran out of time before finishing; "
                  "run 'python -m pytest -m graded' locally to see why."}
    accepted = ", ".join(sorted(files)) or "nothing"
    result["output"] = "\n".join([f"files taken from the submission: {accepted}", *notes, result.get("output", "")])
    tmp = results.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, results)
    print(result["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
