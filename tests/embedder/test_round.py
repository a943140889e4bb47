"""Whole rounds into a real store: linear mode with its feature cache, finetune mode, skipped images."""

from __future__ import annotations

import numpy as np
import pytest
from embed_helpers import write_pool

from aloe.config import validate_config
from aloe.embedder.config import EmbedConfig
from aloe.data.sources import manifest_source
from aloe.embedder.round import embed_round, scan_unreadable
from aloe.errors import AloeError
from aloe.store import open_store


def _config(tiny_clip, manifest, mode, **extra):
    return validate_config(EmbedConfig, {
        "backbone": tiny_clip, "data": {"kind": "manifest", "path": str(manifest)}, "mode": mode,
        "finetune": {"epochs": 2, "lr": 1e-3, "batch_size": 8}, "linear": {"C": 2.0},
        "pool": {"batch_size": 5, "workers": 0, "chunk_rows": 4}, "device": "cpu", **extra,
    })


def _labels(path, rows):
    path.write_text("id,label\n" + "".join(f"{i},{label}\n" for i, label in rows))
    return path


def test_linear_rounds_compute_the_frozen_features_once(tmp_path, tiny_clip, pool_manifest):
    cfg = _config(tiny_clip, pool_manifest, "linear")
    store_path = tmp_path / "pool.zarr"
    labels = _labels(tmp_path / "l0.csv", [("red-0", "red"), ("blue-0", "blue")])
    first = embed_round(cfg, store_path, labels, quiet=True)
    assert first.t == 0 and first.pass_items_per_s > 0
    labels = _labels(tmp_path / "l1.csv", [("red-0", "red"), ("blue-0", "blue"), ("green-3", "green")])
    second = embed_round(cfg, store_path, labels, quiet=True)
    assert second.t == 1 and second.pass_items_per_s == 0 and second.timings_s["frozen_features"] == 0
    store = open_store(store_path)
    assert store.rounds() == [0, 1] and len(store.ids) == 24
    r0, r1 = store.round(0), store.round(1)
    assert np.array_equal(r0.features(), r1.features())
    assert r1.class_names == ["blue", "green", "red"] and r1.logits().shape == (24, 3)
    provenance = r1.provenance
    assert provenance["mode"] == "linear" and provenance["linear_head"]["C"] == 2.0
    assert provenance["backbone"]["checkpoint_hash"] == provenance["feature_cache"].split("-")[1]
    assert store.position_of(["green-3"])[0] in r1.labeled_positions


def test_finetune_round_records_every_setting(tmp_path, tiny_clip, pool_manifest):
    cfg = _config(tiny_clip, pool_manifest, "finetune", seed=7)
    labels = _labels(tmp_path / "l.csv", [("red-0", "red"), ("blue-1", "blue"), ("blue-2", "blue")])
    summary = embed_round(cfg, tmp_path / "pool.h5", labels, t=0, quiet=True)
    round_ = open_store(tmp_path / "pool.h5").round(0)
    assert summary.n_classes == 2 and round_.feature_dim == 16 and round_.logits().shape == (24, 2)
    provenance = round_.provenance
    assert provenance["mode"] == "finetune" and provenance["seed"] == 7
    assert provenance["finetune"] == cfg.finetune.model_dump()
    assert provenance["training"]["trained"] and provenance["skipped"]["count"] == 0
    assert provenance["backbone"]["name"] == "open_clip:ViT-B-32"
    assert provenance["versions"]["open_clip_torch"] != "absent"
    assert np.isfinite(round_.features()).all()
    with pytest.raises(AloeError, match="round 0 already exists"):
        embed_round(cfg, tmp_path / "pool.h5", labels, t=0, quiet=True)


@pytest.mark.parametrize("mode", ["finetune", "linear"])
def test_unreadable_images_are_skipped_and_listed(tmp_path, tiny_clip, mode):
    manifest = write_pool(tmp_path / "img", per_class=2, broken=1)
    cfg = _config(tiny_clip, manifest, mode)
    labels = _labels(tmp_path / "l.csv", [("red-0", "red"), ("blue-0", "blue"), ("broken-0", "red")])
    summary = embed_round(cfg, tmp_path / "pool.zarr", labels, quiet=True)
    store = open_store(tmp_path / "pool.zarr")
    skipped = store.round(0).provenance["skipped"]
    assert skipped["ids"] == ["broken-0"] and skipped["positions"] == [6] and "Error" in skipped["errors"][0]
    assert list(summary.skipped) == [6]
    assert np.isfinite(store.round(0).features()).all()


def test_a_store_of_another_pool_is_refused(tmp_path, tiny_clip, pool_manifest):
    labels = _labels(tmp_path / "l.csv", [])
    embed_round(_config(tiny_clip, pool_manifest, "linear"), tmp_path / "pool.zarr", labels, quiet=True)
    other = write_pool(tmp_path / "other", per_class=3)
    with pytest.raises(AloeError, match="different pool"):
        embed_round(_config(tiny_clip, other, "linear"), tmp_path / "pool.zarr", labels, quiet=True)


def test_scan_finds_the_unreadable_items_a_resumed_pass_did_not_see(tmp_path):
    source = manifest_source(write_pool(tmp_path, per_class=2, broken=2))
    assert sorted(scan_unreadable(source, len(source), workers=0)) == [6, 7]
    assert scan_unreadable(source, 6, workers=0) == {}
