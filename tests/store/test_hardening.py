"""Regression tests for the store's fault and bad-input findings (each failed before its fix)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from aloe.cli import cli
from aloe.embedder.cli import command as embed_command
from aloe.errors import AloeError
from aloe.internal.cli import run_cli
from aloe.store import create_store, open_store
from aloe.store import store as store_module
from aloe.store.writer import aside_path

SUFFIXES = [".zarr", ".h5"]
N, D = 60, 4


@pytest.fixture(params=SUFFIXES)
def suffix(request):
    return request.param


def ids(n=N):
    return [f"item{i:03d}" for i in range(n)]


def write_round(store, t, d=D, classes=("a", "b"), chunk_rows=16):
    writer = store.begin_round(t, feature_dim=d, class_names=list(classes), labeled_positions=[0, 1],
                               labeled_classes=[0, len(classes) - 1] if classes else [], chunk_rows=chunk_rows)
    rng = np.random.default_rng(t)
    writer.write(rng.standard_normal((store.n_items, d)), rng.standard_normal((store.n_items, len(classes))))
    writer.commit()


def npz_pool(path, n=N, d=D, scale=1.0, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"ids": np.array(ids(n)), "features": scale * rng.standard_normal((n, d)).astype(np.float32)}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def labels_csv(path, rows=(("item000", "cat"), ("item001", "dog"), ("item002", "cat"))):
    path.write_text("id,label\n" + "".join(f"{i},{label}\n" for i, label in rows))
    return path


def embed(capsys, npz, labels, store):
    code = run_cli(embed_command, ["--from-features", str(npz), "--labels", str(labels), "--store", str(store)])
    out = capsys.readouterr()
    return code, out.out, out.err


# a kill while --from-features caches the npz ---------------------------------------------


def test_killed_cache_import_resumes_with_the_right_rows(tmp_path, suffix, capsys):
    from aloe.data.npz import npz_digest
    from aloe.embedder.linear_round import import_features_npz

    npz = npz_pool(tmp_path / "pool.npz", n=100)
    features = np.load(npz)["features"]
    store = create_store(tmp_path / f"s{suffix}", ids(100))
    key = f"npz-{npz_digest(npz)}"
    killed = store.begin_cache(key, feature_dim=D, chunk_rows=32)
    killed.write(features[:70])  # two whole chunks reach the disk, then the process dies
    assert run_cli(cli, ["store", "info", str(store.path)]) == 0
    assert f"cache {key} INCOMPLETE" in capsys.readouterr().out

    cache = import_features_npz(open_store(store.path, "a"), npz)
    np.testing.assert_array_equal(cache.features(), features.astype(np.float16).astype(np.float32))
    assert open_store(store.path).incomplete_caches() == []


# a cold start (no labels, no classes) on HDF5 --------------------------------------------


def test_round_without_classes_round_trips(tmp_path, suffix):
    store = create_store(tmp_path / f"s{suffix}", ids())
    writer = store.begin_round(0, feature_dim=D, class_names=[], labeled_positions=[], labeled_classes=[])
    writer.write(np.ones((N, D)), np.zeros((N, 0)))
    writer.commit()
    reader = open_store(store.path).round(0)
    assert reader.logits().shape == (N, 0) and reader.n_classes == 0
    assert run_cli(cli, ["store", "check", str(store.path)]) == 0


# features beyond float16 -------------------------------------------------------------------


def test_writer_refuses_values_beyond_float16_and_leaves_nothing(tmp_path, suffix):
    store = create_store(tmp_path / f"s{suffix}", ids())
    writer = store.begin_round(0, feature_dim=D, class_names=["a"], labeled_positions=[0], labeled_classes=[0],
                               chunk_rows=16)
    features = np.ones((N, D), dtype=np.float32)
    features[20, 1] = 1e5
    with pytest.raises(AloeError, match=r"features reach 1e\+05, beyond the float16 range"):
        writer.write(features, np.zeros((N, 1)))
        writer.commit()
    assert store.incomplete_rounds() == [] and store.rounds() == []


def test_from_features_beyond_float16_stores_float32_and_says_so(tmp_path, suffix, capsys):
    npz = npz_pool(tmp_path / "pool.npz", scale=1e5)
    code, _, err = embed(capsys, npz, labels_csv(tmp_path / "l.csv"), tmp_path / f"s{suffix}")
    assert code == 0 and "stored as float32" in err
    reader = open_store(tmp_path / f"s{suffix}").round(0)
    assert reader.stored_dtype() == np.float32 and np.isfinite(reader.features()).all()
    np.testing.assert_array_equal(reader.features(), np.load(npz)["features"])


# a failed first embed leaves no store ------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"features": np.full((N, D), np.nan, dtype=np.float32)}, "NaN or inf"),
        ({"features": np.zeros((N, D, 2), dtype=np.float32)}, "need ids"),
        ({"features": None}, "missing array"),
        ({"ids": np.array(ids(N - 5))}, "need ids"),
    ],
)
def test_failed_first_embed_leaves_no_store_and_the_fix_works(tmp_path, suffix, capsys, overrides, message):
    store, labels = tmp_path / f"s{suffix}", labels_csv(tmp_path / "l.csv")
    code, _, err = embed(capsys, npz_pool(tmp_path / "bad.npz", **overrides), labels, store)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not store.exists() and list(tmp_path.glob(f"s{suffix}*")) == []
    code, _, err = embed(capsys, npz_pool(tmp_path / "good.npz"), labels, store)
    assert (code, err) == (0, "")
    assert open_store(store).rounds() == [0]


# two first-time runs racing to create the store --------------------------------------------


@pytest.mark.parametrize("rival_pool", [N, N + 1])
def test_losing_the_creation_race_opens_the_winners_store(tmp_path, suffix, monkeypatch, rival_pool):
    path = tmp_path / f"s{suffix}"
    real = store_module.staged_node

    def rival_publishes_first(backend, staging, target, **kwargs):
        monkeypatch.setattr(store_module, "staged_node", real)
        create_store(target, ids(rival_pool))  # the other process wins between our check and rename
        return real(backend, staging, target, **kwargs)

    monkeypatch.setattr(store_module, "staged_node", rival_publishes_first)
    if rival_pool == N:
        store = create_store(path, ids())
        assert store.n_items == N and store.writable
    else:
        with pytest.raises(AloeError, match="another process for a different pool"):
            create_store(path, ids())
        assert open_store(path).n_items == N + 1
    assert [p.name for p in tmp_path.iterdir() if ".creating" in p.name] == []


def test_second_writer_of_a_staged_round_gets_a_clear_error(tmp_path):
    import subprocess
    import sys

    store = create_store(tmp_path / "s.zarr", ids())
    writer = store.begin_round(0, feature_dim=D, class_names=["a"], labeled_positions=[0], labeled_classes=[0])
    code = (
        "import sys; from aloe.store import open_store; from aloe.errors import AloeError\n"
        f"store = open_store({str(store.path)!r}, 'a')\n"
        "try:\n"
        "    store.begin_round(0, feature_dim=4, class_names=['a'], labeled_positions=[0], labeled_classes=[0])\n"
        "except AloeError as exc:\n"
        "    print(exc); sys.exit(2)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 2 and "being written by another process" in result.stdout
    writer.write(np.ones((N, D)), np.ones((N, 1)))
    writer.commit()
    assert open_store(store.path).rounds() == [0]


# --overwrite killed between its two renames -------------------------------------------------


@pytest.mark.parametrize("new_one_staged", [True, False])
def test_overwrite_killed_between_renames_is_recovered(tmp_path, suffix, new_one_staged):
    store = create_store(tmp_path / f"s{suffix}", ids())
    write_round(store, 0)
    store.write_selection(0, "batch", {"v": 1}, {"chosen": np.arange(3)})
    if new_one_staged:
        store.write_selection(0, "next", {"v": 2}, {"chosen": np.arange(5)})
    parts = ("selections", "0000", "batch")
    target = store.backend.node_path(store.path, *parts)
    staging = store.backend.staging_path(store.path, *parts)
    staging.parent.mkdir(parents=True, exist_ok=True)
    if new_one_staged:  # the new record is staged and the old one moved aside: the kill
        os.rename(store.backend.node_path(store.path, "selections", "0000", "next"), staging)
    os.rename(target, aside_path(staging))
    expected = 2 if new_one_staged else 1

    reader = open_store(store.path)  # read-only: sees the record, changes nothing
    assert "batch" in reader.selections(0)
    assert reader.read_selection(0, "batch")[0]["v"] == expected
    assert not target.exists()

    writable = open_store(store.path, "a")  # a writer finishes the swap
    assert target.exists() and not aside_path(staging).exists() and not staging.exists()
    assert writable.read_selection(0, "batch")[0]["v"] == expected


# a feature width that changes between rounds -----------------------------------------------


def test_feature_width_change_between_rounds_is_refused(tmp_path, suffix):
    store = create_store(tmp_path / f"s{suffix}", ids())
    write_round(store, 0, d=D)
    with pytest.raises(AloeError, match=r"round 1 would have 6-wide features but round 0 has 4"):
        store.begin_round(1, feature_dim=6, class_names=["a", "b"], labeled_positions=[0, 1],
                          labeled_classes=[0, 1])
    assert store.incomplete_rounds() == []
    write_round(store, 1, d=D)
    assert store.rounds() == [0, 1]
