"""Shared fixtures: a small long-tailed synthetic pool saved as a cached-features npz, and a Label Studio server.

The server (tests marked ``labelstudio``) is launched as soon as collection ends, so its minute of
start-up overlaps the tests that run before them; it is stopped when the session ends.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from labelstudio_server import launch

from aloe.data.synthetic import make_pool

_LABEL_STUDIO: dict[str, object] = {}


def pytest_collection_finish(session):
    """Launch Label Studio early when a selected test needs it (an error is kept for the test)."""
    if not any(item.get_closest_marker("labelstudio") for item in session.items):
        return
    workdir = Path(tempfile.mkdtemp(prefix="aloe-label-studio-"))
    _LABEL_STUDIO["workdir"] = workdir
    try:
        _LABEL_STUDIO["server"] = launch(workdir)
    except Exception as exc:  # reported by the fixture, as the tests' failure
        _LABEL_STUDIO["error"] = exc


def pytest_sessionfinish(session):
    """Stop the server and remove its data, whatever happened."""
    server = _LABEL_STUDIO.pop("server", None)
    if server is not None:
        server.stop()
    workdir = _LABEL_STUDIO.pop("workdir", None)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def label_studio():
    """The running Label Studio (fails, never skips, when it cannot start)."""
    if "error" in _LABEL_STUDIO:
        raise RuntimeError(f"Label Studio could not be launched: {_LABEL_STUDIO['error']}")
    server = _LABEL_STUDIO.get("server")
    if server is None:
        raise RuntimeError("Label Studio was not launched (is the test marked labelstudio?)")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pool_npz(tmp_path_factory):
    """8 long-tailed classes (60 down to 6 items), 16-d features, with a given test split."""
    pool = make_pool(n_classes=8, n0=60, alpha=0.1, dim=16, spread=0.25, seed=7)
    test = make_pool(n_classes=8, n0=10, alpha=1.0, dim=16, spread=0.25, seed=7)
    path = tmp_path_factory.mktemp("pool") / "pool.npz"
    np.savez(
        path,
        ids=pool.ids,
        features=pool.features,
        labels=pool.labels,
        classes=np.array(pool.class_names),
        test_features=test.features,
        test_labels=test.labels,
    )
    return path
