"""Kill a child process at a chosen moment (tests that interrupt a real command and resume it)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(process: subprocess.Popen, reached: Callable[[], bool], timeout: float = 120.0) -> None:
    """SIGKILL ``process`` as soon as ``reached()`` holds.

    Fails when the process ends first or ``reached()`` does not hold within ``timeout`` seconds; the
    process is gone when this returns, whatever happened.
    """
    deadline = time.monotonic() + timeout
    try:
        while not reached():
            assert process.poll() is None, "the process ended before it could be killed"
            assert time.monotonic() < deadline, f"no progress within {timeout:.0f} s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
