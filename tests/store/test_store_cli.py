"""``aloe store info``: its summary and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aloe.cli import cli
from aloe.internal.cli import run_cli
from aloe.store import create_store


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_info_lists_rounds_and_selections(tmp_path, suffix, capsys):
    store = create_store(tmp_path / f"p{suffix}", [str(i) for i in range(30)])
    writer = store.begin_round(0, feature_dim=5, class_names=["cat", "dog"], labeled_positions=[1, 2, 3],
                               labeled_classes=[0, 1, 1], provenance={"mode": "finetune"})
    writer.write(np.ones((30, 5)), np.zeros((30, 2)))
    writer.commit()
    store.write_selection(0, "first", {"strategy": "aloe"}, {"chosen": np.arange(4)})
    assert run_cli(cli, ["store", "info", "--json", str(store.path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_items"] == 30 and info["backend"] == ("zarr" if suffix == ".zarr" else "hdf5")
    (entry,) = info["rounds"]
    assert entry["mode"] == "finetune" and entry["n_classes"] == 2 and entry["n_labeled"] == 3
    assert entry["features"] == {"shape": [30, 5], "dtype": "float16"}
    assert entry["selections"] == ["first"] and entry["bytes"] > 30 * 5 * 2
    assert run_cli(cli, ["store", "info", str(store.path)]) == 0
    assert "round 0   mode=finetune classes=2 labeled=3" in capsys.readouterr().out


def test_info_on_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "empty.zarr").mkdir()
    for target in (tmp_path / "missing.zarr", tmp_path / "empty.zarr"):
        assert run_cli(cli, ["store", "info", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
