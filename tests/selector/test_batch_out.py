"""``aloe-select --out`` never destroys anything: ledgers, labels files, other files, directories and
the store itself are refused with a one-line error before anything is selected or recorded."""

from __future__ import annotations

import numpy as np
import pytest

from aloe.data.synthetic import make_pool
from aloe.embedder.linear_round import embed_from_features
from aloe.internal.cli import run_cli
from aloe.loop.ledger import Ledger
from aloe.selector.cli import cli
from aloe.store import open_store


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as the README's loop makes it: a store with round 0, its ledger and labels file."""
    root = tmp_path_factory.mktemp("out")
    pool = make_pool(n_classes=4, n0=30, alpha=0.5, dim=8, spread=0.1, seed=0)
    np.savez(root / "pool.npz", ids=pool.ids, features=pool.features)
    labeled = {pool.ids[p]: pool.class_names[pool.labels[p]] for p in range(0, len(pool.ids), 7)}
    (root / "labels.csv").write_text("id,label\n" + "".join(f"{i},{c}\n" for i, c in labeled.items()))
    Ledger(root / "ledger.csv").append(labeled, 0, "initial")
    assert embed_from_features(root / "pool.npz", root / "labels.csv", root / "pool.zarr") == 0
    return root


def _select(run_dir, out, capsys):
    code = run_cli(cli, ["--store", str(run_dir / "pool.zarr"), "--budget", "3", "--out", str(out), "--quiet"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("ledger.csv", "is not a batch CSV"),
        ("labels.csv", "is not a batch CSV"),
        ("pool.npz", "is not a batch CSV"),
        (".", "is a directory"),
        ("pool.zarr", "is a directory"),
        ("pool.zarr/batch.csv", "inside the store"),
        ("labels.csv/batch.csv", "is a file, not a folder"),
    ],
)
def test_destructive_out_is_refused_and_nothing_changes(run_dir, capsys, target, message):
    before = {p: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    code, err = _select(run_dir, run_dir / target, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert {p: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert open_store(run_dir / "pool.zarr").selections(0) == []
    assert not (run_dir / "pool.zarr" / "batch.csv").exists()


def test_an_earlier_batch_is_replaced(run_dir, tmp_path, capsys):
    out = tmp_path / "batch.csv"
    out.write_text("id,rank,cluster,ood_score,flagged\nold,1,,,0\n")
    code, err = _select(run_dir, out, capsys)
    assert code == 0, err
    lines = out.read_text().splitlines()
    assert lines[0] == "id,rank,cluster,ood_score,flagged" and len(lines) == 4 and "old" not in out.read_text()
    assert not out.with_name("batch.csv.tmp").exists()
