"""A small pytest plugin for grading.

Graded tests carry `@pytest.mark.points(N, todo="attention-mask")` (optionally `visibility=`, `timeout=` seconds
per call into the student's code, default 30, and `extra_credit=True`: the points count when the test passes but not in the maximum). Options:

    pytest --gradescope-results=results.json     write Gradescope's results.json (write it with "=": given as
                                                  a separate word, an existing results.json is taken by
                                                  pytest's first pass for a test path, and then this
                                                  plugin's option is not known yet)
    pytest -m graded                              run only graded tests (any test with a points mark)
    pytest -m graded --todo attention-forward     only the graded tests of one TODO (or several, comma-separated)

In a handout, tests/graded/level.json (written by tools/make_handout.py) names the level's TODOs: only
their graded tests run, so the score's maximum is the level's.

results.json lists every graded test (name, number, score, max_score, status, output, visibility)
plus the total score and execution time. A test that raises, hangs past its timeout, or cannot
even be collected (e.g. a syntax error in a student's file) scores 0 with the reason as output.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

DEFAULT_TIMEOUT = 30   # seconds per call into the student's code (tests/graded/sandbox.py)


def pytest_addoption(parser):
    parser.addoption("--gradescope-results", default=None, metavar="PATH",
                     help="write a Gradescope results.json for the graded tests to PATH")
    parser.addoption("--todo", default=None, metavar="ID[,ID]",
                     help="run only the graded tests of these TODOs (e.g. --todo attention-forward)")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n, todo, visibility='visible', timeout=30): a graded test")
    config.addinivalue_line("markers", "graded: added automatically to every test with a points mark")
    config._gradescope = {"start": time.time(), "tests": {}, "collect_errors": []}


# Written by tools/make_handout.py into a handout: {"level": ..., "todos": [...]}. Only the graded tests of
# those TODOs run (the other TODOs' code is given, so their tests would add points the level does not have).
LEVEL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graded", "level.json")


def level_todos():
    """The TODO ids of the handout's level, or None in the solution repository (every graded test runs)."""
    if not os.path.exists(LEVEL_FILE):
        return None
    with open(LEVEL_FILE, encoding="utf-8") as f:
        return set(json.load(f)["todos"])


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("points"):
            item.add_marker(pytest.mark.graded)
    wanted = config.getoption("--todo")
    wanted = set(wanted.split(",")) if wanted else None
    level = level_todos()
    if wanted is None and level is None:
        return

    def runs(item):
        mark = item.get_closest_marker("points")
        if mark is None:
            return wanted is None          # with --todo, only graded tests
        todo = mark.kwargs.get("todo")
        return (wanted is None or todo in wanted) and (level is None or todo in level)
    keep = [i for i in items if runs(i)]
    config.hook.pytest_deselected(items=[i for i in items if i not in keep])
    items[:] = keep


def _points(item):
    mark = item.get_closest_marker("points")
    if mark is None:
        return None
    n = mark.args[0] if mark.args else mark.kwargs["n"]
    extra = bool(mark.kwargs.get("extra_credit", False))   # counts when passed, adds nothing to the maximum
    return {"points": float(n), "max_score": 0.0 if extra else float(n), "todo": mark.kwargs.get("todo"),
            "visibility": mark.kwargs.get("visibility", "visible"),
            "timeout": mark.kwargs.get("timeout", DEFAULT_TIMEOUT)}


class _Timeout(BaseException):
    """Raised in the test's thread by SIGALRM (BaseException so test code cannot swallow it)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    info = _points(item)
    use_alarm = info is not None and hasattr(signal, "SIGALRM")
    if use_alarm:
        def on_alarm(signum, frame):
            raise _Timeout(f"the test took longer than {limit} s")
        # A backstop for the grader itself: each call into the student's code has its own limit.
        limit = int(4 * info["timeout"] + 30)
        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(limit)
    try:
        yield
    finally:
        if use_alarm:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    info = _points(item)
    if info is None:
        return
    store = item.config._gradescope["tests"]
    entry = store.setdefault(item.nodeid, {"item": item, "info": info, "passed": True, "output": ""})
    if report.failed:
        entry["passed"] = False
        entry["output"] += _failure_text(call, report, info)
    elif report.skipped and report.when in ("setup", "call"):
        entry["passed"] = False
        entry["output"] += "skipped: " + str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else "")


def _failure_text(call, report, info) -> str:
    """What a failed test shows. Hidden tests (visibility other than "visible") show only what was
    checked and the hint: never expected values, and nothing of the student's code's own messages."""
    todo = f" Look at TODO({info['todo']})." if info.get("todo") else ""
    hidden = info.get("visibility", "visible") != "visible"
    exc = call.excinfo.value if call.excinfo is not None else None
    if isinstance(exc, _Timeout):
        return f"Timed out: {exc}.{todo}\n"
    if hasattr(exc, "brief"):                      # graded.sandbox.StudentCodeError
        return f"{exc.brief if hidden else exc}\n"
    if isinstance(exc, AssertionError):
        text = str(exc).split("\nassert ")[0]     # pytest appends its own rendering of the expression
        if hidden:
            lines = text.splitlines()
            text = "\n".join(lines[:1] + [ln for ln in lines[1:] if ln.strip().startswith("hint:")])
        return f"{text}\n{todo}\n"
    if hidden:
        return f"failed ({type(exc).__name__ if exc is not None else 'error'}).{todo}\n"
    if exc is not None:
        return f"{call.excinfo.exconly()}\n{todo}\n"
    return f"{report.longreprtext[-2000:]}\n{todo}\n"


_COLLECT_ERRORS: list[dict] = []   # files that could not be imported (pytest_collectreport gets no config)


def pytest_collectreport(report):
    if report.failed:
        _COLLECT_ERRORS.append({"name": f"collecting {report.nodeid or 'tests'}", "output": report.longreprtext[-2000:]})


def score_line(state) -> str:
    """'score 93 of 88 points (88 of 88, plus 5 of 5 extra credit)' over the graded tests that ran."""
    regular = [e for e in state["tests"].values() if e["info"]["max_score"] > 0]
    extra = [e for e in state["tests"].values() if e["info"]["max_score"] == 0]
    got = sum(e["info"]["points"] for e in regular if e["passed"])
    got_extra = sum(e["info"]["points"] for e in extra if e["passed"])
    total = sum(e["info"]["max_score"] for e in regular)
    if extra and not regular:   # only extra-credit tests ran (e.g. --todo logit-bias-recovery)
        return f"score {got_extra:g} extra-credit points (of {sum(e['info']['points'] for e in extra):g})"
    line = f"score {got + got_extra:g} of {total:g} points"
    if extra:
        line += f" ({got:g} of {total:g}, plus {got_extra:g} of {sum(e['info']['points'] for e in extra):g} extra credit)"
    return line


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = getattr(config, "_gradescope", None)
    if state and state["tests"]:
        terminalreporter.write_line(f"graded tests: {score_line(state)}", bold=True)


def pytest_sessionfinish(session, exitstatus):
    path = session.config.getoption("--gradescope-results")
    if not path:
        return
    state = session.config._gradescope
    tests = []
    for number, (nodeid, entry) in enumerate(sorted(state["tests"].items()), start=1):
        info, item = entry["info"], entry["item"]
        doc = (getattr(item, "function", None).__doc__ or "").strip().split("\n")[0] if hasattr(item, "function") else ""
        name = f"[{info['todo']}] {item.name}" + (f": {doc}" if doc else "")
        tests.append({"name": name, "number": str(number), "score": info["points"] if entry["passed"] else 0.0,
                      "max_score": info["max_score"], "status": "passed" if entry["passed"] else "failed",
                      "output": entry["output"] or "passed", "visibility": info["visibility"]})
    for err in _COLLECT_ERRORS:
        tests.append({"name": err["name"], "score": 0.0, "max_score": 0.0, "status": "failed",
                      "output": "The tests could not be loaded; every test in this file scores 0.\n" + err["output"],
                      "visibility": "visible"})
    result = {"score": sum(t["score"] for t in tests),
              "execution_time": round(time.time() - state["start"], 2),
              "output": f"{sum(t['status'] == 'passed' for t in tests)} of {len(tests)} graded tests passed; "
                        + score_line(state),
              "tests": tests}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    os.replace(tmp, path)
