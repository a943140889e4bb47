"""``aloe-embed`` under ``torchrun``: 2 gloo ranks write the round one process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from aloe.internal.cli import run_cli
from aloe.embedder.cli import command
from aloe.store import open_store

REPO = Path(__file__).resolve().parents[2]


def _torchrun(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run([*launcher, "-m", "aloe.embedder.cli", *argv], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    """20,000 x 8 features in 3 blobs (3 store chunks of 8,192 rows: rank 0 gets 2, rank 1 one)."""
    root = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 20_000)
    values = (np.eye(3, 8)[labels] * 4 + rng.standard_normal((20_000, 8))).astype(np.float32)
    ids = np.array([f"item{i:05d}" for i in range(20_000)])
    np.savez(root / "pool.npz", ids=ids, features=values)
    chosen = [rng.choice(np.flatnonzero(labels == c), 5, replace=False) for c in range(3)]
    lines = ["id,label"] + [f"{ids[p]},class{c}" for c, picks in enumerate(chosen) for p in picks]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_two_ranks_write_the_one_process_round(features):
    one, two = features / "one.zarr", features / "two.zarr"
    argv = ["--from-features", str(features / "pool.npz"), "--labels", str(features / "labels.csv")]
    assert run_cli(command, [*argv, "--store", str(one)]) == 0
    done = _torchrun(*argv, "--store", str(two))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharded over 2 ranks" in done.stdout and done.stdout.count("round 0 written") == 1
    first, second = open_store(one).round(0), open_store(two).round(0)
    np.testing.assert_array_equal(second.features(), first.features())
    np.testing.assert_allclose(second.logits(), first.logits(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(second.labeled_positions, first.labeled_positions)
    assert second.provenance["ranks"] == 2 and first.provenance["ranks"] == 1
    assert open_store(two).incomplete_rounds() == []


def test_two_ranks_refuse_an_hdf5_store_in_one_line(features):
    done = _torchrun("--from-features", str(features / "pool.npz"), "--labels", str(features / "labels.csv"),
                     "--store", str(features / "pool.h5"))
    assert done.returncode != 0
    assert "error: " in done.stderr and "needs a Zarr store" in done.stderr  # each rank's one line
    assert not (features / "pool.h5").exists()


def _image_config(path: Path, tiny_clip: dict, manifest: Path, mode: str) -> Path:
    config = {
        "backbone": tiny_clip, "data": {"kind": "manifest", "path": str(manifest)}, "mode": mode,
        "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "early_stop_patience": 0, "warmup_steps": 0},
        "pool": {"batch_size": 5, "workers": 0, "chunk_rows": 4}, "device": "cpu",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_ranks_embed_images_as_one_process_does(tmp_path, tiny_clip, pool_manifest):
    config = _image_config(tmp_path / "linear.yaml", tiny_clip, pool_manifest, "linear")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nred-0,red\nblue-0,blue\ngreen-0,green\n")
    argv = ["--config", str(config), "--labels", str(labels), "--quiet"]
    assert run_cli(command, [*argv, "--store", str(tmp_path / "one.zarr")]) == 0
    done = _torchrun(*argv, "--store", str(tmp_path / "two.zarr"))
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = open_store(tmp_path / "one.zarr").round(0), open_store(tmp_path / "two.zarr").round(0)
    np.testing.assert_allclose(second.features(), first.features(), atol=2e-3)  # float16 storage
    np.testing.assert_allclose(second.logits(), first.logits(), rtol=1e-3, atol=1e-3)
    assert second.provenance["ranks"] == 2


def test_finetune_mode_trains_with_ddp_over_two_ranks(tmp_path, tiny_clip, pool_manifest):
    config = _image_config(tmp_path / "finetune.yaml", tiny_clip, pool_manifest, "finetune")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{c}-{i},{c}\n" for c in ("red", "green", "blue") for i in range(3)))
    done = _torchrun("--config", str(config), "--labels", str(labels), "--quiet", "--store", str(tmp_path / "f.zarr"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharded over 2 ranks" in done.stdout
    store = open_store(tmp_path / "f.zarr")
    round_ = store.round(0)
    assert round_.provenance["training"]["ranks"] == 2 and round_.provenance["training"]["steps"] >= 1
    assert np.isfinite(round_.features()).all() and store.incomplete_rounds() == []
