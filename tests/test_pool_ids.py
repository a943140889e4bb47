"""Pool ids with leading or trailing whitespace (or empty) are refused where a pool is made: labels
files strip their fields, so such items could never be labeled."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.data.sources import ArrayImageSource
from aloe.embedder.cli import command as embed_command
from aloe.errors import AloeError
from aloe.internal.cli import run_cli
from aloe.loop.cli import simulate_command


def _npz(path, ids):
    rng = np.random.default_rng(0)
    labels = np.array(["cat", "dog"] * (len(ids) // 2))
    np.savez(path, ids=np.array(ids), features=rng.normal(size=(len(ids), 3)).astype(np.float32), labels=labels)
    return path


@pytest.mark.parametrize("bad", [" a3", "a3 ", "a3\t", ""])
def test_from_features_refuses_padded_ids_before_creating_a_store(tmp_path, capsys, bad):
    npz = _npz(tmp_path / "pool.npz", ["a1", "a2", bad, "a4"])
    (tmp_path / "labels.csv").write_text("id,label\na1,cat\n")
    argv = ["--from-features", str(npz), "--labels", str(tmp_path / "labels.csv"), "--store", str(tmp_path / "s.zarr")]
    assert run_cli(embed_command, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 ids are empty or start or end with whitespace" in err and repr(bad) in err
    assert not (tmp_path / "s.zarr").exists()


def test_simulation_refuses_padded_ids(tmp_path, capsys):
    npz = _npz(tmp_path / "pool.npz", [f"i{k}" for k in range(9)] + [" i9"])
    assert run_cli(simulate_command, ["--features", str(npz), "--out", str(tmp_path / "sim"), "--quiet"]) == 2
    assert "start or end with whitespace" in capsys.readouterr().err
    assert not (tmp_path / "sim").exists()


def test_image_sources_refuse_padded_ids():
    pixels = np.zeros((2, 4, 4), dtype=np.uint8)
    with pytest.raises(AloeError, match=r"pool: 1 ids are empty or start or end with whitespace.*'b '"):
        ArrayImageSource("pool", ["a", "b "], pixels, None, {})
    assert ArrayImageSource("pool", ["a", "b c"], pixels, None, {}).ids == ["a", "b c"]
