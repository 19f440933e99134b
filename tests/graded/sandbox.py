"""The trusted side of grading: runs the student's code in a separate process and gets back only data.

Graded tests never import the student's files. A test hands a *probe* (a small module-level function
of the test file, which imports and calls the student's code) to `student.call(probe, *args)`; the
probe runs in a worker process (sandbox_worker.py) in the student's folder and its return value comes
back as plain data. The test then compares it, here, with references it computes itself or reads from
fixtures. So nothing the student's code does to its own interpreter (patching pytest or torch,
exiting, looping, forking, printing) can change how it is graded: it can only fail its own tests.

One worker serves the tests of one TODO (a fresh process for the next TODO, and another for the
TODO's hidden tests), with a time limit per call and limits on memory, file size and, on the
autograder, processes. On the autograder (HW5_SANDBOX_USER set, running as root) the worker runs as
that unprivileged user, which cannot read the grader's files or write the student's folder; when a
worker ends, every process of that user is killed and every file it left in the temporary folders
is deleted, so nothing carries over from one worker (e.g. a hidden test's inputs) to the next.
For local grading it is an ordinary child process of the student's own tests.

    HW5_STUDENT_DIR   the student's folder (default: the repository holding these tests)
    HW5_SANDBOX_USER  run workers as this user (autograder only; needs root)
    HW5_TIME_LIMIT    seconds per call, overriding the tests' own limits (e.g. to test attacks quickly)
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import pwd
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from graded import sandbox_worker

WORKER = Path(sandbox_worker.__file__).read_text(encoding="utf-8")
MEMORY_LIMIT = 6 << 30          # bytes of address space per worker (torch alone maps about 1 GB)
FILE_LIMIT = 64 << 20           # largest file a worker may write
MAX_REPLY = 64 << 20            # largest result accepted
MAX_PROCESSES = 128             # per sandbox user (threads count too): no fork bombs


class StudentCodeError(AssertionError):
    """The student's code raised, exited, ran out of time or sent something unreadable.
    An AssertionError, so that the test fails (and scores 0) rather than erroring. `brief` is what a
    hidden test may show: it carries nothing the student's code chose (no message of its own)."""

    def __init__(self, message: str, brief: str | None = None):
        super().__init__(message)
        self.brief = brief or message


class Sandbox:
    def __init__(self, folder: str | os.PathLike, user: str | None = None):
        self.folder = os.path.abspath(folder)
        self.user = pwd.getpwnam(user) if user else None
        self.proc = None
        self.key = None                      # (todo, hidden) of the running worker
        self.home = None
        self.timed_out: set[str] = set()     # TODOs whose worker ran out of time: fail their other tests fast

    # -- workers -----------------------------------------------------------------------------
    def _start(self, key: tuple[str, bool]) -> None:
        self.stop()
        read_end, write_end = os.pipe()
        self.home = tempfile.mkdtemp(prefix="hw5-worker-")     # HOME and TMPDIR of the worker
        kw = {}
        if self.user:
            os.chown(self.home, self.user.pw_uid, self.user.pw_gid)
            kw = dict(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.home, "TMPDIR": self.home,
               "LANG": "C.UTF-8",
               "HW5_RESULTS_FD": str(write_end),
               "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        quiet = subprocess.DEVNULL if self.user else None   # locally, the student's prints show in pytest's capture
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", WORKER], cwd=self.folder, env=env,
                                     stdin=subprocess.PIPE, stdout=quiet, stderr=quiet, pass_fds=(write_end,),
                                     start_new_session=True, preexec_fn=self._limits, **kw)
        os.close(write_end)
        self.results = read_end
        self.key = key

    def _limits(self) -> None:
        """In the worker, before it starts: resource limits."""
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.user:
            resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self.results)
        if self.user:
            kill_user_processes(self.user.pw_uid)
            delete_user_files(self.user.pw_uid)
        shutil.rmtree(self.home, ignore_errors=True)
        self.proc = None

    # -- calls -------------------------------------------------------------------------------
    def call(self, todo: str, timeout: float, probe, *args, helpers=(), hidden: bool = False, **kwargs):
        """probe(*args, **kwargs) in the worker of `todo` (its hidden tests have their own); its return
        value, decoded."""
        if todo in self.timed_out:
            raise StudentCodeError(f"Skipped: an earlier test of TODO({todo}) ran out of time (an infinite loop?)")
        if self.proc is None or self.key != (todo, hidden) or self.proc.poll() is not None:
            self._start((todo, hidden))
        request = {"probe": inspect.getsource(probe), "name": probe.__name__,
                   "helpers": [inspect.getsource(h) for h in helpers],
                   "args": sandbox_worker.encode(list(args)), "kwargs": sandbox_worker.encode(kwargs)}
        try:
            line = self._exchange(request, timeout)
        except BaseException:      # the grader's own time limit, Ctrl-C: never reuse a worker mid-request
            self.stop()
            raise
        if line is None:
            self.timed_out.add(todo)
            self.stop()
            raise StudentCodeError(f"Timed out: your code took longer than {timeout:g} s (an infinite loop?)")
        if line == b"":
            code = self.proc.wait()
            self.stop()
            raise StudentCodeError(f"Your code ended the grading process (exit code {code}): a sys.exit, os._exit, "
                                   "a crash, or more memory than allowed")
        try:
            reply = json.loads(line)
            ok = reply.get("ok")
            value = sandbox_worker.decode(reply["result"]) if ok else None
        except Exception as e:   # malformed data from the worker
            self.stop()
            raise StudentCodeError(f"The grading process sent back something unreadable ({type(e).__name__})") from None
        if not ok:
            raise _student_exception(reply, todo)
        return value

    def _exchange(self, request: dict, timeout: float) -> bytes | None:
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:
            pass   # the worker is gone; reading says how
        return self._read_line(timeout)

    def _read_line(self, timeout: float) -> bytes | None:
        """One line from the results pipe: the line, b"" if the worker is gone, None on timeout."""
        buf, deadline = bytearray(), time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.results], [], [], min(left, 0.25))
            if not ready:
                # Processes the worker forked may hold the pipe open after it is gone: look at the worker.
                if self.proc.poll() is not None:
                    return b""
                continue
            chunk = os.read(self.results, 1 << 20)
            if not chunk:
                return b""
            buf += chunk
            if len(buf) > MAX_REPLY:
                self.stop()
                raise StudentCodeError(f"Your code sent back more than {MAX_REPLY >> 20} MB")
            if b"\n" in chunk:
                return bytes(buf[:buf.index(b"\n")])


def _student_exception(reply: dict, todo: str) -> StudentCodeError:
    kind, message, where = reply.get("type", "Exception"), reply.get("message", ""), reply.get("where", "")
    if kind == "NotImplementedError" and message.startswith("TODO("):
        other = message[5:message.find(")")] if ")" in message else ""
        needs = f" (this test of TODO({todo}) needs TODO({other}) first)" if other and other != todo else ""
        return StudentCodeError(f"Not implemented yet: {message}{needs}. Fill it in, then run the tests again.")
    at = f"\n  at {where}" if where else ""
    return StudentCodeError(f"Your code raised {kind}: {message}{at}", brief=f"Your code raised {kind}")


def kill_user_processes(uid: int) -> None:
    """SIGKILL every process owned by uid (what a worker may have left behind: forks, daemons)."""
    for _ in range(3):
        found = False
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        os.kill(int(entry), signal.SIGKILL)
                        found = True
                except OSError:
                    pass
        if not found:
            return
        time.sleep(0.05)


def delete_user_files(uid: int, folders=("/tmp", "/var/tmp", "/dev/shm")) -> None:
    """Delete what uid left in the world-writable folders (files it made to pass data between workers)."""
    for top in folders:
        for folder, dirs, files in os.walk(top, topdown=False):
            for name in files + dirs:
                path = os.path.join(folder, name)
                try:
                    st = os.lstat(path)
                    if st.st_uid == uid:
                        shutil.rmtree(path) if stat.S_ISDIR(st.st_mode) else os.unlink(path)
                except OSError:
                    pass
