"""Linear rounds from fixed features, and ``embed_from_features`` (``aloe-embed --from-features``)."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.data.synthetic import make_pool
from aloe.embedder.head import LinearHeadConfig, fit_linear_head, head_logits
from aloe.data.npz import npz_digest
from aloe.embedder.linear_round import ArrayFeatures, embed_from_features, write_linear_round
from aloe.errors import AloeError
from aloe.labels import LabeledSet
from aloe.store import create_store, open_store


@pytest.fixture()
def pool():
    return make_pool(n_classes=6, n0=40, alpha=0.3, dim=8, spread=0.1, seed=2)


def _labels_csv(path, pool, positions):
    rows = [f"{pool.ids[p]},{pool.class_names[pool.labels[p]]}" for p in positions]
    path.write_text("id,label\n" + "\n".join(rows) + "\n")
    return path


def test_write_linear_round_streams_the_head_logits(tmp_path, pool):
    store = create_store(tmp_path / "s.zarr", pool.ids)
    positions = np.flatnonzero(pool.labels < 3)[::4]
    classes = pool.labels[positions]
    write_linear_round(store, 0, ArrayFeatures(pool.features, block_rows=13),
                       LabeledSet(["a", "b", "c"], classes, positions), head=LinearHeadConfig(C=3.0), feature_dtype="float32",
                       chunk_rows=16,
                       provenance={"note": "test"})
    reader = store.round(0)
    head = fit_linear_head(pool.features[positions], classes, 3, config=LinearHeadConfig(C=3.0))
    np.testing.assert_allclose(reader.logits(), head_logits(head, pool.features), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(reader.features(), pool.features)
    np.testing.assert_array_equal(reader.labeled_positions, positions)
    assert reader.provenance["mode"] == "linear" and reader.provenance["note"] == "test"
    assert reader.provenance["head"]["C"] == 3.0 and reader.provenance["head_fit"]["converged"]


def test_embed_from_features_creates_store_caches_features_and_numbers_rounds(tmp_path, pool):
    npz = tmp_path / "pool.npz"
    np.savez(npz, ids=pool.ids, features=pool.features, labels=pool.labels)
    labels = _labels_csv(tmp_path / "labels.csv", pool, np.flatnonzero(pool.labels < 2)[:6])
    assert embed_from_features(npz, labels, tmp_path / "s.zarr") == 0
    more = _labels_csv(tmp_path / "more.csv", pool, np.flatnonzero(pool.labels < 3)[:9])
    assert embed_from_features(npz, more, tmp_path / "s.zarr") == 1
    store = open_store(tmp_path / "s.zarr")
    assert store.rounds() == [0, 1]
    assert store.round(1).class_names == ["class-000", "class-001", "class-002"]
    cache = store.cached_features(f"npz-{npz_digest(npz)}")
    np.testing.assert_allclose(cache.features(), pool.features, atol=2e-3)  # float16 cache
    assert store.round(0).provenance["npz_sha256_16"] == npz_digest(npz)


def test_embed_from_features_hashes_the_npz_once(tmp_path, pool, monkeypatch):
    """The content hash is both the cache key and the provenance: one read of the file for both."""
    import aloe.embedder.linear_round as linear_round

    npz = tmp_path / "pool.npz"
    np.savez(npz, ids=pool.ids, features=pool.features)
    hashed = []
    monkeypatch.setattr(linear_round, "npz_digest", lambda path: hashed.append(path) or npz_digest(path))
    labels = _labels_csv(tmp_path / "labels.csv", pool, np.flatnonzero(pool.labels < 2)[:6])
    assert embed_from_features(npz, labels, tmp_path / "s.zarr") == 0
    assert len(hashed) == 1


def test_embed_from_features_reads_the_npz_once_for_a_new_store(tmp_path, pool, monkeypatch):
    """A new store checks the npz before creating the store, and imports those same arrays; a later
    round finds the features in the store's cache and does not read the npz at all."""
    import aloe.embedder.linear_round as linear_round

    npz = tmp_path / "pool.npz"
    np.savez(npz, ids=pool.ids, features=pool.features)
    reads = []
    real = linear_round.load_features_npz
    monkeypatch.setattr(linear_round, "load_features_npz", lambda path: reads.append(path) or real(path))
    labels = _labels_csv(tmp_path / "labels.csv", pool, np.flatnonzero(pool.labels < 2)[:6])
    assert embed_from_features(npz, labels, tmp_path / "s.zarr") == 0
    assert len(reads) == 1
    assert embed_from_features(npz, labels, tmp_path / "s.zarr") == 1
    assert len(reads) == 1
    store = open_store(tmp_path / "s.zarr")
    np.testing.assert_allclose(store.round(1).features(np.arange(5)), pool.features[:5], rtol=1e-3, atol=1e-3)


def test_embed_from_features_bad_inputs(tmp_path, pool):
    npz = tmp_path / "pool.npz"
    np.savez(npz, ids=pool.ids, features=pool.features)
    bad_labels = tmp_path / "bad.csv"
    bad_labels.write_text("id,label\nnot-an-item,x\n")
    with pytest.raises(AloeError, match="not in the pool"):
        embed_from_features(npz, bad_labels, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()
    labels = _labels_csv(tmp_path / "labels.csv", pool, [0, 1])
    np.savez(tmp_path / "noids.npz", features=pool.features)
    with pytest.raises(AloeError, match=r"missing array\(s\) \['ids'\]"):
        embed_from_features(tmp_path / "noids.npz", labels, tmp_path / "t.zarr")
    broken = pool.features.copy()
    broken[3, 0] = np.inf
    np.savez(tmp_path / "inf.npz", ids=pool.ids, features=broken)
    with pytest.raises(AloeError, match="1 feature rows hold NaN or inf"):
        embed_from_features(tmp_path / "inf.npz", labels, tmp_path / "u.zarr")
    np.savez(tmp_path / "other.npz", ids=pool.ids[::-1], features=pool.features)
    assert embed_from_features(npz, labels, tmp_path / "s.zarr") == 0
    with pytest.raises(AloeError, match="not the store's pool ids"):
        embed_from_features(tmp_path / "other.npz", labels, tmp_path / "s.zarr")
