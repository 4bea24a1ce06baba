"""Ending a multi-worker training process whatever TensorFlow is doing: a supervising parent.

A multi-worker strategy waits for its cluster inside TensorFlow's C++ code and holds Python's
GIL while it waits: no Python thread, timer or signal handler of that process runs until the
wait ends, and a peer that never comes up makes it wait forever. TensorFlow's coordination
service also takes SIGTERM for its own preemption notice. Such a worker ignored Ctrl-C,
``kill`` and ``timeout``.

So tools/train.py runs a multi-worker run as two processes. :func:`supervise` runs in the
process the user started (its pid, its signals, its exit status); the worker is a child that
trains and reports how far it got over a pipe (:class:`Supervision`). The supervisor ends the
worker (SIGKILL), then itself with a one-line error:

* on SIGINT or SIGTERM, at any point: exit status 128 + the signal's number;
* when the worker has not reported the cluster formed within the timeout it gave on starting
  to wait (``train.cluster_timeout_seconds``): status 1, with a line naming the peers it cannot
  reach.

Otherwise it exits with the worker's status. The worker dies with its supervisor
(``PR_SET_PDEATHSIG`` on Linux): a supervisor killed with SIGKILL leaves no worker behind.
Ending the worker at any moment is safe: checkpoints, exports and logs are written under
temporary names and renamed into place (:mod:`reid.utils.io`). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from reid.errors import ReidError

#: In the worker's environment: ``<fd> <pid>``, its end of the pipe and the supervisor's pid.
SUPERVISOR_ENV = "REID_SUPERVISOR"
#: What stops a run: Ctrl-C, and what ``kill``, ``timeout`` and job schedulers send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Supervision:
    """The worker's end of the pipe: tells the supervisor how far it got."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def from_environment(cls) -> Supervision | None:
        """This process's supervision when :func:`supervise` started it, else None. Call it
        first thing: it ties this process's life to the supervisor's and leaves Ctrl-C (sent
        to both) to the supervisor."""
        value = os.environ.pop(SUPERVISOR_ENV, None)  # not for this process's own children
        if not value:
            return None
        fd, supervisor = (int(part) for part in value.split())
        os.set_inheritable(fd, False)
        _die_with(supervisor)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return cls(fd)

    def waiting(self, seconds: float) -> None:
        """The worker starts waiting for its cluster, for at most ``seconds``."""
        self._tell(event="waiting", seconds=seconds)

    def formed(self) -> None:
        """Every worker has joined: the wait is over."""
        self._tell(event="formed")

    def training(self, run_dir: str | os.PathLike) -> None:
        """The run trains in ``run_dir``: a worker stopped from now on is resumed from there."""
        self._tell(event="training", run=str(run_dir))

    def _tell(self, **event: object) -> None:
        os.write(self._fd, (json.dumps(event) + "\n").encode())


def _die_with(supervisor: int) -> None:
    """Have the kernel kill this process when the supervisor ends (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != supervisor:  # it ended before that
        os._exit(1)


def supervise(command: Sequence[str], who: str,
              explain_timeout: Callable[[float], str],
              describe: Callable[[ReidError], str] = str) -> int:
    """Run the worker ``command`` and return the exit status of the run: the worker's, or
    that of a stop (see the module's docstring). ``who`` names the worker in messages
    (``worker 0 of 2``); ``explain_timeout(seconds)`` says why its cluster did not form;
    ``describe`` words a stop's error for the user (a tool names its flags)."""
    report, report_end = os.pipe()
    wake, wake_end = os.pipe()
    os.set_blocking(wake_end, False)
    watched = [s for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN]
    # The handlers do nothing: the wakeup fd, set first so that no signal falls between the
    # two, carries each signal's number to the loop.
    old_wakeup = signal.set_wakeup_fd(wake_end)
    previous = {s: signal.signal(s, lambda *_: None) for s in watched}
    try:
        worker = subprocess.Popen(command, pass_fds=(report_end,),
                                  env={**os.environ, SUPERVISOR_ENV: f"{report_end} {os.getpid()}"})
        os.close(report_end)
        report_end = -1
        return _watch(worker, report, wake, who, explain_timeout, describe)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for s, handler in previous.items():
            signal.signal(s, handler)
        for fd in (report, report_end, wake, wake_end):
            if fd >= 0:
                os.close(fd)


def _watch(worker: subprocess.Popen, report: int, wake: int, who: str,
           explain_timeout: Callable[[float], str],
           describe: Callable[[ReidError], str]) -> int:
    deadline: float | None = None
    seconds = 0.0
    after = ""  # what follows "stopped by SIGNAL" in the line that ends the run
    fields: tuple[str, ...] = ()  # the values ``after`` asks for
    pending = b""
    while True:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([report, wake], [], [], timeout)
        if wake in ready:
            signum = os.read(wake, 64)[0]
            return _end(worker, lambda: describe(ReidError(
                f"{who}: stopped by {signal.Signals(signum).name}{after}", field=fields)),
                128 + signum)
        if not ready:  # the worker is ended before the peers are probed (up to seconds)
            return _end(worker, lambda: explain_timeout(seconds), 1)
        chunk = os.read(report, 4096)
        if not chunk:  # the worker's end is closed: it has ended
            status = worker.wait()
            return 128 - status if status < 0 else status
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            event = json.loads(line)
            if event["event"] == "waiting":
                seconds = float(event["seconds"])
                deadline = time.monotonic() + seconds
                after = " while waiting for the cluster"
            elif event["event"] == "formed":
                deadline, after, fields = None, "", ()
            elif event["event"] == "training":
                after = f"; start every worker again, resuming {event['run']}"
                fields = ("resume", "run_dir")


def _end(worker: subprocess.Popen, message: Callable[[], str], status: int) -> int:
    """Kill the worker, then say why (``message()``): the run's last line."""
    worker.kill()
    worker.wait()
    sys.stdout.flush()
    print(f"error: {message()}", file=sys.stderr, flush=True)
    return status


def worker_command(script: str | os.PathLike, argv: Sequence[str]) -> list[str]:
    """The command that runs ``script`` with ``argv`` again, as the supervised worker."""
    return [sys.executable, str(pathlib.Path(script).resolve()), *argv]
