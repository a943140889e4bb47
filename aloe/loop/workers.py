"""Running a simulation's strategy x seed runs side by side, in spawned processes with few threads each.

Each worker limits torch, FAISS and the BLAS libraries to ``threads`` threads, so ``N`` workers share
the machine's cores instead of each starting one thread per core. Workers report each finished
round on a queue; the parent turns those into progress ticks.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(jobs: int) -> int:
    """Threads each of ``jobs`` workers gets: the usable cores shared out, at least one."""
    return max(1, usable_cores() // jobs)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with torch's intra-op threads set to ``n`` (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _thread_environment(threads: int) -> Iterator[None]:
    """Thread-count variables that spawned children read when their libraries load."""
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_TASK: Callable[..., Any] | None = None
_TICKS: Any = None
_STOP: Any = None  # an Event: set once the run is interrupted, after which no worker starts an item


def set_library_threads(n: int) -> None:
    """Limit torch's intra-op and FAISS's OpenMP thread pools to ``n`` in this process."""
    import faiss
    import torch

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def _start_worker(task: Callable[..., Any], ticks: Any, threads: int, stop: Any) -> None:
    global _TASK, _TICKS, _STOP
    set_library_threads(threads)
    _TASK, _TICKS, _STOP = task, ticks, stop


def _tick(name: str) -> Callable[[], None]:
    return lambda: _TICKS.put(name)


def _run_item(name: str, args: tuple) -> Any:
    """Run one item, unless the run was interrupted (Ctrl-C reaches every worker: the one that takes
    it stops every later item from starting)."""
    if _STOP.is_set():
        raise KeyboardInterrupt(f"{name}: not started, the run was interrupted")
    try:
        return _TASK(*args, _tick(name))
    except KeyboardInterrupt:
        _STOP.set()
        raise


def run_in_workers(
    task: Callable[..., Any],
    items: Sequence[tuple[str, tuple]],
    jobs: int,
    on_tick: Callable[[str], None],
) -> list[Any]:
    """``task(*args, tick)`` for every ``(name, args)`` of ``items`` in ``jobs`` spawned processes.

    ``task`` (a module-level function, or a picklable object holding what every item shares: it is
    sent once per worker) calls ``tick()`` after each unit of work; the parent calls
    ``on_tick(name)`` for each. Returns the results in ``items`` order; the first failure is raised
    once the other running items have stopped.
    """
    context = multiprocessing.get_context("spawn")
    threads = threads_per_worker(jobs)
    with context.Manager() as manager, _thread_environment(threads):
        ticks, stop = manager.Queue(), context.Event()
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(task, ticks, threads, stop)) as executor:
            futures: list[Future] = [executor.submit(_run_item, name, args) for name, args in items]
            pending = set(futures)
            try:
                while pending:
                    _drain(ticks, on_tick)
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                    if any(future.exception() for future in done):
                        for future in pending:
                            future.cancel()
                        break
            except BaseException:  # Ctrl-C: the queued items must not start while the running ones stop
                stop.set()
                executor.shutdown(wait=True, cancel_futures=True)
                raise
        _drain(ticks, on_tick)
    failed = [future.exception() for future in futures if not future.cancelled() and future.exception()]
    if failed:
        raise failed[0]
    return [future.result() for future in futures]


def _drain(ticks: Any, on_tick: Callable[[str], None]) -> None:
    while True:
        try:
            on_tick(ticks.get_nowait())
        except queue.Empty:
            return
