"""Run an aloe CLI in this process and SIGKILL it at a chosen point (the fault-injection child).

``python killer.py REPORT MODE VALUE ENTRY ARG...``

- ``MODE`` ``event``: die just before the VALUE-th write event (0: never) -- a rename, link or
  replace, an HDF5/Zarr array creation, row write, attribute write or close, or a file opened
  for writing. ``REPORT`` receives the number of events and the seconds the command ran.
- ``MODE`` ``delay``: die VALUE seconds after the command starts (after the imports).
- ``ENTRY`` is ``module:function`` of a click command's ``main(argv)``.
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def install(kill_at: int) -> list[int]:
    """Count write events; SIGKILL this process at event ``kill_at`` (never when 0)."""
    from aloe.store.hdf5_backend import Hdf5NodeWriter
    from aloe.store.zarr_backend import ZarrNodeWriter

    count = [0]

    def event() -> None:
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def counted(function):
        def wrapper(*args, **kwargs):
            event()
            return function(*args, **kwargs)

        return wrapper

    for name in ("rename", "replace", "link"):
        setattr(os, name, counted(getattr(os, name)))
    for cls in (Hdf5NodeWriter, ZarrNodeWriter):
        for name in ("create_array", "write_rows", "set_attrs", "close"):
            setattr(cls, name, counted(getattr(cls, name)))
    real_open = builtins.open

    def open_counted(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+") and not str(file).startswith("/dev/"):
            event()
        return real_open(file, mode, *args, **kwargs)

    builtins.open = io.open = open_counted
    return count


def main() -> None:
    report, mode, value, entry, *argv = sys.argv[1:]
    module, function = entry.split(":")
    command = getattr(importlib.import_module(module), function)
    import aloe.store.writer  # noqa: F401  (imported before the clock starts)

    count = install(int(value) if mode == "event" else 0)
    if mode == "delay":
        timer = threading.Timer(float(value), os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    started = time.perf_counter()
    try:
        command(argv)
    except SystemExit as exc:
        code = exc.code or 0
    else:
        code = 0
    Path(report).write_text(json.dumps({"events": count[0], "seconds": time.perf_counter() - started,
                                        "code": code}))
    sys.exit(code)


if __name__ == "__main__":
    main()
