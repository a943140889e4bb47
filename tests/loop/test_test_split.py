"""A config's ``test:`` dataset is the simulation's test split; the carve-out only without one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

from aloe.cli import cli
from aloe.internal.cli import run_cli

TINY = {
    "embed_dim": 8,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 16, "patch_size": 8, "head_width": 8},
    "text_cfg": {"context_length": 4, "vocab_size": 16, "width": 8, "heads": 1, "layers": 1},
}
SHADES = {"0": (220, 40, 40), "1": (40, 220, 40), "2": (40, 40, 220)}


def _split_list(root, name: str, per_class: dict[str, int], seed: int, broken: int = 0):
    """Generated JPEGs under ``root`` and an ImageNet-LT style ``path label`` list of them."""
    rng = np.random.default_rng(seed)
    lines = []
    for label, count in per_class.items():
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.clip(np.array(SHADES[label]) + rng.normal(0, 20, (20, 30, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}{i}.jpg", quality=90)
            lines.append(f"class{label}/{name}{i}.jpg {label}")
    for i in range(broken):
        (root / f"broken{i}.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        lines.append(f"broken{i}.jpg 0")
    path = root / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return {"kind": "split_list", "name": "toy-lt", "list_file": str(path), "root": str(root)}


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    base = {
        "backbone": {"kind": "open_clip", "model": "ViT-B-32", "pretrained": None, "architecture": TINY},
        "data": _split_list(root, "train", {"0": 10, "1": 5, "2": 3}, seed=0),
        "mode": "linear",
        "pool": {"batch_size": 8, "workers": 0, "chunk_rows": 8},
        "device": "cpu",
    }
    with_test = {**base, "test": _split_list(root, "test", {"0": 4, "1": 4, "2": 4}, seed=1, broken=1)}
    foreign = {**base, "test": _split_list(root / "foreign", "test", {"0": 2, "1": 2}, seed=2)}
    foreign["test"]["list_file"] = str(root / "foreign" / "test.txt")
    (root / "foreign" / "test.txt").write_text("class0/test0.jpg 0\nclass1/test0.jpg 7\n")
    paths = {}
    for name, cfg in {"carve": base, "test": with_test, "foreign": foreign}.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    return paths


ARGS = ["--budget", "2", "--rounds", "1", "--seeds", "0", "--strategy", "random", "--quiet"]


def test_a_named_test_split_is_embedded_and_used_and_the_pool_stays_whole(configs, tmp_path):
    out = tmp_path / "sim"
    assert run_cli(cli, ["simulate", "--config", str(configs["test"]), "--out", str(out), *ARGS]) == 0
    record = json.loads((out / "simulation.json").read_text())
    assert record["n_items"] == 18 and record["n_test"] == 12  # whole pool; the broken test image left out
    assert record["pool"]["test_split"] == "toy-lt, the benchmark's own"
    assert record["pool"]["test_unreadable_items"] == 1 and (out / "test-features.zarr").is_dir()
    assert run_cli(cli, ["report", str(out)]) == 0
    assert "test split: toy-lt, the benchmark's own, 12 items" in (out / "report.md").read_text()


def test_without_a_test_split_a_stratified_share_is_carved_out(configs, tmp_path):
    out = tmp_path / "sim"
    assert run_cli(cli, ["simulate", "--config", str(configs["carve"]), "--out", str(out), *ARGS]) == 0
    record = json.loads((out / "simulation.json").read_text())
    assert record["pool"]["test_split"].startswith("stratified 20%")
    assert record["n_items"] + record["n_test"] == 18 and record["n_test"] == 2 + 1 + 1
    assert not (out / "test-features.zarr").exists()


def test_a_test_split_with_classes_the_pool_lacks_is_refused(configs, tmp_path, capsys):
    out = tmp_path / "sim"
    assert run_cli(cli, ["simulate", "--config", str(configs["foreign"]), "--out", str(out), *ARGS]) == 2
    assert "classes the pool lacks: '7'" in capsys.readouterr().err
