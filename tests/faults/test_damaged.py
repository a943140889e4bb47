"""Damaged stores: every reader gives a one-line error naming the damaged node, never a traceback
and never a silent wrong answer; ``aloe store check`` lists each problem on its own line."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import h5py
import numpy as np
import pytest

from aloe.store import open_store

from .conftest import ALOE, SELECT, copy_run, run_here, select_argv


def one_line_error(capsys, entry: str, argv: list[str], node: str) -> str:
    """Run the command: exit 2 and a single ``error:`` line that names ``node``."""
    assert run_here(entry, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert node in err, err
    return err


def check_names(capsys, store: Path, node: str) -> None:
    """``aloe store check`` exits 2 and one of its lines names ``node``."""
    assert run_here(ALOE, ["store", "check", str(store)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    assert any(node in line for line in lines), lines


def garble(path: Path, offset: int = 0, size: int | None = None) -> None:
    """Overwrite ``size`` bytes of ``path`` from ``offset`` with other bytes."""
    data = bytearray(path.read_bytes())
    end = len(data) if size is None else offset + size
    data[offset:end] = bytes((b + 101) % 256 for b in data[offset:end])
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def set_root_attr(store: Path, key: str, value) -> None:
    if store.suffix == ".zarr":
        meta = json.loads((store / "zarr.json").read_text())
        meta["attributes"]["aloe"][key] = value
        (store / "zarr.json").write_text(json.dumps(meta))
    else:
        with h5py.File(store, "r+") as handle:
            attrs = json.loads(handle.attrs["aloe"])
            attrs[key] = value
            handle.attrs["aloe"] = json.dumps(attrs)


def first_chunk_offset(path: Path, name: str) -> tuple[int, int]:
    with h5py.File(path, "r") as handle:
        info = handle[name].id.get_chunk_info(0)
        return info.byte_offset, info.size


ZARR_DAMAGES = {
    "deleted chunk": lambda s: (s / "rounds/0000/features/c/1/0").unlink(),
    "truncated chunk": lambda s: truncate(s / "rounds/0000/features/c/0/0"),
    "garbage chunk": lambda s: garble(s / "rounds/0000/logits/c/0/0", 100, 64),
    "deleted round metadata": lambda s: (s / "rounds/0000/zarr.json").unlink(),
    "garbage round metadata": lambda s: (s / "rounds/0000/zarr.json").write_text("{not json"),
    "garbage array metadata": lambda s: (s / "rounds/0000/features/zarr.json").write_text('{"node_type": 7}'),
}
HDF5_DAMAGES = {
    "truncated round file": lambda s: truncate(s.with_name(s.name + ".d") / "rounds/0000.h5"),
    "garbage round file": lambda s: garble(s.with_name(s.name + ".d") / "rounds/0000.h5"),
    "garbage chunk": lambda s: garble(
        s.with_name(s.name + ".d") / "rounds/0000.h5",
        *first_chunk_offset(s.with_name(s.name + ".d") / "rounds/0000.h5", "features"),
    ),
}
CASES = [(".zarr", name) for name in ZARR_DAMAGES] + [(".h5", name) for name in HDF5_DAMAGES]


CONTENT_ONLY = {"garbage chunk"}  # same-size bytes: only reading the values (checksums) finds them


@pytest.mark.parametrize(("suffix", "damage"), CASES)
def test_damaged_round_is_named_by_every_reader(tmp_path, embedded, capsys, suffix, damage):
    run = copy_run(embedded[suffix], tmp_path / "run")
    store = run / f"pool{suffix}"
    (ZARR_DAMAGES if suffix == ".zarr" else HDF5_DAMAGES)[damage](store)
    node = "rounds/0000"
    if damage in CONTENT_ONLY:  # info reads no values: it may pass, but never with a traceback
        assert run_here(ALOE, ["store", "info", str(store)]) == 0
        capsys.readouterr()
    else:
        one_line_error(capsys, ALOE, ["store", "info", str(store)], node)
    one_line_error(capsys, SELECT, select_argv(store, run / "out.csv", seed=2), node)
    check_names(capsys, store, node)
    assert not (run / "out.csv").exists()


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_damaged_selection_record_is_named(tmp_path, embedded, capsys, suffix):
    store = copy_run(embedded[suffix], tmp_path / "run") / f"pool{suffix}"
    if suffix == ".zarr":
        garble(store / "selections/0000/batch/chosen_ids/c/0")
        node = "selections/0000/batch"
    else:
        garble(store.with_name(store.name + ".d") / "selections/0000/batch.h5")
        node = "selections/0000/batch.h5"
    check_names(capsys, store, node)
    with pytest.raises(Exception, match="damaged") as caught:
        open_store(store).read_selection(0, "batch")
    assert node in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_deleted_round_with_selections_is_named(tmp_path, embedded, capsys, suffix):
    """A round removed from disk leaves no node to read; its selection records still show it was there."""
    store = copy_run(embedded[suffix], tmp_path / "run") / f"pool{suffix}"
    if suffix == ".zarr":
        shutil.rmtree(store / "rounds/0000")
    else:
        (store.with_name(store.name + ".d") / "rounds/0000.h5").unlink()
    check_names(capsys, store, "rounds/0000 is missing")


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
@pytest.mark.parametrize(
    ("version", "message"),
    [("abc", "schema_version 'abc' is not a version number"), (None, "schema_version None"),
     (99, "schema version 99 is newer than this aloe reads")],
)
def test_bad_schema_version(tmp_path, embedded, capsys, suffix, version, message):
    store = copy_run(embedded[suffix], tmp_path / "run") / f"pool{suffix}"
    set_root_attr(store, "schema_version", version)
    err = one_line_error(capsys, ALOE, ["store", "info", str(store)], str(store))
    assert message in err
    check_names(capsys, store, str(store))


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_garbage_root_is_not_a_store(tmp_path, embedded, capsys, suffix):
    store = copy_run(embedded[suffix], tmp_path / "run") / f"pool{suffix}"
    garble(store / "zarr.json" if suffix == ".zarr" else store)
    err = one_line_error(capsys, ALOE, ["store", "info", str(store)], str(store))
    assert "not an aloe store" in err


def test_stray_node_without_metadata_is_damage_not_absence(tmp_path, embedded, capsys):
    store = copy_run(embedded[".zarr"], tmp_path / "run") / "pool.zarr"
    (store / "rounds/0001").mkdir()
    one_line_error(capsys, ALOE, ["store", "info", str(store)], "rounds/0001")
    check_names(capsys, store, "rounds/0001")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_read_only_store_is_a_one_line_error(tmp_path, embedded, capsys, suffix):
    run = copy_run(embedded[suffix], tmp_path / "run")
    store = run / f"pool{suffix}"
    paths = [store, *store.rglob("*")] + ([] if suffix == ".zarr" else [store.with_name(store.name + ".d"),
                                                                         *store.with_name(store.name + ".d").rglob("*")])
    for path in paths:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        assert run_here(ALOE, ["store", "check", str(store)]) == 0
        capsys.readouterr()
        one_line_error(capsys, SELECT, select_argv(store, run / "out.csv", seed=2), "permission denied")
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_sound_store_checks_clean(embedded, capsys, suffix):
    assert run_here(ALOE, ["store", "check", str(embedded[suffix] / f"pool{suffix}")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 3 nodes") and "rounds/0000" in out and "selections/0000/batch" in out
    np.testing.assert_equal(open_store(embedded[suffix] / f"pool{suffix}").rounds(), [0])
