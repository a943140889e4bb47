"""Labels files and the labeled set a round is built from."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.errors import AloeError
from aloe.labels import LabeledSet
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


def test_next_round_is_one_past_the_newest_complete_round(tmp_path):
    store = create_store(tmp_path / "s.zarr", np.array(["a", "b"]))
    assert store.next_round() == 0
    for t in (0, 1):
        writer = store.begin_round(t, feature_dim=2, class_names=[], labeled_positions=np.zeros(0, np.int64),
                                   labeled_classes=np.zeros(0, np.int64), provenance={})
        writer.write(np.ones((2, 2), np.float32), np.zeros((2, 0), np.float32))
        writer.commit()
    assert store.next_round() == 2
