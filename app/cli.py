"""Command-line plumbing for main.py and generate.py: argument types, and errors as one line.

The library raises ordinary exceptions (ValueError, FileNotFoundError, OSError, ...) whose messages
do not know about flags. The command line catches them where it calls the library and names the
flag (`flag_errors`), so that a user sees `error: --checkpoint: checkpoint x.pt does not exist ...`
and exit code 2, never a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys


class UserError(Exception):
    """A problem with the user's input (a flag, a file, the machine): printed as `error: <message>`, exit 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line on stderr (`error: ...`) and exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


@contextlib.contextmanager
def flag_errors(flag: str, hint: str = "", kinds=(ValueError, OSError)):
    """Turn the library's `kinds` of exception raised inside into a UserError naming `flag`."""
    try:
        yield
    except kinds as e:
        message = str(e).strip() or type(e).__name__
        raise UserError(f"{flag}: {message}" + (f"; {hint}" if hint else "")) from None


def _typed(convert, check, what):
    """An argparse `type` that converts with `convert` and accepts only values passing `check`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


positive_int = _typed(int, lambda v: v > 0, "a positive integer")
non_negative_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _typed(float, lambda v: v > 0, "a positive number")
non_negative_float = _typed(float, lambda v: v >= 0, "a non-negative number")
seed_int = _typed(int, lambda v: 0 <= v < 2**32, "a seed in 0 .. 4294967295 (2**32 - 1)")
probability = _typed(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def run_cli(fn) -> int:
    """Run a command: a UserError becomes one line and exit 2; an exception with an `exit_code`
    (the trainer's Preempted: stopped on a signal, resumable) prints its message and exits with it."""
    try:
        return fn() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if getattr(e, "exit_code", None) is None:
            raise
        print(str(e), file=sys.stderr)
        return e.exit_code
