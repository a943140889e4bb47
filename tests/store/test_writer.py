"""The staged writer's multi-writer contract and the publish helpers."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.errors import AloeError
from aloe.store import create_store, open_store
from aloe.store.schema import ROUNDS, round_name
from aloe.store.writer import Progress, StagedWriter, aside_path, publish, read_progress, recover_replace

N, D, CHUNK = 250, 4, 50


def writer(store, row_range=None, join=False):
    """A round-0 writer of ``store`` as a rank would build it (same signature for every rank)."""
    return StagedWriter(
        store.backend, store.path, (ROUNDS, round_name(0)), store.n_items,
        {"features": (D, np.dtype("float32")), "logits": (2, np.dtype("float32"))},
        {"labeled_positions": np.array([0, 1]), "labeled_classes": np.array([0, 1])},
        {"t": 0, "class_names": ["a", "b"], "feature_dtype": "float32"},
        CHUNK, True, row_range=row_range, join=join,
    )


def rows(start, stop):
    values = np.arange(start, stop, dtype=np.float32)[:, None]
    return np.repeat(values, D, axis=1), np.repeat(-values, 2, axis=1)


def test_disjoint_row_ranges_of_one_zarr_round(tmp_path):
    store = create_store(tmp_path / "p.zarr", [str(i) for i in range(N)])
    first = writer(store, (0, 100))
    second = writer(store, (100, N), join=True)
    second.write(*rows(100, N))
    second.finish()
    first.write(*rows(0, 60))  # then the rank is killed: one whole chunk is durable
    first = writer(store, (0, 100))  # the restarted rank resumes from there
    assert first.rows_done == 50
    first.write(*rows(50, 100))
    first.commit()
    reader = open_store(store.path).round(0)
    np.testing.assert_array_equal(reader.features(), rows(0, N)[0])
    np.testing.assert_array_equal(reader.logits(), rows(0, N)[1])


def test_commit_waits_for_every_range(tmp_path):
    store = create_store(tmp_path / "p.zarr", [str(i) for i in range(N)])
    first = writer(store, (0, 100))
    first.write(*rows(0, 100))
    with pytest.raises(AloeError, match="150 rows are not written yet"):
        first.commit()
    assert open_store(store.path).rounds() == []


def test_read_progress_takes_only_a_whole_file_with_the_signature(tmp_path):
    path = tmp_path / "node.progress.json"
    assert read_progress(path, "sig") is None  # no file
    path.write_text('{"signature": "sig", "rows": [50, 100], "rows_done": 75}')
    assert read_progress(path, "sig") == Progress(75, (50, 100))
    assert read_progress(path, "other") is None
    path.write_text('{"signature": "sig", "rows_done": 75}')  # no range: resumable, covers nothing
    assert read_progress(path, "sig") == Progress(75, None)
    for garbled in ('{"signature": "sig", "rows": [0, 10], "rows_done": "x"}', '{"signature": "sig"', "[1, 2]"):
        path.write_text(garbled)
        assert read_progress(path, "sig") is None


def test_ranges_must_be_chunk_aligned_and_zarr_only(tmp_path):
    zarr_store = create_store(tmp_path / "p.zarr", [str(i) for i in range(N)])
    with pytest.raises(AloeError, match="aligned"):
        writer(zarr_store, (10, 100))
    with pytest.raises(AloeError, match="no staged node to join"):
        writer(zarr_store, (100, 200), join=True)
    h5_store = create_store(tmp_path / "p.h5", [str(i) for i in range(N)])
    with pytest.raises(AloeError, match="hdf5 node takes one writer"):
        writer(h5_store, (0, 100))


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_publish_never_replaces_unless_asked(tmp_path, kind):
    def make(path, text):
        if kind == "dir":
            path.mkdir()
            (path / "f").write_text(text)
        else:
            path.write_text(text)

    def content(path):
        return (path / "f" if kind == "dir" else path).read_text()

    target, staging = tmp_path / "node", tmp_path / "stage"
    make(target, "old")
    make(staging, "new")
    with pytest.raises(FileExistsError):
        publish(staging, target)
    assert content(target) == "old" and staging.exists()
    publish(staging, target, replace=True)
    assert content(target) == "new" and not staging.exists() and not aside_path(staging).exists()


@pytest.mark.parametrize("staged_left", [True, False])
def test_recover_replace_after_a_kill_between_renames(tmp_path, staged_left):
    target, staging = tmp_path / "node", tmp_path / "stage"
    aside_path(staging).write_text("old")  # the first rename happened, the second did not
    if staged_left:
        staging.write_text("new")
    recover_replace(staging, target)
    assert target.read_text() == ("new" if staged_left else "old")
    assert not aside_path(staging).exists() and not staging.exists()
