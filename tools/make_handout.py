"""Make the student handout (and the Gradescope autograder) from this solution repository.

    python tools/make_handout.py OUT_DIR [--level intro|standard|advanced] [--todos all|id1,id2] [--zip] [--autograder]

--level (default standard; tools/levels.py defines the levels) chooses the assignment: which TODOs are
stripped, the hw5.md its students read (its questions, its TODO table, hints and score table, generated
by tools/levels.py) and the graded tests that count (tests/graded/level.json lists the level's TODOs;
the pytest plugin runs only theirs). --todos strips another set of regions (any TODO ids, or all).

OUT_DIR receives what students get: the package, main.py, generate.py, the app package, sbatch.sh, hw5.md,
requirements.txt, README.md and the public graded tests of the level (a graded test file ships only
when it has a points mark for a TODO of the level; a fixture, only when a shipped file names it). In the
Python files every region

        # TODO(some-id): instructions ...
        ### BEGIN SOLUTION
        ...solution...
        ### END SOLUTION

becomes `raise NotImplementedError("TODO(some-id)")` at the region's indentation (instructions kept).
Regions of other TODOs keep their solution and read as given code: the markers go, and the comment's
`TODO(some-id): ` prefix too ("# TODO(gelu): set y = ..." becomes "# Set y = ..."), so TODO(id)
appears only for the TODOs the student writes. In Markdown
files, <!-- BEGIN SOLUTION --> ... <!-- END SOLUTION --> blocks are removed. Hidden tests
(tests/graded/test_hidden_*.py) and the developer tests are left out.

--zip also writes OUT_DIR.zip, whose entries sit under hw5/. --autograder also writes OUT_DIR-autograder/ and OUT_DIR-autograder.zip
for Gradescope: setup.sh, run_autograder, and in source/ the grader (the level's graded tests,
hidden ones too), the skeleton and grade.py, which runs the student's code apart from
the grader.

The handout is checked before the command succeeds: every .py file compiles, `python main.py --help`
runs, no stripped solution line survives anywhere in it, no solution marker is left, the TODO(id)
markers of its .py files are exactly the stripped TODOs, it has exactly the level's graded test files,
every TODO id is listed in tools/levels.py, and its README.md (tools/handout/README.md, written for
students) and hw5.md name no file it does not have. Malformed markers (unbalanced, nested, or without a
TODO(id) comment above) are an error naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import levels  # noqa: E402

# What students receive (globs relative to the repository root); missing entries are skipped.
HANDOUT_FILES = ["gpt/*.py", "app/*.py", "main.py", "generate.py", "sbatch.sh", "hw5.md", "README.md",
                 "requirements.txt", "pytest.ini", "tests/conftest.py", "tests/gradescope_plugin.py",
                 "tests/graded/*.py", "tests/graded/fixtures/*"]
HIDDEN_TESTS = "test_hidden_*.py"
# A graded test file ships only when it has a points mark for a TODO of the level; a fixture ships when a
# shipped .py file names it (or when no graded .py file names it: then who uses it is unknown).
GRADED_DIR = "tests/graded"
FIXTURES_DIR = "tests/graded/fixtures"
# The handout's README is its own (the repository's README is the instructor's).
STUDENT_README = ROOT / "tools" / "handout" / "README.md"
# The level's TODOs, for the pytest plugin (tests/gradescope_plugin.py): only their graded tests count.
LEVEL_FILE = "tests/graded/level.json"
# What the autograder's trusted grading process holds (the rest of the skeleton is the student's folder).
GRADER_FILES = ["tests", "pytest.ini"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MD_BEGIN, MD_END = "<!-- BEGIN SOLUTION -->", "<!-- END SOLUTION -->"
TODO_RE = re.compile(r"TODO\(([a-z0-9]+(?:-[a-z0-9]+)*)\)")


class HandoutError(Exception):
    pass


@dataclass
class Region:
    path: str
    todo: str
    begin: int          # 1-based line numbers of the markers
    end: int
    indent: str
    lines: list[str]    # the solution lines between the markers
    marker: int = 0     # 1-based line number of the comment line holding TODO(id)


def marker_spans(path: str, lines: list[str], begin: str, end: str) -> list[tuple[int, int]]:
    """(begin line, end line) of every marked region, 1-based; HandoutError if unbalanced or nested."""
    spans, open_at = [], None
    for n, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped == begin:
            if open_at is not None:
                raise HandoutError(f"{path}:{n}: nested {begin} (the region opened at line {open_at} is not closed)")
            open_at = n
        elif stripped == end:
            if open_at is None:
                raise HandoutError(f"{path}:{n}: {end} without a matching {begin}")
            spans.append((open_at, n))
            open_at = None
    if open_at is not None:
        raise HandoutError(f"{path}:{open_at}: {begin} is never closed by {end}")
    return spans


def find_regions(path: str, text: str) -> list[Region]:
    """All solution regions of a Python file, with their TODO ids; HandoutError on malformed markers."""
    lines = text.split("\n")
    regions = []
    for b, e in marker_spans(path, lines, BEGIN, END):
        found = _todo_above(lines, b - 1)
        if found is None:
            raise HandoutError(f"{path}:{b}: solution region has no '# TODO(some-id): ...' comment directly above it")
        todo, marker = found
        indent = lines[b - 1][: len(lines[b - 1]) - len(lines[b - 1].lstrip())]
        regions.append(Region(path, todo, b, e, indent, lines[b:e - 1], marker + 1))
    return regions


def _todo_above(lines: list[str], begin_index: int) -> tuple[str, int] | None:
    """The TODO(id) in the block of comment lines directly above line index begin_index, and the index
    of its line."""
    i = begin_index - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        m = TODO_RE.search(lines[i])
        if m:
            return m.group(1), i
        i -= 1
    return None


# "# TODO(id): " at the start of a comment; the first word of what follows is capitalized when it is a plain
# lowercase word ("normalize each ..." -> "Normalize each ..."), not a name ("x (B, T, C)", "logits = ...").
MARKER_RE = re.compile(r"^(\s*#\s*)TODO\(([a-z0-9]+(?:-[a-z0-9]+)*)\):?\s*")
PLAIN_WORD = re.compile(r"^[a-z]{2,}(?=\s)(?!\s*=)")


def given_comment(line: str) -> str:
    """The TODO's comment line as given code reads it: `# TODO(id): compute y` -> `# Compute y`."""
    m = MARKER_RE.match(line)
    if m is None:
        raise HandoutError(f"the line {line.strip()!r} does not start with '# TODO(id):'")
    rest = line[m.end():]
    if PLAIN_WORD.match(rest):
        rest = rest[0].upper() + rest[1:]
    return m.group(1) + rest


def strip_python(path: str, text: str, todos: set[str] | None) -> tuple[str, list[Region]]:
    """Replace the selected regions (all when todos is None); unselected regions keep their code and read
    as given code: their markers go, and their `# TODO(id): ` comment becomes a plain explanation."""
    lines = text.split("\n")
    regions = find_regions(path, text)
    stripped = []
    for r in reversed(regions):   # from the bottom, so earlier line numbers stay valid
        if todos is None or r.todo in todos:
            lines[r.begin - 1:r.end] = [f'{r.indent}raise NotImplementedError("TODO({r.todo})")']
            stripped.append(r)
        else:
            lines[r.begin - 1:r.end] = r.lines
            try:
                lines[r.marker - 1] = given_comment(lines[r.marker - 1])
            except HandoutError as e:
                raise HandoutError(f"{path}:{r.marker}: {e}") from None
    return "\n".join(lines), stripped[::-1]


def strip_markdown(path: str, text: str) -> str:
    """Remove <!-- BEGIN SOLUTION --> ... <!-- END SOLUTION --> blocks, markers included."""
    lines = text.split("\n")
    hidden = {i for b, e in marker_spans(path, lines, MD_BEGIN, MD_END) for i in range(b - 1, e)}
    return "\n".join(line for i, line in enumerate(lines) if i not in hidden)


def collect(patterns: list[str], include_hidden: bool) -> list[Path]:
    files = []
    for pattern in patterns:
        for p in sorted(ROOT.glob(pattern)):
            if p.is_file() and "__pycache__" not in p.parts and (include_hidden or not p.match(HIDDEN_TESTS)):
                files.append(p)
    return files


def is_graded_test(path: Path) -> bool:
    return path.parent == ROOT / GRADED_DIR and path.name.startswith("test_") and path.suffix == ".py"


def select_for_level(files: list[Path], level: str) -> list[Path]:
    """`files` without the graded test files that have no points mark for a TODO of `level` (the plugin
    would deselect all their tests) and without the fixtures that only those files use."""
    todos = set(levels.level_todos(level))
    kept = [p for p in files if not is_graded_test(p) or todos & {m.todo for m in levels.points_in_file(p)}]
    graded_py = collect([f"{GRADED_DIR}/*.py"], include_hidden=True)
    texts = {p: p.read_text(encoding="utf-8") for p in graded_py}
    fixtures = ROOT / FIXTURES_DIR

    def needed(p: Path) -> bool:
        if fixtures not in p.parents:
            return True
        users = [q for q in graded_py if p.name in texts[q]]
        return not users or any(q in kept for q in users)
    return [p for p in kept if needed(p)]


def shipped_graded_tests(level: str, include_hidden: bool = False) -> list[str]:
    """The graded test files (relative paths) of the level's handout (with the hidden ones: its autograder)."""
    return [str(p.relative_to(ROOT)) for p in select_for_level(collect(HANDOUT_FILES, include_hidden), level)
            if is_graded_test(p)]


def all_todo_ids() -> list[str]:
    ids = []
    for p in collect(HANDOUT_FILES, include_hidden=True):
        if p.suffix == ".py":
            ids += [r.todo for r in find_regions(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))]
    return list(dict.fromkeys(ids))


def build(out_dir: Path, todos: set[str] | None, level: str = levels.DEFAULT_LEVEL,
          include_hidden: bool = False) -> list[Region]:
    """Write the skeleton of `level` into out_dir, stripping the regions of `todos` (None: every region);
    returns the regions that were stripped."""
    target = out_dir.resolve()
    protected = [ROOT] + [ROOT / d for d in ("gpt", "app", "tests", "tools")]
    if any(target == p or (p != ROOT and p in target.parents) for p in protected):
        raise HandoutError(f"refusing to write the handout into the solution's own folders ({out_dir})")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    stripped_all = []
    for src in select_for_level(collect(HANDOUT_FILES, include_hidden), level):
        rel = src.relative_to(ROOT)
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".py":
            text, stripped = strip_python(str(rel), src.read_text(encoding="utf-8"), todos)
            dst.write_text(text, encoding="utf-8")
            stripped_all += stripped
        elif str(rel) == "README.md":
            dst.write_text(student_readme(level), encoding="utf-8")
        elif str(rel) == "hw5.md":
            text = levels.hw5_for_level(src.read_text(encoding="utf-8"), level)
            dst.write_text(strip_markdown(str(rel), text), encoding="utf-8")
        elif src.suffix == ".md":
            dst.write_text(strip_markdown(str(rel), src.read_text(encoding="utf-8")), encoding="utf-8")
        else:
            shutil.copy2(src, dst)
    (out_dir / LEVEL_FILE).write_text(json.dumps({"level": level, "todos": levels.level_todos(level)}, indent=1) + "\n")
    return stripped_all


def student_readme(level: str) -> str:
    """tools/handout/README.md with the level's name, files and full score filled in."""
    marks = levels.graded_points()
    t = levels.totals(level, "", marks)
    score = f"score {t['public'] + t['extra']:g} of {t['public']:g} points"
    if t["extra"]:
        score += f" ({t['public']:g} of {t['public']:g}, plus {t['extra']:g} of {t['extra']:g} extra credit)"
    files = [f"`{f}`" for f in levels.level_files(level)]
    listed = ", ".join(files[:-1]) + " and " + files[-1] if len(files) > 1 else files[0]
    text = STUDENT_README.read_text(encoding="utf-8")
    for key, value in {"level": level, "what": levels.LEVELS[level].what, "files": listed, "full_score": score}.items():
        text = text.replace("{{" + key + "}}", value)
    first, rest = text.split("\n\n", 2)[1], text.split("\n\n", 2)
    rest[1] = textwrap.fill(" ".join(first.split()), width=104, break_on_hyphens=False)   # the paragraph that names the level
    return "\n\n".join(rest)


def verify(out_dir: Path, stripped: list[Region], todos_listed: list[str], level: str = levels.DEFAULT_LEVEL) -> None:
    """Compile every file, run main.py --help, look for leaked solution lines, and check that the handout
    shows exactly its own work: TODO(id) markers only for the stripped regions, no solution markers, and
    only the level's graded test files."""
    for p in out_dir.rglob("*.py"):
        try:
            compile(p.read_text(encoding="utf-8"), str(p), "exec")
        except SyntaxError as e:
            raise HandoutError(f"generated {p.relative_to(out_dir)}:{e.lineno} does not compile: {e.msg}") from None
    proc = subprocess.run([sys.executable, "main.py", "--help"], cwd=out_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HandoutError(f"'python main.py --help' fails in the handout: {proc.stderr.strip()[-300:]}")
    # A stripped line leaks if it shows up in the handout, unless the solution also has it outside regions.
    outside = set()
    for p in collect(HANDOUT_FILES, include_hidden=True):
        if p.suffix == ".py":
            text = p.read_text(encoding="utf-8")
            inside = {i for r in find_regions(str(p), text) for i in range(r.begin - 1, r.end)}
            outside |= {ln.strip() for i, ln in enumerate(text.split("\n")) if i not in inside}
    handout_text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in out_dir.rglob("*")
                             if p.is_file() and p.suffix in (".py", ".md", ".sh", ".txt"))
    handout_lines = {ln.strip() for ln in handout_text.split("\n")}
    for r in stripped:
        for line in r.lines:
            s = line.strip()
            if len(s) >= 12 and not s.startswith("#") and s not in outside and s in handout_lines:
                raise HandoutError(f"solution line of TODO({r.todo}) ({r.path}:{r.begin}) survives in the handout: {s!r}")
    for doc in ("README.md", "hw5.md"):
        missing = missing_paths(out_dir, (out_dir / doc).read_text(encoding="utf-8"))
        if missing:
            raise HandoutError(f"the handout's {doc} names {', '.join(missing)}, which the handout does not have")
    missing = [t for t in todos_listed if t not in levels.BY_ID]
    if missing:
        raise HandoutError(f"tools/levels.py does not list the TODO ids {missing}; add them to its TODOS")
    marked = handout_todo_markers(out_dir)
    wrong = sorted(set(marked) ^ {r.todo for r in stripped})
    if wrong:
        where = "; ".join(f"{t}: {', '.join(marked.get(t, ['nowhere']))}" for t in wrong)
        raise HandoutError(f"the handout's TODO(id) markers differ from its stripped TODOs for {wrong} ({where})")
    for p in out_dir.rglob("*"):
        if p.is_file() and p.suffix in (".py", ".md", ".sh", ".txt"):
            text = p.read_text(encoding="utf-8", errors="replace")
            if any(marker in text for marker in (BEGIN, END, MD_BEGIN, MD_END)):
                raise HandoutError(f"the handout's {p.relative_to(out_dir)} still has a solution marker")
    tests = sorted(str(p.relative_to(out_dir)) for p in (out_dir / GRADED_DIR).glob("test_*.py"))
    if tests != sorted(shipped_graded_tests(level)):
        raise HandoutError(f"the handout's graded tests {tests} are not the {level} level's "
                           f"{sorted(shipped_graded_tests(level))}")


def handout_todo_markers(folder: Path) -> dict[str, list[str]]:
    """{TODO id: [file:line, ...]} of every TODO(id) in the .py files of a handout."""
    found: dict[str, list[str]] = {}
    for p in sorted(folder.rglob("*.py")):
        for n, line in enumerate(p.read_text(encoding="utf-8").split("\n"), start=1):
            for m in TODO_RE.finditer(line):
                found.setdefault(m.group(1), []).append(f"{p.relative_to(folder)}:{n}")
    return found


# A folder name ends at a space or punctuation: "tests/graded/" is one, the "J_t/" of "∂J_t/∂h_i" is not.
PATH_RE = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.(?:py|sh|txt|ini|md|json|pt)|(?:[\w.-]+/)+(?=[\s`'\"()\[\],.;:!?]|$))"
                     r"(?![\w/-])")


def missing_paths(folder: Path, text: str) -> list[str]:
    """Relative file or folder names in `text` (gpt/model.py, tests/graded/, requirements.txt, ...)
    that do not exist in `folder`; names of things a run makes (runs/..., results.json) are fine."""
    made = ("runs/", "venv/")
    outputs = {"results.json", "best.pt", "last.pt", "samples.txt", "metrics.jsonl", "summary.json", "hw5.zip"}
    missing = []
    for name in dict.fromkeys(PATH_RE.findall(text)):
        if name.startswith(made) or name in outputs or name.startswith(("http", "/")) or "://" in name:
            continue
        if not (folder / name).exists():
            missing.append(name)
    return missing


def make_zip(folder: Path, top: str | None = None) -> Path:
    """OUT.zip of a folder; with `top`, every entry sits under top/ (unzipping makes one folder)."""
    path = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                rel = p.relative_to(folder)
                z.write(p, Path(top) / rel if top else rel)
    return path


def build_autograder(out_dir: Path, todos: set[str] | None, level: str = levels.DEFAULT_LEVEL) -> Path:
    """OUT_DIR-autograder/: setup.sh and run_autograder at the top; in source/, grade.py, the grader
    (the level's graded tests, hidden ones too, with their fixtures) and the skeleton (the code students get),
    kept apart so that the student's code never runs inside the grader's folder."""
    ag = out_dir.with_name(out_dir.name + "-autograder")
    if ag.exists():
        shutil.rmtree(ag)
    staged = ag / "staged"
    stripped = build(staged, todos, level, include_hidden=True)
    source = ag / "source"
    (source / "grader").mkdir(parents=True)
    for name in GRADER_FILES:
        if (staged / name).exists():
            shutil.move(str(staged / name), str(source / "grader" / name))
    shutil.move(str(staged), str(source / "skeleton"))
    shutil.copy2(ROOT / "tools" / "autograder" / "grade.py", source / "grade.py")
    for name in ("setup.sh", "run_autograder"):
        shutil.copy2(ROOT / "tools" / "autograder" / name, ag / name)
        os.chmod(ag / name, 0o755)
    # the files a student edits and submits: the level's, and any other file holding a stripped region
    submitted = list(dict.fromkeys(levels.level_files(level) + [r.path for r in stripped]))
    (source / "SUBMITTED_FILES").write_text("\n".join(submitted) + "\n")
    return ag


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--level", default=levels.DEFAULT_LEVEL, choices=list(levels.LEVELS),
                    help="the assignment level (default %(default)s)")
    ap.add_argument("--todos", default=None, help="strip these TODOs instead of the level's: 'all', 'none' "
                    "(every solution kept) or a comma-separated list of TODO ids")
    ap.add_argument("--zip", action="store_true", help="also write OUT_DIR.zip")
    ap.add_argument("--autograder", action="store_true", help="also write the Gradescope autograder")
    args = ap.parse_args(argv)
    try:
        known = all_todo_ids()
        todos = set(levels.level_todos(args.level))
        missing = sorted(todos - set(known))
        if missing:
            raise HandoutError(f"level {args.level} lists TODOs that no solution region has: {missing}")
        if args.todos == "all":
            todos = None
        elif args.todos == "none":          # the level's handout with every solution kept (to check the tests)
            todos = set()
        elif args.todos is not None:
            todos = {t.strip() for t in args.todos.split(",") if t.strip()}
            unknown = sorted(todos - set(known))
            if unknown:
                raise HandoutError(f"unknown TODO ids {unknown}; the TODOs are: {', '.join(known)}")
        stripped = build(args.out_dir, todos, args.level)
        verify(args.out_dir, stripped, known, args.level)
        print(f"wrote {args.out_dir} ({args.level} level): {len(stripped)} TODO regions stripped "
              f"({', '.join(dict.fromkeys(r.todo for r in stripped))})")
        if args.zip:
            print(f"wrote {make_zip(args.out_dir, top='hw5')}")   # unzips into hw5/
        if args.autograder:
            ag = build_autograder(args.out_dir, todos, args.level)
            print(f"wrote {ag} and {make_zip(ag)}")   # flat: Gradescope wants setup.sh at the top
    except (HandoutError, levels.LevelError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
