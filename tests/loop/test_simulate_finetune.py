"""``aloe simulate`` in finetune mode: a tiny open_clip tower fine-tuned every round on generated images."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import recall_score

from aloe.cli import cli
from aloe.config import load_config
from aloe.embedder.backbones import build_backbone
from aloe.embedder.config import EmbedConfig
from aloe.embedder.finetune import finetune
from aloe.embedder.poolpass import BlocksInMemory, model_encoder, run_pool_pass
from aloe.internal.cli import run_cli
from aloe.labels import LabeledSet
from aloe.loop.finetune_run import image_pool
from aloe.loop.ledger import Ledger
from aloe.store import open_store
from image_helpers import CLASSES, TINY_VIT, write_colour_pool
from kill_helpers import kill_when

ARGS = ["--strategy", "aloe", "--budget", "2", "--rounds", "2", "--seeds", "3", "--quiet"]


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A long-tailed manifest of noisy colour squares and a finetune-mode config of a tiny ViT."""
    root = tmp_path_factory.mktemp("images")
    manifest = write_colour_pool(root)
    cfg = {
        "backbone": {"kind": "open_clip", "model": "ViT-B-32", "pretrained": None, "architecture": TINY_VIT,
                     "init_seed": 0},
        "data": {"kind": "manifest", "path": str(manifest)},
        "mode": "finetune",
        "finetune": {"epochs": 2, "lr": 1e-3, "batch_size": 8, "augment": "none", "schedule": "constant",
                     "warmup_steps": 0, "mixup": 0.0, "label_smoothing": 0.0, "early_stop_patience": 0},
        "pool": {"batch_size": 8, "workers": 0, "chunk_rows": 8, "feature_dtype": "float32"},
        "device": "cpu",
    }
    path = root / "embed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def finished(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "run"
    assert run_cli(cli, ["simulate", "--config", str(config), "--out", str(out), *ARGS]) == 0
    return out


def _state(out):
    """A run's ledger and metrics (without the timings, which differ between runs)."""
    run = out / "aloe" / "seed-3"
    with (run / "metrics.csv").open(newline="") as handle:
        rows = [{k: v for k, v in r.items() if k != "select_seconds"} for r in csv.DictReader(handle)]
    return (run / "ledger.csv").read_text(), rows


def test_each_round_is_a_finetune_round_of_the_ledger_so_far(finished):
    run = finished / "aloe" / "seed-3"
    store = open_store(run / "store.zarr")
    ledger = Ledger(run / "ledger.csv")
    assert store.rounds() == [0, 1, 2] and store.n_items == 18  # 4 of 22 images held out for evaluation
    for t in range(3):
        r = store.round(t)
        assert r.provenance["mode"] == "finetune" and r.provenance["training"]["trained"] == (r.n_classes > 1)
        assert sorted(store.ids[r.labeled_positions]) == sorted(ledger.labels(up_to_round=t))
    for t in range(2):
        (name,) = store.selections(t)
        _, arrays = store.read_selection(t, name)
        assert arrays["chosen_ids"].tolist() == [e.id for e in ledger.entries() if e.round == t + 1]
    _, rows = _state(finished)
    assert [int(r["n_labeled"]) for r in rows] == [2, 4, 6]


def test_metrics_are_the_finetuned_models_predictions_on_the_evaluation_set(config, finished):
    cfg = load_config(EmbedConfig, config)
    pool = image_pool(cfg, config)
    t, seed = 1, 3
    labeled = LabeledSet.from_labels(Ledger(finished / "aloe" / "seed-3" / "ledger.csv").labels(up_to_round=t), pool)
    backbone = build_backbone(cfg.backbone)
    device = torch.device("cpu")
    head, _ = finetune(backbone, pool.source, labeled.positions, labeled.classes, len(labeled.names), cfg.finetune,
                       device=device, seed=seed, workers=0)

    logits = BlocksInMemory(len(pool.test_labels), keep=1)
    run_pool_pass(model_encoder(backbone, head, device), pool.test_source, logits, backbone=backbone, batch_size=8,
                  workers=0, device=device, quiet=True)
    predicted = np.array(labeled.names)[logits.array(len(labeled.names)).argmax(1)]
    classes = sorted(CLASSES)
    recalls = recall_score(pool.test_labels, predicted, labels=classes, average=None, zero_division=0)
    _, rows = _state(finished)
    assert float(rows[t]["balanced_accuracy"]) == pytest.approx(recalls.mean(), abs=1e-5)
    assert "stratified 20%" in (finished / "simulation.json").read_text()


def test_mode_overrides_the_config_and_a_round_shows_its_own_progress(config, finished, tmp_path, capsys):
    linear = tmp_path / "linear.yaml"
    linear.write_text(config.read_text().replace("mode: finetune", "mode: linear"))
    out = tmp_path / "o"
    loud = [arg for arg in ARGS if arg != "--quiet"]
    assert run_cli(cli, ["simulate", "--config", str(linear), "--mode", "finetune", "--out", str(out), *loud,
                         "--rounds", "1"]) == 0
    err = capsys.readouterr().err
    assert "fine-tune" in err and "round 1 evaluation" in err  # the round's bars, under the simulation's
    assert open_store(out / "aloe" / "seed-3" / "store.zarr").round(1).provenance["mode"] == "finetune"
    assert _state(out)[1] == _state(finished)[1][:2]


@pytest.mark.parametrize("trigger", ["eval/0001.npz", "selections/0001.npz"])
def test_a_killed_finetune_simulation_resumes_with_the_same_results(config, finished, tmp_path, trigger):
    out = tmp_path / "run"
    argv = ["simulate", "--config", str(config), "--out", str(out), *ARGS]
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", "from aloe.cli import main; main()", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mark = out / "aloe" / "seed-3" / trigger
    kill_when(process, mark.exists)
    assert not (out / "metrics.csv").exists(), "not killed mid-run"
    assert run_cli(cli, argv) == 0
    assert _state(out) == _state(finished)


def test_a_config_test_split_is_the_evaluation_set_and_the_whole_dataset_the_pool(config, tmp_path, capsys):
    test_root = tmp_path / "test-images"
    test_root.mkdir()
    cfg = yaml.safe_load(config.read_text())
    cfg["test"] = {"kind": "manifest", "path": str(write_colour_pool(test_root))}
    with_test = tmp_path / "with-test.yaml"
    with_test.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "o"
    assert run_cli(cli, ["simulate", "--config", str(with_test), "--out", str(out), *ARGS, "--rounds", "1"]) == 0
    assert "fine-tune" not in capsys.readouterr().err  # --quiet: no bars at all
    run = out / "aloe" / "seed-3"
    assert open_store(run / "store.zarr").n_items == sum(count for _, count in CLASSES.values())
    with np.load(run / "eval" / "0001.npz") as data:
        assert data["logits"].shape[0] == sum(count for _, count in CLASSES.values())
    assert "the benchmark's own" in (out / "simulation.json").read_text()
