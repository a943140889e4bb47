"""``aloe-embed`` under ``torchrun``: 2 gloo ranks write the round one process writes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from rank_helpers import run_ranks

from aloe.cli import cli as aloe_cli
from aloe.embedder.sharded import open_store_on_ranks
from aloe.errors import AloeError
from aloe.internal.dist import Comm
from aloe.internal.cli import run_cli
from aloe.embedder.cli import command
from aloe.store import open_store

REPO = Path(__file__).resolve().parents[2]


LAUNCHER = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1"}


def _torchrun(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LAUNCHER, "-m", "aloe.embedder.cli", *argv], env=_env(), capture_output=True, text=True,
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


def test_ranks_given_different_labels_all_refuse_before_writing(tmp_path):
    """Rank 1 alone reads another labels file: every rank names it in one line and no round is begun."""
    ids = np.array([f"item{i:03d}" for i in range(300)])
    np.savez(tmp_path / "pool.npz", ids=ids, features=np.random.default_rng(0).standard_normal((300, 4)))
    (tmp_path / "labels.csv").write_text("id,label\nitem000,a\nitem001,b\n")
    (tmp_path / "more.csv").write_text("id,label\nitem000,a\nitem001,b\nitem002,c\n")
    store = tmp_path / "pool.zarr"
    argv = ["--from-features", str(tmp_path / "pool.npz"), "--store", str(store), "--labels"]
    assert run_cli(command, [*argv, str(tmp_path / "labels.csv")]) == 0
    ranks = run_ranks("aloe.embedder.cli", [*argv, str(tmp_path / "labels.csv")], [*argv, str(tmp_path / "more.csv")])
    for done in ranks:
        assert done.returncode == 2, done.stderr[-3000:]
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("error: the ranks were started with different settings: labels file content is ")
        assert "on rank 0 but" in done.stderr and "on rank 1" in done.stderr
    assert open_store(store).rounds() == [0] and open_store(store).incomplete_rounds() == []
    assert run_cli(aloe_cli, ["store", "check", str(store)]) == 0


class _LoneRankOne(Comm):
    """Rank 1 of 2 whose collectives only raise its own error (no process group)."""

    def agree(self, error: BaseException | None) -> None:
        if error is not None:
            raise error


def test_a_rank_that_does_not_see_the_store_refuses_rather_than_creating_one(tmp_path):
    """No shared filesystem: the store rank 0 created is absent on rank 1, which must not make its own."""
    created = []
    with pytest.raises(AloeError, match="rank 1 does not see the store rank 0 opened"):
        open_store_on_ranks(_LoneRankOne(rank=1, world=2), tmp_path / "pool.zarr", lambda: created.append(1))
    assert created == [] and not (tmp_path / "pool.zarr").exists()


def _image_config(path: Path, tiny_clip: dict, manifest: Path, mode: str, **finetune) -> Path:
    config = {
        "backbone": tiny_clip, "data": {"kind": "manifest", "path": str(manifest)}, "mode": mode,
        "finetune": {"epochs": 1, "lr": 1e-3, "batch_size": 8, "early_stop_patience": 0, "warmup_steps": 0,
                     **finetune},
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


def test_ranks_given_different_labels_refuse_to_embed_images_and_create_no_store(tmp_path, tiny_clip, pool_manifest):
    config = _image_config(tmp_path / "finetune.yaml", tiny_clip, pool_manifest, "finetune")
    (tmp_path / "labels.csv").write_text("id,label\nred-0,red\nblue-0,blue\n")
    (tmp_path / "other.csv").write_text("id,label\nred-0,red\nblue-0,green\n")
    argv = ["--config", str(config), "--store", str(tmp_path / "f.zarr"), "--quiet", "--labels"]
    ranks = run_ranks("aloe.embedder.cli", [*argv, str(tmp_path / "labels.csv")], [*argv, str(tmp_path / "other.csv")])
    for done in ranks:
        assert done.returncode == 2, done.stderr[-3000:]
        assert done.stderr.startswith("error: the ranks were started with different settings: labels file content is ")
        assert done.stderr.count("\n") == 1
    assert not (tmp_path / "f.zarr").exists()


def test_finetune_mode_trains_with_ddp_over_two_ranks(tmp_path, tiny_clip, pool_manifest):
    """With early stopping on a held-out share (one label of each class, three in all): each rank
    scores its slice of it and the summed loss is every rank's monitor."""
    config = _image_config(tmp_path / "finetune.yaml", tiny_clip, pool_manifest, "finetune", epochs=2,
                           early_stop_patience=5, val_share=0.3, val_min_per_class=3)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{c}-{i},{c}\n" for c in ("red", "green", "blue") for i in range(3)))
    done = _torchrun("--config", str(config), "--labels", str(labels), "--quiet", "--store", str(tmp_path / "f.zarr"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharded over 2 ranks" in done.stdout
    store = open_store(tmp_path / "f.zarr")
    round_ = store.round(0)
    training = round_.provenance["training"]
    assert training["ranks"] == 2 and training["steps"] >= 1
    assert training["early_stop"]["monitor"] == "validation_loss" and training["early_stop"]["n_validation"] == 3
    assert len(training["val_losses"]) == 2 and all(np.isfinite(training["val_losses"]))
    assert np.isfinite(round_.features()).all() and store.incomplete_rounds() == []


def test_a_killed_rank_publishes_nothing_and_the_rerun_writes_the_round(tmp_path):
    """SIGKILL rank 1 while the round is being written: torchrun stops rank 0, no round is published,
    the store checks clean, and the same command run again writes the round one process writes."""
    rng = np.random.default_rng(1)
    n = 400_000
    ids = np.array([f"item{i:06d}" for i in range(n)])
    np.savez(tmp_path / "pool.npz", ids=ids, features=rng.standard_normal((n, 32)).astype(np.float32))
    (tmp_path / "labels.csv").write_text("id,label\n" + "".join(f"{ids[i]},c{i % 3}\n" for i in range(0, 30)))
    argv = ["--from-features", str(tmp_path / "pool.npz"), "--labels", str(tmp_path / "labels.csv")]
    store = tmp_path / "killed.zarr"
    process = subprocess.Popen([*LAUNCHER, "-m", "aloe.embedder.cli", *argv, "--store", str(store)], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = store / ".staging"

    def rank_one_is_writing() -> bool:
        if not (staging.is_dir() and any(staging.iterdir())):
            return False
        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.environ().get("RANK") == "1":
                    child.send_signal(signal.SIGKILL)
                    return True
        return False

    deadline = time.monotonic() + 120
    while not rank_one_is_writing():
        assert process.poll() is None, "the run ended before rank 1 could be killed"
        assert time.monotonic() < deadline, "rank 1 never started writing"
        time.sleep(0.01)
    assert process.wait(timeout=120) != 0
    assert open_store(store).rounds() == []
    assert run_cli(aloe_cli, ["store", "check", str(store)]) == 0
    done = _torchrun(*argv, "--store", str(store))
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one.zarr"
    assert run_cli(command, [*argv, "--store", str(one)]) == 0
    np.testing.assert_array_equal(open_store(store).round(0).features(), open_store(one).round(0).features())
    assert open_store(store).incomplete_rounds() == []
