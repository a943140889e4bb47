"""``aloe-select`` end to end on stores built in tmp_path with ``embed_from_features``."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from aloe.data.synthetic import make_pool
from aloe.embedder.linear_round import embed_from_features
from aloe.internal.cli import run_cli
from aloe.selector.cli import cli
from aloe.store import create_store, open_store


def _write_labels(path, pool, positions):
    lines = ["id,label"] + [f"{pool.ids[p]},{pool.class_names[pool.labels[p]]}" for p in positions]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with round 0 (3 known classes, 12 labels) made from an npz; and the pool."""
    root = tmp_path_factory.mktemp("select")
    pool = make_pool(n_classes=10, n0=60, alpha=0.2, dim=16, spread=0.1, seed=0)
    np.savez(root / "pool.npz", ids=pool.ids, features=pool.features, labels=pool.labels)
    rng = np.random.default_rng(0)
    labeled = np.concatenate([rng.choice(np.flatnonzero(pool.labels == c), 4, replace=False) for c in range(3)])
    _write_labels(root / "labels.csv", pool, labeled)
    assert embed_from_features(root / "pool.npz", root / "labels.csv", root / "s.zarr") == 0
    return root, pool, labeled


def _run(argv, capsys):
    code = run_cli(cli, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_selects_writes_csv_records_and_summarises(built, tmp_path, capsys):
    root, pool, labeled = built
    out = tmp_path / "batch.csv"
    code, stdout, err = _run(["--store", root / "s.zarr", "--budget", 8, "--out", out, "--name", "first"], capsys)
    assert code == 0, err
    rows = _read_csv(out)
    assert list(rows[0]) == ["id", "rank", "cluster", "ood_score", "flagged"]
    assert [int(r["rank"]) for r in rows] == list(range(1, 9))
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == 8 and not set(ids) & set(pool.ids[labeled])
    assert all(r["cluster"] != "" and r["ood_score"] != "" for r in rows)
    for text in ("tau", "k = 16 clusters", "flagged OOD", "OOD ratio of the chosen clusters", "time:", "kmeans"):
        assert text in stdout
    attrs, arrays = open_store(root / "s.zarr").read_selection(0, "first")
    assert attrs["strategy"] == "aloe" and attrs["k"] == 16 and attrs["score"] == "msp+knn"
    assert list(arrays["chosen_ids"]) == ids
    assert arrays["scores"].shape == (len(pool.ids),) and (arrays["clusters"][labeled] == -1).all()
    assert set(attrs["timings"]) >= {"read", "scores", "threshold", "kmeans", "rank", "total"}


def test_same_name_same_request_is_reused_other_request_needs_overwrite(built, tmp_path, capsys):
    root, _, _ = built
    args = ["--store", root / "s.zarr", "--budget", 6, "--strategy", "margin", "--name", "again"]
    assert _run([*args, "--out", tmp_path / "a.csv"], capsys)[0] == 0
    code, stdout, _ = _run([*args, "--out", tmp_path / "b.csv"], capsys)
    assert code == 0 and "reused" in stdout
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    code, _, err = _run([*args[:-4], "--budget", 7, "--strategy", "margin", "--name", "again",
                         "--out", tmp_path / "c.csv"], capsys)
    assert code == 2 and "budget 6 -> 7" in err and "--overwrite" in err and err.count("\n") == 1
    code, _, _ = _run(["--store", root / "s.zarr", "--budget", 7, "--strategy", "margin", "--name", "again",
                       "--overwrite", "--out", tmp_path / "c.csv"], capsys)
    assert code == 0 and len(_read_csv(tmp_path / "c.csv")) == 7


def test_default_names_differ_per_request_so_reselection_just_adds(built, tmp_path, capsys):
    root, _, _ = built
    before = set(open_store(root / "s.zarr").selections(0))
    for extra in (["--multiplier", 3], ["--score", "energy"], ["--strategy", "badge"]):
        assert _run(["--store", root / "s.zarr", "--budget", 5, "--out", tmp_path / "x.csv", *extra], capsys)[0] == 0
    assert len(set(open_store(root / "s.zarr").selections(0)) - before) == 3


def test_per_cluster_caps_the_items_a_cluster_gives_and_is_recorded(built, tmp_path, capsys):
    root, _, _ = built
    counts = {}
    for per_cluster in (1, 2, 8):
        out = tmp_path / f"p{per_cluster}.csv"
        args = ["--store", root / "s.zarr", "--budget", 8, "--per-cluster", per_cluster, "--name", f"p{per_cluster}"]
        assert _run([*args, "--out", out], capsys)[0] == 0
        counts[per_cluster] = np.unique([r["cluster"] for r in _read_csv(out)], return_counts=True)[1]
        attrs, _ = open_store(root / "s.zarr").read_selection(0, f"p{per_cluster}")
        assert attrs["params"]["per_cluster"] == per_cluster
    assert counts[1].max() == 1 and len(counts[1]) == 8
    assert counts[2].max() <= 2 and counts[8].max() > 2
    code, _, err = _run(["--store", root / "s.zarr", "--budget", 8, "--per-cluster", 0, "--out", tmp_path / "z.csv"],
                        capsys)
    assert code == 2 and "per_cluster" in err and err.count("\n") == 1


def test_config_file_and_flags(built, tmp_path, capsys):
    root, _, _ = built
    config = tmp_path / "select.yaml"
    config.write_text("budget: 4\nstrategy: kmeans\nniter: 5\n")
    code, stdout, err = _run(["--store", root / "s.zarr", "--config", config, "--budget", 6, "--quiet",
                              "--out", tmp_path / "k.csv"], capsys)
    assert code == 0 and stdout == "" and len(_read_csv(tmp_path / "k.csv")) == 6
    config.write_text("budget: 4\nniterations: 5\n")
    code, _, err = _run(["--store", root / "s.zarr", "--config", config, "--out", tmp_path / "k.csv"], capsys)
    assert code == 2 and "unknown key 'niterations'" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", 0], "budget"),
        (["--budget", -2], "budget"),
        (["--budget", 3, "--round", 9], "no round 9"),
        (["--budget", 3, "--tpr", 1.5], "tpr"),
        (["--budget", 3, "--seed", -1], "seed"),
        (["--budget", 3, "--seed", 2**31], "seed"),
        (["--budget", 3, "--name", ""], "invalid selection name ''"),
        (["--budget", 3, "--strategy", "bogus"], "'bogus' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(built, tmp_path, capsys, argv, message):
    root, _, _ = built
    code, _, err = _run(["--store", root / "s.zarr", "--out", tmp_path / "x.csv", *argv], capsys)
    assert code == 2 and message in err and err.startswith("error:") and err.count("\n") == 1


def test_missing_store_and_missing_budget(tmp_path, capsys):
    code, _, err = _run(["--store", tmp_path / "none.zarr", "--budget", 3, "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "no store" in err
    code, _, err = _run(["--store", tmp_path / "none.zarr", "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "--budget" in err


def _bare_store(path, features, logits, positions, classes, names, commit=True):
    store = create_store(path, [f"i{i}" for i in range(len(features))])
    writer = store.begin_round(0, feature_dim=features.shape[1], class_names=names, labeled_positions=positions,
                               labeled_classes=classes, feature_dtype="float32", chunk_rows=8)
    writer.write(features, logits)
    if commit:
        writer.commit()
    return path


def test_nan_features_incomplete_round_and_cold_start(tmp_path, capsys):
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 4)).astype(np.float32)
    features[[5, 9, 30], 1] = np.nan
    logits = rng.standard_normal((40, 2)).astype(np.float32)
    path = _bare_store(tmp_path / "a.zarr", features, logits, [0, 1], [0, 1], ["x", "y"])
    code, _, err = _run(["--store", path, "--budget", 3, "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "features hold NaN or inf in 3 row(s); first: row 5 (id 'i5')" in err

    path = _bare_store(tmp_path / "b.zarr", np.nan_to_num(features), logits, [0], [0], ["x", "y"], commit=False)
    code, _, err = _run(["--store", path, "--round", 0, "--budget", 3, "--out", tmp_path / "x.csv"], capsys)
    assert code == 2 and "incomplete" in err

    empty = np.zeros((40, 0), dtype=np.float32)
    path = _bare_store(tmp_path / "c.zarr", np.nan_to_num(features), empty, [], [], [])
    code, stdout, err = _run(["--store", path, "--budget", 5, "--out", tmp_path / "cold.csv"], capsys)
    assert code == 0, err
    assert "cold start" in stdout
    rows = _read_csv(tmp_path / "cold.csv")
    assert len(rows) == 5 and all(r["ood_score"] == "" and r["cluster"] == "" for r in rows)


def test_help_teaches_the_rule_and_gives_an_example(capsys):
    code, stdout, _ = _run(["--help"], capsys)
    assert code == 0
    for text in ("most-OOD member", "k = multiplier * max(B, C)", "Example:", "aloe-select --store", "badge"):
        assert text in stdout
