"""The repository's boundaries (DESIGN.md): `gpt/` is the library a course teaches and never imports the
application around it (argparse, the `app` package, the entry points or the data pipeline)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPLICATION = {"argparse", "app", "main", "generate", "data", "corpus"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_library_imports_nothing_of_the_application():
    offenders = {}
    for path in sorted((ROOT / "gpt").glob("*.py")):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in APPLICATION}
        if bad:
            offenders[path.name] = sorted(bad)
    assert not offenders, f"gpt/ must not import the application: {offenders}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
    """A lazy import counts too (the check above would otherwise miss `def f(): import argparse`)."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import argparse\n    from app.cli import UserError\n")
    assert imported_modules(p) == {"argparse", "app.cli"}
