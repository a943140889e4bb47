"""The way out of a damaged store: ``aloe store drop`` for rounds, recomputation for feature caches, and
every damage error naming it."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from aloe.config import validate_config
from aloe.embedder.config import EmbedConfig
from aloe.embedder.round import embed_round
from aloe.store import open_store
from aloe.store.drop import drop_rounds
from aloe.store.schema import ROUNDS, round_name
from aloe.store.store import Store
from aloe.store.writer import release_lock

from .conftest import ALOE, EMBED, SELECT, copy_run, embed_argv, run_here, select_argv
from .test_damaged import garble, one_line_error, truncate

WAY_OUT = "aloe store drop"


def h5_folder(store: Path) -> Path:
    return store.with_name(store.name + ".d")


def damage_round(store: Path, t: int) -> None:
    """Delete a chunk (Zarr) or truncate the file (HDF5) of round ``t``."""
    if store.suffix == ".zarr":
        (store / ROUNDS / round_name(t) / "features/c/1/0").unlink()
    else:
        truncate(h5_folder(store) / ROUNDS / f"{round_name(t)}.h5")


def two_rounds(embedded, inputs, tmp_path, suffix) -> tuple[Path, Path]:
    """A run whose store holds rounds 0 and 1, each with the selection ``batch``."""
    run = copy_run(embedded[suffix], tmp_path / "run")
    store = run / f"pool{suffix}"
    assert run_here(EMBED, embed_argv(inputs, store)) == 0
    assert run_here(SELECT, select_argv(store, run / "batch.csv", seed=1)) == 0
    return run, store


def check_ok(capsys, store: Path) -> None:
    assert run_here(ALOE, ["store", "check", str(store)]) == 0, capsys.readouterr().err
    capsys.readouterr()


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_damaged_round_is_dropped_and_written_again(tmp_path, embedded, inputs, capsys, suffix):
    run, store = two_rounds(embedded, inputs, tmp_path, suffix)
    damage_round(store, 1)
    assert run_here(ALOE, ["store", "info", str(store)]) == 2  # the sound round is still shown
    out, err = capsys.readouterr()
    assert "round 0   mode=linear" in out and "round 1   DAMAGED" in out, out
    assert err.count("\n") == 1 and "rounds/0001" in err and f"{WAY_OUT} {store} --round 1" in err, err
    assert run_here(ALOE, ["store", "info", "--json", str(store)]) == 2
    info = json.loads(capsys.readouterr().out)
    assert [r["round"] for r in info["rounds"]] == [0, 1] and WAY_OUT in info["rounds"][1]["damaged"]
    assert "damaged" not in info["rounds"][0]
    one_line_error(capsys, SELECT, select_argv(store, run / "out.csv", seed=2), f"{WAY_OUT} {store} --round 1")
    one_line_error(capsys, EMBED, embed_argv(inputs, store), f"{WAY_OUT} {store} --round 1")

    assert run_here(ALOE, ["store", "drop", str(store), "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert "dropped round 1 (damaged: " in out and "selections: batch" in out
    assert "the next aloe-embed writes round 1" in out
    dropped = open_store(store)
    assert dropped.rounds() == [0] and dropped.selections(1) == [] and dropped.selections(0) == ["batch"]
    check_ok(capsys, store)
    assert run_here(EMBED, embed_argv(inputs, store)) == 0
    assert open_store(store).rounds() == [0, 1]
    check_ok(capsys, store)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_drop_refuses_sound_rounds_without_force(tmp_path, embedded, inputs, capsys, suffix):
    _, store = two_rounds(embedded, inputs, tmp_path, suffix)
    damage_round(store, 0)
    err = one_line_error(capsys, ALOE, ["store", "drop", str(store), "--round", "0"], "round 1 is sound")
    assert "--force" in err
    assert open_store(store).rounds() == [0, 1] and open_store(store).selections(1) == ["batch"]
    assert run_here(ALOE, ["store", "drop", str(store), "--round", "0", "--force"]) == 0
    out = capsys.readouterr().out
    assert "dropped round 0 (damaged" in out and "dropped round 1 (sound)" in out
    assert open_store(store).rounds() == [] and open_store(store).selections(0) == []
    check_ok(capsys, store)
    assert run_here(EMBED, embed_argv(inputs, store)) == 0 and open_store(store).rounds() == [0]


def test_drop_of_no_round_is_an_error(embedded, capsys):
    store = embedded[".zarr"] / "pool.zarr"
    one_line_error(capsys, ALOE, ["store", "drop", str(store), "--round", "4"], "no round 4 or later to drop")
    one_line_error(capsys, ALOE, ["store", "drop", str(store), "--round", "-1"], "--round")
    assert open_store(store).rounds() == [0]


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_drop_takes_staged_rounds_but_never_a_live_writers(tmp_path, embedded, capsys, suffix):
    store_path = copy_run(embedded[suffix], tmp_path / "run") / f"pool{suffix}"
    store = open_store(store_path, "a")
    writer = store.begin_round(1, feature_dim=8, class_names=["a", "b"], labeled_positions=[0],
                               labeled_classes=[0], chunk_rows=4096)
    writer.write(np.zeros((4096, 8)), np.zeros((4096, 2)))  # one chunk saved, then the writer stops
    release_lock(writer._lock)
    staging = store.backend.staging_path(store.path, ROUNDS, round_name(1))
    handle = os.open(staging.with_name(staging.name + ".lock"), os.O_RDWR)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a writer in another process holds it
    try:
        one_line_error(capsys, ALOE, ["store", "drop", str(store_path), "--round", "1"], "another process")
        assert store.incomplete_rounds() == [1]
    finally:
        os.close(handle)
    assert run_here(ALOE, ["store", "drop", str(store_path), "--round", "1"]) == 0
    assert "dropped round 1 (incomplete)" in capsys.readouterr().out
    assert store.incomplete_rounds() == [] and list(staging.parent.glob("rounds~0001*")) == []
    assert store.rounds() == [0]


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_drop_killed_midway_leaves_a_readable_store(tmp_path, embedded, inputs, capsys, monkeypatch, suffix):
    _, store = two_rounds(embedded, inputs, tmp_path, suffix)
    discard = Store.discard
    calls = []

    def dies_after_first(self, path):
        if calls:
            raise KeyboardInterrupt  # the process dies between the selections and the round
        calls.append(path)
        discard(self, path)

    monkeypatch.setattr(Store, "discard", dies_after_first)
    with pytest.raises(KeyboardInterrupt):
        drop_rounds(store, 1, force=True)
    monkeypatch.undo()
    assert open_store(store).rounds() == [0, 1] and open_store(store).selections(1) == []
    check_ok(capsys, store)
    trash = open_store(store).backend.staging_path(store, "x").parent / "dropped-999999999-abcd"
    trash.mkdir()  # what a drop killed mid-delete left (its process is gone)
    assert run_here(ALOE, ["store", "drop", str(store), "--round", "1", "--force"]) == 0
    assert open_store(store).rounds() == [0] and not trash.exists()
    check_ok(capsys, store)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_damaged_selection_names_its_way_out(tmp_path, embedded, capsys, suffix):
    run = copy_run(embedded[suffix], tmp_path / "run")
    store = run / f"pool{suffix}"
    if suffix == ".zarr":
        garble(store / "selections/0000/batch/chosen_ids/c/0")
    else:
        garble(h5_folder(store) / "selections/0000/batch.h5")
    assert run_here(ALOE, ["store", "check", str(store)]) == 2
    err = capsys.readouterr().err
    assert "aloe-select --round 0 with another --name records it again" in err and f"{WAY_OUT} {store} --round 0" in err
    argv = select_argv(store, run / "again.csv", seed=1)
    argv[argv.index("batch")] = "batch2"
    assert run_here(SELECT, [*argv, "--round", "0"]) == 0
    assert open_store(store).read_selection(0, "batch2")[1]["chosen_ids"].shape == (6,)
    capsys.readouterr()


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_damaged_npz_cache_is_imported_again(tmp_path, embedded, inputs, capsys, suffix):
    run = copy_run(embedded[suffix], tmp_path / "run")
    store = run / f"pool{suffix}"
    (key,) = open_store(store).backend.list_nodes(store, "cache")
    if suffix == ".zarr":
        (store / "cache" / key / "features/c/0/0").unlink()
    else:
        truncate(h5_folder(store) / "cache" / f"{key}.h5")
    assert run_here(EMBED, embed_argv(inputs, store)) == 0
    err = capsys.readouterr().err
    assert f"cache/{key}" in err and "derived data" in err and err.startswith("note: ")
    assert open_store(store).rounds() == [0, 1]
    check_ok(capsys, store)


def _embed_helpers():
    """``tests/embedder/embed_helpers.py`` (a tiny open_clip tower and a generated image pool)."""
    path = Path(__file__).parents[1] / "embedder" / "embed_helpers.py"
    spec = importlib.util.spec_from_file_location("embed_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_damaged_frozen_cache_is_computed_again(tmp_path, capsys, suffix):
    helpers = _embed_helpers()
    cfg = validate_config(EmbedConfig, {
        "backbone": {"kind": "open_clip", "model": "ViT-B-32", "pretrained": None,
                     "architecture": helpers.TINY_VIT, "init_seed": 0},
        "data": {"kind": "manifest", "path": str(helpers.write_pool(tmp_path / "images"))}, "mode": "linear",
        "pool": {"batch_size": 8, "workers": 0, "chunk_rows": 8}, "device": "cpu",
    })
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nred-0,red\nblue-0,blue\n")
    store_path = tmp_path / f"pool{suffix}"
    embed_round(cfg, store_path, labels, quiet=True)
    store = open_store(store_path)
    (key,) = store.backend.list_nodes(store_path, "cache")
    first = store.cached_features(key).features()
    if suffix == ".zarr":
        (store_path / "cache" / key / "features/c/1/0").unlink()
    else:
        truncate(h5_folder(store_path) / "cache" / f"{key}.h5")
    capsys.readouterr()
    second = embed_round(cfg, store_path, labels, quiet=True)
    err = capsys.readouterr().err
    assert f"cache/{key}" in err and "is damaged" in err and "computing it again" in err
    assert second.t == 1 and second.pass_items_per_s > 0
    np.testing.assert_allclose(store.cached_features(key).features(), first, atol=1e-3)
    check_ok(capsys, store_path)
