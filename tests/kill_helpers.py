"""Kill a child process at a chosen moment (tests that interrupt a real command and resume it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(process: subprocess.Popen, reached: Callable[[], bool], timeout: float = 120.0,
              sig: signal.Signals = signal.SIGKILL, group: bool = False) -> None:
    """Send ``sig`` (SIGKILL) to ``process`` (its whole process group when ``group``: start it with
    ``start_new_session=True``) as soon as ``reached()`` holds, and wait for it to end.

    Fails when the process ends first or ``reached()`` does not hold within ``timeout`` seconds; the
    process is gone when this returns, whatever happened.
    """
    deadline = time.monotonic() + timeout
    try:
        while not reached():
            assert process.poll() is None, "the process ended before it could be killed"
            assert time.monotonic() < deadline, f"no progress within {timeout:.0f} s"
            time.sleep(0.01)
        if group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        process.wait(timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
            process.wait()
