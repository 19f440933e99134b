"""The `student` fixture: how graded tests run the student's code (in a sandbox process, see sandbox.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradescope_plugin import DEFAULT_TIMEOUT as DEFAULT_CALL_TIMEOUT
from graded.sandbox import Sandbox


@pytest.fixture(scope="session")
def sandbox():
    folder = os.environ.get("HW5_STUDENT_DIR") or Path(__file__).resolve().parents[2]
    box = Sandbox(folder, os.environ.get("HW5_SANDBOX_USER") or None)
    yield box
    box.stop()


class Student:
    """student.call(probe, *args): run `probe` (a function of the test file) on the student's code."""

    def __init__(self, box: Sandbox, todo: str, timeout: float, hidden: bool):
        self.box, self.todo, self.timeout, self.hidden = box, todo, timeout, hidden

    def call(self, probe, *args, helpers=(), **kwargs):
        return self.box.call(self.todo, self.timeout, probe, *args, helpers=helpers, hidden=self.hidden, **kwargs)


@pytest.fixture
def student(sandbox, request):
    mark = request.node.get_closest_marker("points")
    todo = mark.kwargs.get("todo", "?") if mark else "?"
    timeout = float(os.environ.get("HW5_TIME_LIMIT") or (mark.kwargs.get("timeout") if mark else None)
                    or DEFAULT_CALL_TIMEOUT)
    hidden = bool(mark) and mark.kwargs.get("visibility", "visible") != "visible"
    return Student(sandbox, todo, timeout, hidden)
