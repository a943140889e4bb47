"""``aloe simulate --config`` and ``aloe demo`` through the embedder, on a tiny image pool and backbone."""

from __future__ import annotations

import pytest
import yaml

from aloe.cli import cli
from aloe.internal.cli import run_cli
from aloe.store import open_store
from image_helpers import TINY_VIT, write_colour_pool


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """A long-tailed manifest of noisy colour squares (one file broken) and a linear-mode config."""
    root = tmp_path_factory.mktemp("images")
    manifest = write_colour_pool(root, broken=True)
    cfg = {
        "backbone": {"kind": "open_clip", "model": "ViT-B-32", "pretrained": None, "architecture": TINY_VIT},
        "data": {"kind": "manifest", "path": str(manifest)},
        "mode": "linear",
        "linear": {"C": 5.0},
        "pool": {"batch_size": 8, "workers": 0, "chunk_rows": 8},
        "device": "cpu",
    }
    path = root / "embed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


ARGS = ["--budget", "2", "--rounds", "2", "--seeds", "0,1", "--quiet"]


def test_simulate_from_a_config_embeds_once_and_leaves_out_unreadable_images(config, tmp_path, capsys):
    out = tmp_path / "sim"
    assert run_cli(cli, ["simulate", "--config", str(config), "--out", str(out), *ARGS, "--keep-stores"]) == 0
    features = open_store(out / "features.zarr")
    assert "broken" in features.ids.tolist()
    run = open_store(out / "aloe" / "seed-0" / "store.zarr")
    assert "broken" not in run.ids.tolist() and run.rounds() == [0, 1, 2]
    assert run.round(0).provenance["head"]["C"] == 5.0  # the config's head settings
    cache = sorted((out / "features.zarr" / "cache").iterdir())
    stamp = [p.stat().st_mtime_ns for p in cache]
    assert run_cli(cli, ["simulate", "--config", str(config), "--out", str(out), *ARGS, "--rounds", "3",
                         "--keep-stores"]) == 0
    assert [p.stat().st_mtime_ns for p in sorted((out / "features.zarr" / "cache").iterdir())] == stamp
    assert open_store(out / "random" / "seed-1" / "store.zarr").rounds() == [0, 1, 2, 3]


def test_demo_ends_with_the_report_and_the_labels_to_discover_every_class(config, tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli(cli, ["demo", "--config", str(config), "--out", str(out), *ARGS]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-5] == f"report: {out / 'report.md'}"
    assert lines[-4].startswith("classes discovered at 6 labels: aloe ") and ", random " in lines[-4]
    assert lines[-4].endswith("/3") and lines[-3].startswith("labels to discover all 3 classes")
    assert lines[-2].startswith("  aloe (2 seeds): ") and lines[-1].startswith("  random (2 seeds): ")
    assert (out / "discovery.png").is_file() and "offline MNIST-LT" in (out / "report.md").read_text()


def test_a_missing_pool_and_a_mode_without_config_are_refused(pool_npz, tmp_path, capsys):
    assert run_cli(cli, ["simulate", "--out", str(tmp_path / "o")]) == 2
    assert "give the pool: --config" in capsys.readouterr().err
    argv = ["simulate", "--features", str(pool_npz), "--mode", "finetune", "--out", str(tmp_path / "o")]
    assert run_cli(cli, argv) == 2
    assert "--mode applies to --config" in capsys.readouterr().err and not (tmp_path / "o").exists()
