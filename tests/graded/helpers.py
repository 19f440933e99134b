"""Shared by the graded tests: fixtures on disk, and failure messages that teach."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_json(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def expect(ok: bool, what: str, expected, got, hint: str = ""):
    """assert with a message of the form: what / expected ... / got ... / hint."""
    assert ok, f"{what}\n  expected: {expected}\n  got:      {got}" + (f"\n  hint: {hint}" if hint else "")
