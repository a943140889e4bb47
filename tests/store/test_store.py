"""The round store on both backends: round trips, streaming, selections, caches, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aloe.errors import AloeError
from aloe.store import create_store, open_store
from aloe.store.writer import StagedWriter

SUFFIXES = [".zarr", ".h5"]


def make_round(store, t, features, logits, classes=("a", "b", "c"), block=37, chunk_rows=64):
    writer = store.begin_round(
        t,
        feature_dim=features.shape[1],
        class_names=list(classes),
        labeled_positions=np.array([0, 5, 9]),
        labeled_classes=np.array([0, 2, 1]),
        provenance={"mode": "linear", "seed": 3},
        chunk_rows=chunk_rows,
    )
    for start in range(0, len(features), block):
        writer.write(features[start : start + block], logits[start : start + block])
    writer.commit()


@pytest.fixture(params=SUFFIXES)
def suffix(request):
    return request.param


def data(n=300, d=16, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, c)).astype(np.float32)


def test_round_trip(tmp_path, suffix):
    ids = [f"img-{i}" for i in range(300)]
    store = create_store(tmp_path / f"pool{suffix}", ids, meta={"dataset": "toy"})
    features, logits = data()
    make_round(store, 0, features, logits)
    reopened = open_store(tmp_path / f"pool{suffix}")
    assert reopened.rounds() == [0] and reopened.latest_round() == 0
    assert list(reopened.ids) == ids and reopened.meta == {"dataset": "toy"}
    r = reopened.round(0)
    assert r.features().dtype == np.float32
    np.testing.assert_allclose(r.features(), features.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(r.logits(), logits)
    rows = np.array([250, 3, 3, 120])
    np.testing.assert_array_equal(r.logits(rows), logits[rows])
    np.testing.assert_array_equal(r.features(rows), r.features()[rows])
    assert r.class_names == ["a", "b", "c"] and r.n_classes == 3
    np.testing.assert_array_equal(r.labeled_positions, [0, 5, 9])
    np.testing.assert_array_equal(r.labeled_classes, [0, 2, 1])
    assert r.provenance == {"mode": "linear", "seed": 3} and r.mode == "linear"
    blocks = list(r.iter_blocks(100))
    assert [b[0] for b in blocks] == [0, 100, 200]
    np.testing.assert_array_equal(np.concatenate([b[2] for b in blocks]), logits)
    np.testing.assert_array_equal(reopened.position_of(["img-7", "img-2"]), [7, 2])


@settings(max_examples=15, deadline=None)
@given(
    blocks=st.lists(st.integers(1, 90), min_size=1, max_size=12),
    chunk_rows=st.integers(1, 70),
    backend=st.sampled_from(SUFFIXES),
)
def test_any_block_sizes_reassemble(tmp_path_factory, blocks, chunk_rows, backend):
    """Whatever the caller's block sizes and the chunk size, the round holds exactly its rows."""
    n = sum(blocks)
    store = create_store(tmp_path_factory.mktemp("s") / f"p{backend}", [str(i) for i in range(n)])
    features, logits = data(n, 4, 2, seed=n)
    writer = store.begin_round(
        0, feature_dim=4, class_names=["x", "y"], labeled_positions=[], labeled_classes=[],
        feature_dtype="float32", chunk_rows=chunk_rows,
    )
    start = 0
    for size in blocks:
        writer.write(features[start : start + size], logits[start : start + size])
        start += size
        assert writer.rows_done == start
    writer.commit()
    r = store.round(0)
    np.testing.assert_array_equal(r.features(), features)
    np.testing.assert_array_equal(r.logits(), logits)


def test_commit_refuses_missing_rows_and_round_stays_invisible(tmp_path, suffix):
    store = create_store(tmp_path / f"p{suffix}", [str(i) for i in range(100)])
    features, logits = data(100)
    writer = store.begin_round(0, feature_dim=16, class_names=["a", "b", "c"],
                               labeled_positions=[], labeled_classes=[], chunk_rows=32)
    writer.write(features[:70], logits[:70])
    with pytest.raises(ValueError, match="only 70 of 100"):
        writer.commit()
    assert store.rounds() == [] and store.incomplete_rounds() == [0]
    with pytest.raises(AloeError, match="round 0 is incomplete"):
        store.round(0)
    writer.abort()
    assert store.incomplete_rounds() == []


def test_resume_continues_from_last_chunk_and_restarts_on_other_labels(tmp_path, suffix):
    store = create_store(tmp_path / f"p{suffix}", [str(i) for i in range(100)])
    features, logits = data(100)
    args = dict(feature_dim=16, class_names=["a", "b", "c"], labeled_positions=[1],
                labeled_classes=[2], chunk_rows=32)
    first = store.begin_round(0, **args)
    first.write(features[:70], logits[:70])  # two whole chunks reach disk, 6 rows stay buffered
    again = store.begin_round(0, **args)
    assert again.rows_done == 64
    again.write(features[64:], logits[64:])
    again.commit()
    np.testing.assert_array_equal(store.round(0).logits(), logits)
    other = store.begin_round(1, **args)
    other.write(features[:40], logits[:40])
    restarted = store.begin_round(1, **{**args, "labeled_classes": [0]})
    assert restarted.rows_done == 0


def test_rounds_are_immutable_and_selections_are_separate(tmp_path, suffix):
    store = create_store(tmp_path / f"p{suffix}", [str(i) for i in range(50)])
    features, logits = data(50)
    make_round(store, 2, features, logits)
    with pytest.raises(AloeError, match="already exists"):
        store.begin_round(2, feature_dim=16, class_names=["a"], labeled_positions=[], labeled_classes=[])
    arrays = {"chosen": np.array([4, 7]), "scores": np.array([0.5, 0.25], dtype=np.float32)}
    store.write_selection(2, "aloe-b2", {"strategy": "aloe", "budget": 2}, arrays)
    with pytest.raises(AloeError, match="already has a selection"):
        store.write_selection(2, "aloe-b2", {"strategy": "aloe"}, arrays)
    store.write_selection(2, "aloe-b2", {"strategy": "random"}, {"chosen": np.array([1])}, overwrite=True)
    attrs, read = open_store(store.path).read_selection(2, "aloe-b2")
    assert attrs["strategy"] == "random" and attrs["t"] == 2
    np.testing.assert_array_equal(read["chosen"], [1])
    assert store.selections(2) == ["aloe-b2"]
    np.testing.assert_array_equal(store.round(2).logits(), logits)
    with pytest.raises(AloeError, match="no round 5"):
        store.write_selection(5, "x", {}, {})
    with pytest.raises(AloeError, match="invalid selection name"):
        store.write_selection(2, "../evil", {}, {})


def test_feature_cache(tmp_path, suffix):
    store = create_store(tmp_path / f"p{suffix}", [str(i) for i in range(40)])
    assert store.cached_features("backbone-abc") is None
    features, _ = data(40, 8)
    writer = store.begin_cache("backbone-abc", feature_dim=8, meta={"backbone": "x"}, chunk_rows=16)
    writer.write(features)
    writer.commit()
    cache = store.cached_features("backbone-abc")
    np.testing.assert_allclose(cache.features([3, 1]), features[[3, 1]], atol=2e-3)
    assert cache.attrs["meta"] == {"backbone": "x"}


def test_read_only_and_creation_errors(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    create_store(path, ["a", "b"])
    with pytest.raises(AloeError, match="already exists"):
        create_store(path, ["a", "b"])
    with pytest.raises(AloeError, match="unique"):
        create_store(tmp_path / f"q{suffix}", ["a", "a"])
    with pytest.raises(AloeError, match="read-only"):
        open_store(path).begin_round(0, feature_dim=1, class_names=["a"], labeled_positions=[],
                                     labeled_classes=[])
    with pytest.raises(AloeError, match="ids are not in the pool"):
        open_store(path).position_of(["a", "zz"])


def test_bad_stores_give_clear_errors(tmp_path):
    (tmp_path / "plain.zarr").mkdir()
    with pytest.raises(AloeError, match="not an aloe store"):
        open_store(tmp_path / "plain.zarr")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(AloeError, match="not an aloe store"):
        open_store(tmp_path / "junk.h5")
    with pytest.raises(AloeError, match="unknown store backend 'parquet'"):
        open_store(tmp_path / "plain.zarr", backend="parquet")
    (tmp_path / "pool.parquet").write_bytes(b"")
    with pytest.raises(AloeError, match=r"cannot tell .* ending in \.zarr \(zarr\) or \.h5/\.hdf5 \(hdf5\)$"):
        open_store(tmp_path / "pool.parquet")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "p.zarr"
    create_store(path, ["a"])
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["aloe"]["schema_version"] = 99
    (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(AloeError, match="schema version 99 is newer"):
        open_store(path)


def test_missing_and_mismatched_arrays(tmp_path):
    path = tmp_path / "p.h5"
    store = create_store(path, [str(i) for i in range(20)])
    features, logits = data(20)
    make_round(store, 0, features, logits)
    make_round(store, 1, features, logits)
    round0 = store.backend.node_path(path, "rounds", "0000")
    with h5py.File(round0, "r+") as handle:
        del handle["logits"]
    with pytest.raises(AloeError, match="array 'logits' is missing"):
        store.round(0)
    with h5py.File(store.backend.node_path(path, "rounds", "0001"), "r+") as handle:
        handle.attrs["aloe"] = json.dumps({"class_names": ["only-one"]})
    with pytest.raises(AloeError, match="logits have 3 columns but the round lists 1 classes"):
        store.round(1)


def test_writer_rejects_bad_blocks(tmp_path):
    store = create_store(tmp_path / "p.zarr", [str(i) for i in range(10)])
    writer: StagedWriter = store.begin_round(0, feature_dim=4, class_names=["a", "b"],
                                             labeled_positions=[], labeled_classes=[])
    with pytest.raises(ValueError, match="expected"):
        writer.write(np.zeros((3, 5)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="past the pool"):
        writer.write(np.zeros((11, 4)), np.zeros((11, 2)))
    with pytest.raises(AloeError, match="out of range"):
        store.begin_round(1, feature_dim=4, class_names=["a"], labeled_positions=[10],
                          labeled_classes=[0])
