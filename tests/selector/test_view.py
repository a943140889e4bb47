"""RoundView validation and loading from a store round."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.errors import AloeError
from aloe.selector.view import RoundView
from aloe.store import create_store


def _arrays(n: int = 10, c: int = 3):
    rng = np.random.default_rng(0)
    return {
        "ids": [f"i{i}" for i in range(n)],
        "features": rng.standard_normal((n, 4)),
        "logits": rng.standard_normal((n, c)),
        "labeled_positions": [1, 4],
        "labeled_classes": [0, 2],
        "class_names": ["a", "b", "c"][:c],
    }


def test_valid_view_is_coerced_and_masks_are_right():
    view = RoundView(**_arrays())
    assert view.features.dtype == np.float32 and view.logits.dtype == np.float32
    assert view.labeled_positions.dtype == np.int64
    np.testing.assert_array_equal(view.unlabeled_positions, [0, 2, 3, 5, 6, 7, 8, 9])
    assert view.labeled_mask.sum() == 2 and view.n_classes == 3


@pytest.mark.parametrize("which", ["features", "logits"])
def test_nan_and_inf_say_how_many_rows_and_the_first(which):
    arrays = _arrays()
    arrays[which][6, 0] = np.nan
    arrays[which][8, 1] = np.inf
    arrays[which][8, 2] = -np.inf
    with pytest.raises(AloeError, match=rf"{which} hold NaN or inf in 2 row\(s\); first: row 6 \(id 'i6'\)"):
        RoundView(**arrays)


def test_huge_finite_values_are_not_mistaken_for_inf():
    arrays = _arrays()
    arrays["features"] = np.full((10, 4), 3e38)  # each row's sum overflows float32
    assert RoundView(**arrays).features.max() == np.float32(3e38)


def test_width_mismatch_and_out_of_range_positions_and_classes():
    arrays = _arrays()
    arrays["class_names"] = ["a", "b"]
    with pytest.raises(AloeError, match="logits have 3 columns but the round names 2 classes"):
        RoundView(**arrays)
    arrays = _arrays()
    arrays["labeled_positions"] = [1, 10]
    with pytest.raises(AloeError, match=r"outside \[0, 10\); first: 10"):
        RoundView(**arrays)
    arrays = _arrays()
    arrays["labeled_positions"] = [1, 1]
    with pytest.raises(AloeError, match="repeat"):
        RoundView(**arrays)
    arrays = _arrays()
    arrays["labeled_classes"] = [0, 3]
    with pytest.raises(AloeError, match="class index"):
        RoundView(**arrays)
    arrays = _arrays()
    arrays["features"] = arrays["features"][:9]
    with pytest.raises(AloeError, match="features must be"):
        RoundView(**arrays)


def test_from_round_reads_the_store_round(tmp_path):
    arrays = _arrays(n=50)
    store = create_store(tmp_path / "s.zarr", arrays["ids"])
    writer = store.begin_round(0, feature_dim=4, class_names=arrays["class_names"],
                               labeled_positions=arrays["labeled_positions"],
                               labeled_classes=arrays["labeled_classes"], feature_dtype="float32", chunk_rows=16)
    writer.write(arrays["features"].astype(np.float32), arrays["logits"].astype(np.float32))
    writer.commit()
    view = RoundView.from_round(store.round(0), store.ids)
    np.testing.assert_array_equal(view.features, arrays["features"].astype(np.float32))
    np.testing.assert_array_equal(view.logits, arrays["logits"].astype(np.float32))
    np.testing.assert_array_equal(view.labeled_positions, [1, 4])
    assert view.class_names == ("a", "b", "c")
    with pytest.raises(AloeError, match="pool has 3 ids"):
        RoundView.from_round(store.round(0), store.ids[:3])


def test_from_round_excludes_the_images_the_embedder_skipped(tmp_path):
    store = create_store(tmp_path / "p.zarr", [f"i{i}" for i in range(12)])
    writer = store.begin_round(0, feature_dim=3, class_names=["a", "b"], labeled_positions=[0, 1],
                               labeled_classes=[0, 1], provenance={"skipped": {"count": 2, "positions": [4, 7]}})
    writer.write(np.ones((12, 3)), np.zeros((12, 2)))
    writer.commit()
    view = RoundView.from_round(store.round(0), store.ids)
    np.testing.assert_array_equal(view.excluded_positions, [4, 7])
    assert not np.isin([0, 1, 4, 7], view.unlabeled_positions).any()
    assert len(view.unlabeled_positions) == 8
