"""Shared by the graded tests: fixtures on disk, and failure messages that teach."""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_json(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def short(value, limit: int = 300) -> str:
    """A value for a failure message, cut to `limit` characters (results come from the student's code)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def expect(ok: bool, what: str, expected, got, hint: str = ""):
    """assert with a message of the form: what / expected ... / got ... / hint."""
    assert ok, (f"{what}\n  expected: {short(expected)}\n  got:      {short(got)}"
                + (f"\n  hint: {hint}" if hint else ""))
