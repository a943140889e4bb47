"""Fault-injection fixtures: tiny pools, ready-made run directories, and a child that dies on cue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from aloe.data.synthetic import make_pool
from aloe.internal.cli import run_cli

KILLER = Path(__file__).with_name("killer.py")
REPO = Path(__file__).resolve().parents[2]
POOL_ROWS = 9000  # more than one 8192-row chunk: a kill can land between two chunks of a node
EMBED = "aloe.embedder.cli:main"
SELECT = "aloe.selector.cli:main"
ALOE = "aloe.cli:main"


@dataclass
class ChildRun:
    """What the fault-injection child reported (``None`` fields: it was killed first)."""

    returncode: int
    events: int | None
    seconds: float | None
    stderr: str


def run_child(workdir: Path, entry: str, argv: list[str], mode: str = "event", value: float = 0) -> ChildRun:
    """Run ``entry`` with ``argv`` in a child process that SIGKILLs itself at ``mode``/``value``."""
    report = workdir / f"report-{os.getpid()}.json"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(KILLER), str(report), mode, str(value), entry, *argv],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    stats = json.loads(report.read_text()) if report.exists() else {}
    return ChildRun(done.returncode, stats.get("events"), stats.get("seconds"), done.stderr)


def run_here(entry: str, argv: list[str]) -> int:
    """Run ``entry``'s click command in this process; its exit code."""
    import importlib

    module, _ = entry.split(":")
    loaded = importlib.import_module(module)
    command = getattr(loaded, "command", None) or getattr(loaded, "cli")
    return run_cli(command, argv)


def write_pool_npz(path: Path) -> Path:
    """Three Gaussian classes, ``POOL_ROWS`` x 8, float32."""
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 3, POOL_ROWS)
    centers = rng.standard_normal((3, 8)) * 4
    features = (centers[labels] + rng.standard_normal((POOL_ROWS, 8))).astype(np.float32)
    np.savez(path, ids=np.array([f"i{i:05d}" for i in range(POOL_ROWS)]), features=features, labels=labels)
    return path


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Path:
    """The shared inputs: pool.npz, labels.csv (classes a and b), sim.npz (a small labeled pool)."""
    root = tmp_path_factory.mktemp("fault-inputs")
    npz = write_pool_npz(root / "pool.npz")
    labels = np.load(npz)["labels"]
    chosen = [i for i in range(200) if labels[i] < 2][:12]
    (root / "labels.csv").write_text(
        "id,label\n" + "".join(f"i{i:05d},{'ab'[labels[i]]}\n" for i in chosen)
    )
    pool = make_pool(n_classes=5, n0=40, alpha=0.2, dim=8, spread=0.25, seed=3)
    test = make_pool(n_classes=5, n0=8, alpha=1.0, dim=8, spread=0.25, seed=3)
    np.savez(root / "sim.npz", ids=pool.ids, features=pool.features, labels=pool.labels,
             classes=np.array(pool.class_names), test_features=test.features, test_labels=test.labels)
    return root


@pytest.fixture(scope="session")
def embedded(inputs, tmp_path_factory):
    """Per backend suffix, a run directory whose store holds round 0 and a selection ``batch``."""
    made = {}
    for suffix in (".zarr", ".h5"):
        run = tmp_path_factory.mktemp(f"embedded{suffix.replace('.', '-')}")
        store = run / f"pool{suffix}"
        assert run_here(EMBED, embed_argv(inputs, store)) == 0
        assert run_here(SELECT, select_argv(store, run / "batch.csv", seed=1)) == 0
        shutil.copy(inputs / "labels.csv", run / "ledger.csv")  # a plain id,label file is round 0
        made[suffix] = run
    return made


def embed_argv(inputs: Path, store: Path) -> list[str]:
    return ["--from-features", str(inputs / "pool.npz"), "--labels", str(inputs / "labels.csv"), "--store", str(store)]


def select_argv(store: Path, out: Path, seed: int = 0) -> list[str]:
    return ["--store", str(store), "--budget", "6", "--seed", str(seed), "--out", str(out), "--name", "batch",
            "--overwrite", "--quiet"]


def copy_run(source: Path, target: Path) -> Path:
    """A fresh copy of a run directory."""
    shutil.copytree(source, target)
    return target
