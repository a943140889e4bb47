"""A writer killed with SIGKILL mid-round, and a reader working while a writer writes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from aloe.cli import cli
from aloe.internal.cli import run_cli
from aloe.store import create_store, open_store

N, D, C, CHUNK = 2000, 8, 3, 100


def rows(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic content, so the parent knows what the killed child wrote."""
    index = np.arange(start, stop, dtype=np.float32)[:, None]
    return index + np.arange(D, dtype=np.float32) / 10, -index + np.arange(C, dtype=np.float32)


ROUND_ARGS = dict(
    feature_dim=D, class_names=["a", "b", "c"], labeled_positions=[0, 1], labeled_classes=[0, 2],
    feature_dtype="float32", chunk_rows=CHUNK,
)

CHILD = textwrap.dedent(
    """
    import sys, time, pathlib
    sys.path.insert(0, {tests!r})
    from test_crash import rows, ROUND_ARGS, N
    from aloe.store import open_store
    store = open_store({path!r}, "a")
    writer = store.begin_round(1, **ROUND_ARGS)
    for start in range(0, N, 30):
        writer.write(*rows(start, min(start + 30, N)))
        if start >= 700:
            pathlib.Path({ready!r}).touch()
            time.sleep(0.05)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_killed_writer_leaves_readable_store_and_resumes(tmp_path, suffix, capsys):
    path = tmp_path / f"pool{suffix}"
    store = create_store(path, [f"id{i}" for i in range(N)])
    writer = store.begin_round(0, **ROUND_ARGS)
    writer.write(*rows(0, N))
    writer.commit()

    ready = tmp_path / "ready"
    code = CHILD.format(tests=str(__import__("pathlib").Path(__file__).parent), path=str(path), ready=str(ready))
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while not ready.exists():
            assert child.poll() is None, "writer process died early"
            assert time.time() < deadline, "writer never got going"
            time.sleep(0.05)
        # A reader reads the complete round while the writer is mid-way through the next one.
        reader = open_store(path).round(0)
        np.testing.assert_array_equal(reader.features(), rows(0, N)[0])
        reader.close()
        assert open_store(path).rounds() == [0]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()

    after = open_store(path, "a")
    assert after.rounds() == [0]
    assert after.incomplete_rounds() == [1]
    assert run_cli(cli, ["store", "info", str(path)]) == 0
    assert "round 1   INCOMPLETE" in capsys.readouterr().out

    resumed = after.begin_round(1, **ROUND_ARGS)
    assert resumed.rows_done >= 700 and resumed.rows_done % CHUNK == 0
    resumed.write(*rows(resumed.rows_done, N))
    resumed.commit()
    final = open_store(path)
    assert final.rounds() == [0, 1] and final.incomplete_rounds() == []
    features, logits = rows(0, N)
    np.testing.assert_array_equal(final.round(1).features(), features)
    np.testing.assert_array_equal(final.round(1).logits(), logits)
