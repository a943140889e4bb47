"""``aloe simulate`` on a small synthetic pool: real stores, metrics checked independently, resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from kill_helpers import kill_when
from sklearn.metrics import recall_score

from aloe.embedder.head import LinearHeadConfig, fit_linear_head, head_logits
from aloe.internal.cli import run_cli
from aloe.loop.cli import report_command, simulate_command
from aloe.loop.ledger import Ledger
from aloe.loop.metrics import COLUMNS
from aloe.loop.simulate import read_selection_record
from aloe.selector.config import SelectConfig
from aloe.selector.select import run_select
from aloe.store import open_store

ARGS = ["--budget", "5", "--rounds", "3", "--seeds", "0,1", "--head-c", "2", "--quiet"]


def simulate(pool_npz, out, *extra):
    return run_cli(simulate_command, ["--features", str(pool_npz), "--out", str(out), *ARGS, *extra])


@pytest.fixture(scope="module")
def finished(pool_npz, tmp_path_factory):
    """One uninterrupted simulation of aloe and random, 2 seeds, 3 rounds of 5 labels."""
    out = tmp_path_factory.mktemp("sim") / "run"
    assert simulate(pool_npz, out) == 0
    return out


def read_rows(path):
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def test_metrics_have_exactly_the_columns_and_one_row_per_round(finished):
    fields, rows = read_rows(finished / "metrics.csv")
    assert tuple(fields) == COLUMNS
    keys = [(r["strategy"], int(r["seed"]), int(r["round"])) for r in rows]
    assert keys == [(s, seed, t) for s in ("aloe", "random") for seed in (0, 1) for t in range(4)]
    assert [int(r["n_labeled"]) for r in rows[:4]] == [5, 10, 15, 20]
    assert float(rows[0]["select_seconds"]) == 0 and all(float(r["select_seconds"]) > 0 for r in rows[1:4])
    settings = json.loads((finished / "simulation.json").read_text())
    assert settings["n_classes"] == 8 and settings["n_items"] == 197 and settings["n_test"] == 80


@pytest.mark.parametrize(("strategy", "seed"), [("aloe", 0), ("random", 1)])
def test_metric_values_match_an_independent_computation(finished, pool_npz, strategy, seed):
    data = np.load(pool_npz)
    classes = data["classes"]
    truth = dict(zip(data["ids"], classes[data["labels"]], strict=True))
    test_labels = classes[data["test_labels"]]
    ledger = Ledger(finished / strategy / f"seed-{seed}" / "ledger.csv")
    position = {item: i for i, item in enumerate(data["ids"])}
    _, rows = read_rows(finished / "metrics.csv")
    mine = [r for r in rows if r["strategy"] == strategy and int(r["seed"]) == seed]
    seen: set[str] = set()
    for t, row in enumerate(mine):
        labels = ledger.labels(up_to_round=t)
        assert all(truth[i] == label for i, label in labels.items())  # the oracle told the truth
        batch = {e.label for e in ledger.entries() if e.round == t}
        assert int(row["n_labeled"]) == len(labels)
        assert int(row["n_classes_discovered"]) == len(set(labels.values()))
        assert int(row["n_new_classes_in_batch"]) == len(batch - seen)
        seen |= set(labels.values())
        # the round's head, refit from its labeled set, decides the test predictions
        names = sorted(set(labels.values()))
        positions = [position[i] for i in labels]
        head = fit_linear_head(data["features"][positions], np.array([names.index(v) for v in labels.values()]),
                               len(names), config=LinearHeadConfig(C=2.0))
        predicted = np.array(names)[head_logits(head, data["test_features"]).argmax(1)]
        recalls = recall_score(test_labels, predicted, labels=classes, average=None, zero_division=0)
        known = np.isin(classes, names)
        assert float(row["balanced_accuracy"]) == pytest.approx(recalls.mean(), abs=1e-5)
        assert float(row["known_balanced_accuracy"]) == pytest.approx(recalls[known].mean(), abs=1e-5)


def _run_state(out, strategy="aloe", seed=1):
    """A run's ledger and metrics rows (without the timings, which differ between runs)."""
    run = out / strategy / f"seed-{seed}"
    _, rows = read_rows(run / "metrics.csv")
    return (run / "ledger.csv").read_text(), [{k: v for k, v in r.items() if k != "select_seconds"} for r in rows]


ONE_RUN = ["--strategy", "aloe", "--budget", "5", "--seeds", "1", "--head-c", "2", "--quiet"]


def test_every_round_has_a_selection_record_and_a_batch(finished, pool_npz):
    ids = np.load(pool_npz)["ids"]
    for strategy in ("aloe", "random"):
        run = finished / strategy / "seed-1"
        assert not (run / "store.zarr").exists()  # stores only on request
        ledger = Ledger(run / "ledger.csv")
        for t in range(3):
            attrs, arrays = read_selection_record(run / "selections" / f"{t:04d}.npz")
            assert attrs["strategy"] == strategy and attrs["budget"] == 5
            chosen = [e.id for e in ledger.entries() if e.round == t + 1]
            assert arrays["chosen_ids"].tolist() == chosen == ids[arrays["positions"]].tolist()
            assert [r["id"] for r in read_rows(run / f"batch-{t:04d}.csv")[1]] == chosen
            assert len(arrays["scores"]) == len(ids) and not set(chosen) & set(ledger.labels(up_to_round=t))
        assert not (run / "selections" / "0003.npz").exists()


@pytest.mark.filterwarnings("ignore:.*points for .* clusters")
def test_kept_stores_hold_each_round_and_reselect_to_the_same_batch(pool_npz, finished, tmp_path):
    out = tmp_path / "kept"
    assert run_cli(simulate_command, ["--features", str(pool_npz), "--out", str(out), *ONE_RUN, "--rounds", "3",
                                      "--keep-stores"]) == 0
    assert _run_state(out) == _run_state(finished)  # keeping stores changes nothing
    run = out / "aloe" / "seed-1"
    store = open_store(run / "store.zarr")
    ledger = Ledger(run / "ledger.csv")
    assert store.rounds() == [0, 1, 2, 3] and not store.selections(3)
    for t in range(3):
        r = store.round(t)
        assert sorted(store.ids[r.labeled_positions]) == sorted(ledger.labels(up_to_round=t))
        (name,) = store.selections(t)
        attrs, arrays = store.read_selection(t, name)
        again = run_select(open_store(run / "store.zarr", mode="a"), SelectConfig(**attrs["request"]),
                           tmp_path / "again.csv", round=t, name="again")
        assert again.arrays["chosen_ids"].tolist() == arrays["chosen_ids"].tolist()
        assert arrays["chosen_ids"].tolist() == [e.id for e in ledger.entries() if e.round == t + 1]


def test_jobs_give_the_same_results_as_one_process(pool_npz, finished, tmp_path):
    out = tmp_path / "jobs"
    assert simulate(pool_npz, out, "--jobs", "2") == 0
    _, rows = read_rows(out / "metrics.csv")
    _, alone = read_rows(finished / "metrics.csv")
    untimed = [[{k: v for k, v in r.items() if k != "select_seconds"} for r in table] for table in (rows, alone)]
    assert untimed[0] == untimed[1] and len(rows) == 16
    for strategy in ("aloe", "random"):
        for seed in (0, 1):
            here, there = (d / strategy / f"seed-{seed}" for d in (out, finished))
            assert (here / "ledger.csv").read_text() == (there / "ledger.csv").read_text()
            assert (here / "batch-0002.csv").read_text() == (there / "batch-0002.csv").read_text()


def test_more_rounds_extend_and_match_an_uninterrupted_run(pool_npz, finished, tmp_path):
    out = tmp_path / "run"
    assert run_cli(simulate_command, ["--features", str(pool_npz), "--out", str(out), *ONE_RUN, "--rounds", "1"]) == 0
    assert Ledger(out / "aloe" / "seed-1" / "ledger.csv").last_round() == 1
    assert run_cli(simulate_command, ["--features", str(pool_npz), "--out", str(out), *ONE_RUN, "--rounds", "3"]) == 0
    assert _run_state(out) == _run_state(finished)


def test_a_killed_simulation_resumes_where_it_stopped(pool_npz, tmp_path):
    """Killed after round 2 of 12 (ten rounds of slack, so a busy machine cannot finish the run before
    the kill lands), then rerun: the same ledger and metrics as an uninterrupted run."""
    rounds = 12
    argv = [*ONE_RUN, "--features", str(pool_npz), "--rounds", str(rounds)]
    out, uninterrupted = tmp_path / "run", tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen([sys.executable, "-c", "from aloe.cli import main; main()", "simulate", *argv,
                                "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = Ledger(out / "aloe" / "seed-1" / "ledger.csv")
    kill_when(process, lambda: (ledger.last_round() or 0) >= 2)
    # rounds can land between the check and the kill; the run is unfinished while metrics.csv is missing
    assert 2 <= ledger.last_round() < rounds and not (out / "metrics.csv").exists(), "not killed mid-run"
    assert run_cli(simulate_command, [*argv, "--out", str(out)]) == 0
    assert run_cli(simulate_command, [*argv, "--out", str(uninterrupted)]) == 0
    assert Ledger(out / "aloe" / "seed-1" / "ledger.csv").last_round() == rounds
    assert _run_state(out) == _run_state(uninterrupted)


def test_ctrl_c_on_parallel_runs_starts_no_queued_run(pool_npz, tmp_path):
    """12 runs in 2 processes, Ctrl-C (SIGINT to the process group, as a terminal sends it) once the
    first round is written: the running runs stop and the queued ones never start."""
    out = tmp_path / "run"
    argv = ["simulate", "--features", str(pool_npz), "--out", str(out), "--budget", "5", "--rounds", "30",
            "--seeds", "0,1,2,3,4,5", "--strategy", "aloe", "--strategy", "random", "--jobs", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen([sys.executable, "-c", "from aloe.cli import main; main()", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def a_round_written() -> bool:
        return any((Ledger(path).last_round() or 0) >= 1 for path in out.glob("*/seed-*/ledger.csv"))

    kill_when(process, a_round_written, sig=signal.SIGINT, group=True)
    assert process.returncode != 0 and not (out / "metrics.csv").exists()
    assert len(list(out.glob("*/seed-*"))) <= 2  # only the runs the two workers had begun


def test_a_rerun_with_other_settings_is_refused(pool_npz, finished, capsys):
    assert simulate(pool_npz, finished, "--initial", "7") == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "use another --out" in err


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    np.savez(tmp_path / "nolabels.npz", features=np.zeros((4, 2)))
    assert run_cli(simulate_command, ["--features", str(tmp_path / "nolabels.npz"), "--out", str(tmp_path / "o")]) == 2
    assert "missing array(s) ['labels']" in capsys.readouterr().err
    assert run_cli(simulate_command, ["--features", "missing.npz", "--out", str(tmp_path / "o")]) == 2
    assert "features file not found" in capsys.readouterr().err
    assert run_cli(simulate_command, ["--features", "x.npz", "--out", "o", "--seeds", "a"]) == 2


def test_more_bad_inputs_are_one_line_errors_that_leave_nothing(pool_npz, tmp_path, capsys):
    def refused(argv: list[str]) -> str:
        assert run_cli(simulate_command, argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and err.count("\n") == 1, err
        return err

    out = tmp_path / "o"
    assert "--seeds" in refused(["--features", str(pool_npz), "--out", str(out), "--seeds", "0,-1"])
    assert "--budget" in refused(["--features", str(pool_npz), "--out", str(out), "--budget", "-1"])
    assert "not both" in refused(["--features", str(pool_npz), "--config", "embed.yaml", "--out", str(out)])
    (tmp_path / "empty.npz").write_bytes(b"")
    assert "not an npz file" in refused(["--features", str(tmp_path / "empty.npz"), "--out", str(out)])
    assert not out.exists()
    (tmp_path / "a-file").write_text("kept")
    assert "is a file" in refused(["--features", str(pool_npz), "--out", str(tmp_path / "a-file")])
    assert "not a directory" in refused(["--features", str(pool_npz), "--out", str(tmp_path / "a-file" / "o")])
    assert "labels the whole pool" in refused(["--features", str(pool_npz), "--out", str(out), "--initial", "100000"])
    assert not out.exists()
    assert (tmp_path / "a-file").read_text() == "kept"


def test_a_damaged_settings_file_is_refused_and_kept(pool_npz, tmp_path, capsys):
    out = tmp_path / "o"
    assert simulate(pool_npz, out, "--rounds", "1", "--seeds", "0", "--strategy", "random") == 0
    settings = out / "simulation.json"
    settings.write_text(settings.read_text()[:20])
    for run in (lambda: simulate(pool_npz, out), lambda: run_cli(report_command, [str(out)])):
        assert run() == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and "simulation.json is damaged" in err
    assert len(settings.read_text()) == 20 and not (out / "report.md").exists()


def test_the_threshold_option_reaches_the_selector_and_the_report(pool_npz, tmp_path):
    out = tmp_path / "o"
    assert simulate(pool_npz, out, "--rounds", "1", "--seeds", "0", "--strategy", "aloe",
                    "--threshold", "in_sample") == 0
    assert json.loads((out / "simulation.json").read_text())["resume_key"]["select"]["threshold"] == "in_sample"
    attrs, _ = read_selection_record(out / "aloe" / "seed-0" / "selections" / "0000.npz")
    assert attrs["params"]["threshold"] == "in_sample"
    assert run_cli(report_command, [str(out)]) == 0
    assert "threshold in_sample" in (out / "report.md").read_text()


def test_unknown_strategies_are_refused_before_any_work(pool_npz, tmp_path, capsys):
    out = tmp_path / "o"
    assert run_cli(simulate_command, ["--features", str(pool_npz), "--out", str(out), "--strategy", "nope"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err and not out.exists()


def test_progress_shows_rounds_items_per_second_and_time_left(pool_npz, tmp_path, capsys):
    argv = ["--features", str(pool_npz), "--out", str(tmp_path / "o"), "--strategy", "random",
            "--budget", "5", "--rounds", "1", "--seeds", "0", "--head-c", "2"]
    assert run_cli(simulate_command, argv) == 0
    err = capsys.readouterr().err
    assert "random seed 0" in err and "2/2" in err and "items/s" in err and "<00:00" in err
    assert run_cli(simulate_command, [*argv, "--rounds", "2", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_run_stops_when_the_pool_is_all_labeled_and_says_so(pool_npz, tmp_path, capsys):
    argv = ["--features", str(pool_npz), "--out", str(tmp_path / "o"), "--strategy", "aloe", "--initial", "190",
            "--budget", "5", "--rounds", "4", "--seeds", "0", "--head-c", "2", "--quiet"]
    assert run_cli(simulate_command, argv) == 0
    _, rows = read_rows(tmp_path / "o" / "metrics.csv")
    assert [(int(r["round"]), int(r["n_labeled"])) for r in rows] == [(0, 190), (1, 195), (2, 197)]
    assert "note: aloe seed 0 labeled the whole pool (197 items) after round 2 of 4" in capsys.readouterr().out
    assert run_cli(simulate_command, argv) == 0  # a rerun has nothing left to do
    assert read_rows(tmp_path / "o" / "metrics.csv")[1] == rows
