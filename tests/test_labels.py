"""Labels files and the labeled set a round is built from."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.errors import AloeError
from aloe.labels import LabeledSet, positions_in
from aloe.store import create_store


def test_labeled_set_orders_classes_and_finds_positions(tmp_path):
    store = create_store(tmp_path / "s.zarr", np.array(["a", "b", "c", "d"]))
    labeled = LabeledSet.from_labels({"d": "zebra", "b": "ant", "a": "zebra"}, store)
    assert labeled.names == ["ant", "zebra"]
    np.testing.assert_array_equal(labeled.classes, [1, 0, 1])
    np.testing.assert_array_equal(labeled.positions, [3, 1, 0])
    assert len(labeled) == 3
    with pytest.raises(AloeError, match="not in the pool"):
        LabeledSet.from_labels({"e": "ant"}, store)


def test_positions_in_gives_int64_positions_and_names_the_first_few_unknown_ids():
    index = {"a": 0, "b": 1, "c": 2}
    positions = positions_in(index, ["c", "a"], "the pool")
    assert positions.dtype == np.int64 and positions.tolist() == [2, 0]
    with pytest.raises(AloeError, match=r"^5 ids are not in the toy pool: 'v', 'w', 'x' and 2 more$"):
        positions_in(index, ["a", "v", "w", "x", "y", "z"], "the toy pool")


def test_next_round_is_one_past_the_newest_complete_round(tmp_path):
    store = create_store(tmp_path / "s.zarr", np.array(["a", "b"]))
    assert store.next_round() == 0
    for t in (0, 1):
        writer = store.begin_round(t, feature_dim=2, class_names=[], labeled_positions=np.zeros(0, np.int64),
                                   labeled_classes=np.zeros(0, np.int64), provenance={})
        writer.write(np.ones((2, 2), np.float32), np.zeros((2, 0), np.float32))
        writer.commit()
    assert store.next_round() == 2
