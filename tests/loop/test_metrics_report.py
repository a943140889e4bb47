"""Balanced accuracies against scikit-learn; the report's numbers against hand-made metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import recall_score

from aloe.cli import cli
from aloe.errors import AloeError
from aloe.internal.cli import run_cli
from aloe.loop.metrics import COLUMNS, balanced_accuracies, read_metrics, stalls, write_metrics
from aloe.loop.report import bootstrap_interval, by_run, discovery_lines, paired_difference, write_report


def test_balanced_accuracies_match_sklearn_recalls():
    rng = np.random.default_rng(3)
    classes = np.array([f"c{i}" for i in range(6)])
    true = classes[rng.integers(0, 6, size=300)]
    discovered = ["c0", "c2", "c3", "c5"]
    predicted = np.array(discovered)[rng.integers(0, 4, size=300)]
    predicted[:150] = true[:150]
    predicted = np.where(np.isin(predicted, discovered), predicted, "c0")
    recalls = recall_score(true, predicted, labels=classes, average=None, zero_division=0)
    balanced, known = balanced_accuracies(true, predicted, discovered)
    assert balanced == pytest.approx(recalls.mean())
    assert known == pytest.approx(recalls[[0, 2, 3, 5]].mean())
    assert recalls[[1, 4]].sum() == 0  # undiscovered classes count as zero


def test_known_accuracy_is_nan_without_discovered_test_classes():
    balanced, known = balanced_accuracies(np.array(["a", "b"]), np.array(["z", "z"]), ["z"])
    assert balanced == 0 and math.isnan(known)


def _rows(strategy, seed, discovered, start=10, budget=10):
    return [
        {"strategy": strategy, "seed": seed, "round": t, "n_labeled": start + t * budget,
         "n_classes_discovered": d, "n_new_classes_in_batch": d - (discovered[t - 1] if t else 0),
         "balanced_accuracy": d / 10, "known_balanced_accuracy": 0.9, "select_seconds": 0.01 * t}
        for t, d in enumerate(discovered)
    ]


def test_metrics_file_round_trip_and_validation(tmp_path):
    rows = _rows("aloe", 1, [2, 5]) + _rows("aloe", 0, [3, 4])
    write_metrics(tmp_path / "metrics.csv", rows)
    text = (tmp_path / "metrics.csv").read_text().splitlines()
    assert text[0] == ",".join(COLUMNS)
    back = read_metrics(tmp_path / "metrics.csv")
    assert [(r["seed"], r["round"]) for r in back] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert back[1]["n_classes_discovered"] == 4 and back[1]["select_seconds"] == pytest.approx(0.01)
    (tmp_path / "bad.csv").write_text(",".join(COLUMNS) + "\naloe,0,0,x,1,1,0.1,0.1,0\n")
    with pytest.raises(AloeError, match="line 2"):
        read_metrics(tmp_path / "bad.csv")


def test_report_thresholds_savings_and_plots(tmp_path):
    # 10 classes. aloe reaches 5 / 9 / 10 classes at 20 / 30 / 40 labels (both seeds);
    # random reaches 5 at 30 and 40 (mean 35), 9 at 50 on one seed only, 10 never.
    rows = (
        _rows("aloe", 0, [3, 5, 9, 10, 10])
        + _rows("aloe", 1, [4, 6, 9, 10, 10])
        + _rows("random", 0, [2, 4, 5, 7, 9])
        + _rows("random", 1, [2, 3, 4, 5, 8])
    )
    write_metrics(tmp_path / "metrics.csv", rows)
    (tmp_path / "simulation.json").write_text(json.dumps({"n_classes": 10, "budget": 10}))
    report = write_report(tmp_path)
    text = report.read_text()
    # random's 90% and 100% are lower bounds (unreached seeds count at 50), so are the savings
    assert "| aloe | 2 | 20 | 30 | 40 | 43% | ≥ 40% | ≥ 20% |" in text
    assert "| random | 2 | 35 | > 50 (1/2 seeds, those at 50) | > 50 (0/2 seeds) | 0% | n/a | n/a |" in text
    assert "classes discovered at 50 labels: aloe 10.0/10, random 8.5/10" in text
    for name in ("discovery.png", "accuracy.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size[0] > 300
        assert f"({name})" in text


def test_report_of_a_directory_without_metrics_fails_cleanly(tmp_path):
    with pytest.raises(AloeError, match="metrics file not found"):
        write_report(tmp_path)


def test_report_command_writes_into_another_folder(tmp_path, capsys):
    write_metrics(tmp_path / "metrics.csv", _rows("aloe", 0, [3, 5]) + _rows("random", 0, [2, 4]))
    assert run_cli(cli, ["report", str(tmp_path), "--out", str(tmp_path / "r"), "--title", "T"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'r' / 'report.md'}"
    text = (tmp_path / "r" / "report.md").read_text()
    assert text.startswith("# T\n") and "the 5 classes" in text  # no simulation.json: most discovered


def test_equal_labels_table_compares_strategies_where_all_have_data(tmp_path):
    # aloe stops at 30 labels, random goes on to 50: the table is taken at 30
    rows = _rows("aloe", 0, [3, 5, 9]) + _rows("random", 0, [2, 4, 5, 7, 9])
    write_metrics(tmp_path / "metrics.csv", rows)
    (tmp_path / "simulation.json").write_text(json.dumps({"n_classes": 10}))
    text = write_report(tmp_path).read_text()
    # bounds use each strategy's own labels: aloe never got to 100% within its 30
    assert "| aloe | 1 | 20 | 30 | > 30 (0/1 seeds) | 33% | 40% | n/a |" in text
    assert "| random | 1 | 30 | 50 | > 50 (0/1 seeds) |" in text
    assert "## At 30 labels (the most every strategy reached)" in text
    assert "| aloe | 9.0 ± 0.0 | 0.900 ± 0.000 | 0.900 ± 0.000 | 0.015 | 0.0 | 0 |" in text
    assert "| random | 5.0 ± 0.0 | 0.500 ± 0.000 | 0.900 ± 0.000 | 0.015 | 0.0 | 0 |" in text


def test_stalls_are_runs_of_rounds_without_a_new_class_while_some_remain():
    assert stalls(_rows("aloe", 0, [2, 2, 3, 3, 3, 5, 10, 10, 10]), 10) == [1, 2]
    assert stalls(_rows("aloe", 0, [2, 3, 3, 3]), 10) == [2]  # still stalled at the end
    assert stalls(_rows("aloe", 0, [10, 10, 10]), 10) == []
    assert stalls(_rows("aloe", 0, [4]), 10) == []


@given(st.lists(st.integers(0, 3), min_size=1, max_size=30), st.integers(1, 20))
def test_stall_rounds_count_every_round_without_a_new_class(steps, n_classes):
    discovered = np.minimum(np.cumsum(steps), n_classes).tolist()
    rows = _rows("aloe", 0, discovered)
    expected = sum(1 for a, b in zip(discovered, discovered[1:]) if a < n_classes and b == a)
    found = stalls(rows, n_classes)
    assert sum(found) == expected and all(length > 0 for length in found)


def test_report_counts_stalls_up_to_the_common_labels_and_lists_labels_to_every_class(tmp_path):
    # aloe has 40 labels at most, so random's rounds past 40 labels are left out of the stall count
    rows = (_rows("aloe", 0, [3, 3, 3, 10]) + _rows("aloe", 1, [3, 4, 5, 6])
            + _rows("random", 0, [2, 2, 4, 4, 4, 4]))
    write_metrics(tmp_path / "metrics.csv", rows)
    (tmp_path / "simulation.json").write_text(json.dumps({"n_classes": 10}))
    text = write_report(tmp_path).read_text()
    assert "| aloe | 8.0 ± 2.0 | 0.800 ± 0.200 | 0.900 ± 0.000 | 0.020 | 1.0 | 2 |" in text
    assert "| random | 4.0 ± 0.0 | 0.400 ± 0.000 | 0.900 ± 0.000 | 0.020 | 2.0 | 1 |" in text
    lines = discovery_lines(by_run(read_metrics(tmp_path / "metrics.csv")), 10)
    assert lines[0].startswith("labels to discover all 10 classes, mean over seeds")
    assert lines[1:] == ["  aloe (2 seeds): > 40 (1/2 seeds, those at 40)", "  random (1 seeds): > 60 (0/1 seeds)"]


def test_paired_differences_against_aloe_seed_by_seed(tmp_path):
    # 10 classes. Labels to all 10: aloe 40 / 20 / 50 / never on seeds 0-3; ood 30 / 50 / 60 / 40;
    # random only seed 0 (50). Shared seeds where both got there: ood 0-2, random 0 (too few).
    rows = (
        _rows("aloe", 0, [5, 8, 9, 10]) + _rows("aloe", 1, [5, 10]) + _rows("aloe", 2, [5, 6, 7, 8, 10])
        + _rows("aloe", 3, [5, 6])
        + _rows("ood", 0, [5, 8, 10]) + _rows("ood", 1, [5, 6, 7, 8, 10]) + _rows("ood", 2, [5, 6, 7, 8, 9, 10])
        + _rows("ood", 3, [5, 6, 7, 10])
        + _rows("random", 0, [5, 6, 7, 8, 10])
    )
    write_metrics(tmp_path / "metrics.csv", rows)
    (tmp_path / "simulation.json").write_text(json.dumps({"n_classes": 10}))
    runs = by_run(rows)
    pair = paired_difference(runs["ood"], runs["aloe"], 10)
    assert pair.differences.tolist() == [-10.0, 30.0, 10.0]
    assert pair.mean == pytest.approx(10.0)
    assert -10 <= pair.low < pair.mean < pair.high <= 30
    assert paired_difference(runs["random"], runs["aloe"], 10) is None
    again = paired_difference(runs["ood"], runs["aloe"], 10)
    assert (again.low, again.high) == (pair.low, pair.high)  # seeded: the same interval every time
    text = write_report(tmp_path).read_text()
    assert "## Against `aloe`, seed by seed" in text
    assert f"| ood | 3 of 4 | +10.0 | [{pair.low:+.1f}, {pair.high:+.1f}] |" in text
    assert "| random | fewer than 2 of 1 | n/a | n/a |" in text


def test_the_paired_section_says_when_too_few_seeds_finished(tmp_path):
    # random found every class on no seed: the section stays and says why it has no figures
    write_metrics(tmp_path / "metrics.csv", _rows("aloe", 0, [5, 10]) + _rows("aloe", 1, [5, 10])
                  + _rows("random", 0, [5, 6]) + _rows("random", 1, [5, 7]))
    (tmp_path / "simulation.json").write_text(json.dumps({"n_classes": 10}))
    text = write_report(tmp_path).read_text()
    assert "## Against `aloe`, seed by seed" in text and "| random | fewer than 2 of 2 | n/a | n/a |" in text


def test_no_paired_section_without_the_reference_strategy(tmp_path):
    write_metrics(tmp_path / "metrics.csv", _rows("ood", 0, [3, 5]) + _rows("random", 0, [2, 5]))
    assert "seed by seed" not in write_report(tmp_path).read_text()


def test_report_command_compares_with_another_reference_and_refuses_an_unknown_one(tmp_path, capsys):
    rows = (_rows("aloe", 0, [5, 10]) + _rows("aloe", 1, [5, 8, 10])
            + _rows("ood", 0, [5, 8, 10]) + _rows("ood", 1, [5, 10]))
    write_metrics(tmp_path / "metrics.csv", rows)
    (tmp_path / "simulation.json").write_text(json.dumps({"n_classes": 10}))
    assert run_cli(cli, ["report", str(tmp_path), "--reference", "ood"]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "## Against `ood`, seed by seed" in text and "| aloe | 2 of 2 | +0.0 |" in text
    before = text
    assert run_cli(cli, ["report", str(tmp_path), "--reference", "nope", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'nope'" in err and "aloe, ood" in err
    assert (tmp_path / "report.md").read_text() == before and not (tmp_path / "new").exists()
    assert run_cli(cli, ["report", str(tmp_path), "--out", str(tmp_path / "metrics.csv")]) == 2
    assert "is a file" in capsys.readouterr().err


@given(st.lists(st.integers(-50, 50), min_size=2, max_size=30), st.integers(0, 2**32 - 1))
def test_bootstrap_interval_brackets_the_mean_within_the_range(values, seed):
    low, high = bootstrap_interval(np.array(values), seed=seed)
    mean = float(np.mean(values))
    assert min(values) <= low <= mean + 1e-9 and mean - 1e-9 <= high <= max(values)
    if len(set(values)) == 1:
        assert low == high == values[0]
