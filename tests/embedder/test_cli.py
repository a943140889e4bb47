"""``aloe-embed``: help, label errors (one line, exit 2, nothing written), flags over the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from embed_helpers import write_pool

from aloe.embedder.cli import command
from aloe.internal.cli import run_cli
from aloe.store import open_store


@pytest.fixture
def config(tmp_path, tiny_clip, pool_manifest):
    path = tmp_path / "embed.yaml"
    path.write_text(yaml.safe_dump({
        "backbone": tiny_clip, "data": {"kind": "manifest", "path": str(pool_manifest)}, "mode": "finetune",
        "finetune": {"epochs": 1, "batch_size": 8}, "pool": {"batch_size": 8, "workers": 0}, "device": "cpu",
    }))
    return path


def _run(capsys, *args):
    code = run_cli(command, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_teaches(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for words in ("--from-features", "finetune", "linear", "Examples", "offline-default.yaml", "aloe-select"):
        assert words in out


@pytest.mark.parametrize("rows, message", [
    ("nope-1,red\nred-0,red\nnope-2,blue\n", "2 ids not in the pool: 'nope-1', 'nope-2'"),
    ("red-0,red\nred-0,blue\n", "two different labels: 'red-0'"),
])
def test_bad_labels_are_one_line_errors_and_nothing_is_written(tmp_path, capsys, config, rows, message):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + rows)
    store = tmp_path / "pool.zarr"
    code, out, err = _run(capsys, "--config", config, "--store", store, "--labels", labels, "--quiet")
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not store.exists()


def test_flags_override_the_config_and_the_round_is_written(tmp_path, capsys, config):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nred-0,red\nblue-0,blue\n")
    store = tmp_path / "pool.zarr"
    code, out, _ = _run(capsys, "--config", config, "--store", store, "--labels", labels, "--mode", "linear",
                        "--seed", 4, "--round", 0, "--quiet")
    assert code == 0 and "round 0 written" in out and "mode linear" in out
    provenance = open_store(store).round(0).provenance
    assert provenance["mode"] == "linear" and provenance["seed"] == 4 and provenance["device"] == "cpu"


def _tree(path):
    """Every file under ``path`` with its bytes: what a refused command must leave as it was."""
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def _features_args(tmp_path):
    """``aloe-embed --from-features`` arguments for 30 random 8-d items, two of them labeled, and the store."""
    rng = np.random.default_rng(0)
    ids = np.array([f"item-{i}" for i in range(30)])
    np.savez(tmp_path / "pool.npz", ids=ids, features=rng.normal(size=(30, 8)).astype(np.float32))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nitem-0,a\nitem-1,b\n")
    store = tmp_path / "pool.zarr"
    return ("--from-features", tmp_path / "pool.npz", "--store", store, "--labels", labels), store


def test_a_round_that_is_not_the_next_is_refused_and_nothing_is_written(tmp_path, capsys, config):
    features, store = _features_args(tmp_path)
    assert _run(capsys, *features)[0] == 0
    before = _tree(store)
    for round_, message in ((5, "the next round is 1 (the newest complete round is 0), not 5"),
                            (0, f"round 0 already exists (rounds are immutable); use --round 1 or omit --round, "
                                f"or to write round 0 again: 'aloe store drop {store} --round 0'")):
        code, _, err = _run(capsys, *features, "--round", round_)
        assert code == 2 and message in err and "use --round 1 or omit --round" in err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert _tree(store) == before
    assert _run(capsys, *features, "--round", 1)[0] == 0 and open_store(store).rounds() == [0, 1]
    fresh, red = tmp_path / "fresh.zarr", tmp_path / "red.csv"
    red.write_text("id,label\nred-0,red\n")
    code, _, err = _run(capsys, "--config", config, "--store", fresh, "--labels", red, "--round", 3)
    assert code == 2 and "the next round is 0 (it has no complete round yet), not 3" in err
    assert not fresh.exists()


def test_from_features_writes_a_linear_round(tmp_path, capsys):
    features, store = _features_args(tmp_path)
    code, out, _ = _run(capsys, *features)
    assert code == 0 and "round 0 written" in out
    assert open_store(store).round(0).logits().shape == (30, 2)
    code, _, err = _run(capsys, *features, "--mode", "finetune")
    assert code == 2 and "linear head only" in err


def test_missing_config_is_a_usage_error(tmp_path, capsys):
    code, _, err = _run(capsys, "--store", tmp_path / "s.zarr", "--labels", tmp_path / "l.csv")
    assert code == 2 and "--config is required" in err


def test_a_negative_seed_is_refused_before_any_store(tmp_path, capsys, config):
    code, _, err = _run(capsys, "--config", config, "--store", tmp_path / "s.zarr", "--labels", tmp_path / "l.csv",
                        "--seed", -1)
    assert code == 2 and "--seed" in err and err.count("\n") == 1 and not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("override, message", [
    ({"backbone": {"kind": "open_clip", "pretrained": "openai"}}, "local .pt or .safetensors"),
    ({"data": {"kind": "manifest", "path": "absent.csv"}}, "manifest not found"),
    ({"seed": -1}, "key 'seed'"),
    ({"finetune": {"epochs": 0}}, "key 'finetune.epochs'"),
    ({"data": {"kind": "mnist_lt", "longtail": {"seed": -1}}}, "key 'data.longtail.seed'"),  # no 'mnist_lt'
])
def test_setup_errors_write_nothing(tmp_path, capsys, config, override, message):
    settings = {**yaml.safe_load(config.read_text()), **override}
    config.write_text(yaml.safe_dump(settings))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n")
    store = tmp_path / "pool.zarr"
    code, _, err = _run(capsys, "--config", config, "--store", store, "--labels", labels)
    assert code == 2 and message in err and not store.exists()


def test_unknown_config_key_names_it(tmp_path, capsys, config):
    config.write_text(config.read_text() + "epochs: 3\n")
    code, _, err = _run(capsys, "--config", config, "--store", tmp_path / "s.zarr", "--labels", tmp_path / "l.csv")
    assert code == 2 and "unknown key 'epochs'" in err


def test_a_mistyped_required_key_is_named_before_the_key_it_left_missing(tmp_path, capsys, config):
    config.write_text(config.read_text().replace("backbone:", "backbnoe:", 1))
    code, _, err = _run(capsys, "--config", config, "--store", tmp_path / "s.zarr", "--labels", tmp_path / "l.csv")
    assert code == 2 and err.count("\n") == 1 and "unknown key 'backbnoe' (and 1 more)" in err


def test_unreadable_images_are_reported_at_the_end(tmp_path, capsys, config):
    settings = yaml.safe_load(config.read_text())
    settings["data"]["path"] = str(write_pool(tmp_path / "img", per_class=2, broken=2))
    config.write_text(yaml.safe_dump(settings))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nred-0,red\n")
    code, out, err = _run(capsys, "--config", config, "--store", tmp_path / "p.zarr", "--labels", labels, "--quiet")
    assert code == 0 and "round 0 written" in out
    assert "2 unreadable images skipped (positions 6, 7)" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys, config):
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n")
    code, _, err = _run(capsys, "--config", config, "--store", tmp_path / "p.zarr", "--labels", labels,
                        "--device", "cuda")
    assert code == 2 and "no CUDA device" in err and not (tmp_path / "p.zarr").exists()
