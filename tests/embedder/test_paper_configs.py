"""The paper configs load and carry LabelBench's fine-tune recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from aloe.config import load_config
from aloe.embedder.config import EmbedConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LABELBENCH = {"lr": 3e-5, "weight_decay": 1e-4, "batch_size": 400, "epochs": 20, "schedule": "cosine",
              "warmup_steps": 500, "label_smoothing": 0.1, "mixup": 0.1, "grad_clip": 1.0,
              "early_stop_patience": 3}


@pytest.mark.parametrize("name", ["cifar100-lt", "imagenet-lt", "places365-lt"])
def test_paper_configs_carry_the_labelbench_recipe_with_its_source(name):
    path = CONFIGS / f"{name}.yaml"
    cfg = load_config(EmbedConfig, path)
    assert cfg.mode == "finetune"
    assert cfg.finetune.model_dump(include=set(LABELBENCH)) == LABELBENCH
    assert "clip_ViTB32_finetune.json" in path.read_text()


@pytest.mark.parametrize(("name", "kind"), [("cifar100-lt", "cifar100"), ("imagenet-lt", "split_list"),
                                            ("places365-lt", "split_list")])
def test_paper_configs_name_the_benchmarks_own_test_split(name, kind):
    cfg = load_config(EmbedConfig, CONFIGS / f"{name}.yaml")
    assert cfg.test is not None and cfg.test.kind == kind
    assert getattr(cfg.test, "split", "test") == "test"
    assert "test" in str(getattr(cfg.test, "list_file", "test"))
