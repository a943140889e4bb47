"""A pool pass killed with SIGKILL mid-way: no round looks complete, and a rerun resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from aloe.config import load_config
from aloe.data.sources import build_source
from aloe.embedder.config import EmbedConfig
from aloe.embedder.round import embed_round
from aloe.store import open_store
from kill_helpers import kill_when

CONFIG = {
    "backbone": {"kind": "timm", "model": "tf_efficientnet_lite0", "weights": "builtin:efficientnet-lite0",
                 "image_size": 32},
    "data": {"kind": "mnist_lt", "longtail": {"n0": 12, "alpha": 1.0, "seed": 0}},
    "finetune": {"epochs": 1, "lr": 1e-4, "batch_size": 4, "augment": "none"},
    "pool": {"batch_size": 8, "workers": 0, "chunk_rows": 8},
    "device": "cpu",
}


def _labels_csv(cfg: EmbedConfig) -> str:
    """Two labeled items of each of the first two digits."""
    source = build_source(cfg.data)
    rows = [(i, label) for i, label in zip(source.ids, source.labels, strict=True) if label in ("digit-0", "digit-1")]
    return "id,label\n" + "".join(f"{i},{label}\n" for i, label in rows[:2] + rows[-2:])


def _rows_done(store: Path) -> int:
    for progress in store.rglob("*.progress.json"):
        try:
            return int(json.loads(progress.read_text())["rows_done"])
        except (ValueError, KeyError, OSError):
            return 0
    return 0


def _kill_mid_pass(config: Path, store: Path, labels: Path, mode: str) -> int:
    command = [sys.executable, "-c", "from aloe.embedder.cli import main; main()", "--config", str(config),
               "--store", str(store), "--labels", str(labels), "--mode", mode, "--quiet"]
    process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    kill_when(process, lambda: _rows_done(store) >= 16)
    return _rows_done(store)


@pytest.mark.parametrize("mode", ["finetune", "linear"])
def test_killed_pass_resumes_and_matches_an_uninterrupted_run(tmp_path, mode):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    cfg = load_config(EmbedConfig, config, {"mode": mode})
    labels = tmp_path / "labels.csv"
    labels.write_text(_labels_csv(cfg))
    killed = tmp_path / "killed.zarr"
    done_at_kill = _kill_mid_pass(config, killed, labels, mode)
    assert 16 <= done_at_kill < 120

    store = open_store(killed)
    assert store.rounds() == []
    work = tmp_path / "killed.zarr.embed-work"
    if mode == "finetune":
        assert store.incomplete_rounds() == [0]
        assert (work / "round-0000.pt").is_file()

    summary = embed_round(cfg, killed, labels, quiet=True)
    if mode == "finetune":
        assert summary.resumed_from >= done_at_kill
        assert open_store(killed).round(0).provenance["training"]["from_checkpoint"]
        assert not work.exists()
    reference = tmp_path / "reference.zarr"
    embed_round(cfg, reference, labels, quiet=True)
    resumed, whole = open_store(killed).round(0), open_store(reference).round(0)
    assert np.array_equal(resumed.features(), whole.features())
    assert np.array_equal(resumed.logits(), whole.logits())
    assert open_store(killed).incomplete_rounds() == []
