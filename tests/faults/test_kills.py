"""Kill aloe-embed, aloe-select, aloe labels import and aloe simulate at many points, then check
the store, rerun, and compare with an uninterrupted run.

Each command first runs uninterrupted in a child that counts its write events (renames, array
writes, files opened for writing) and times itself: that run is the reference. Then, per seed,
a fresh copy of the starting state is killed with SIGKILL either just before a seeded random
write event or after a seeded random delay within the reference's running time. Every published
node must still read back (``aloe store info`` and ``aloe store check`` exit 0), and the same
command rerun must finish with the reference's result.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import numpy as np
import pytest

from aloe.loop.ledger import ledger_path_for
from aloe.store import open_store

from .conftest import (
    ALOE,
    EMBED,
    SELECT,
    ChildRun,
    copy_run,
    embed_argv,
    run_child,
    run_here,
    select_argv,
)

KILLS = [("event", 1), ("event", 2), ("delay", 3)]  # (how, seed)
KILLED = -signal.SIGKILL


def kill_point(how: str, seed: int, reference) -> float:
    rng = np.random.default_rng(seed)
    if how == "event":
        return int(rng.integers(1, reference.events + 1))
    return float(rng.uniform(0, reference.seconds))


def assert_store_sound(store: Path) -> None:
    """``aloe store info`` and ``aloe store check`` both succeed (if the store was created at all)."""
    if not store.exists():
        return
    assert run_here(ALOE, ["store", "info", str(store)]) == 0
    assert run_here(ALOE, ["store", "check", str(store)]) == 0


def assert_same_round(store: Path, reference: Path, t: int = 0) -> None:
    got, want = open_store(store).round(t), open_store(reference).round(t)
    np.testing.assert_array_equal(got.features(), want.features())
    np.testing.assert_allclose(got.logits(), want.logits(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.labeled_positions, want.labeled_positions)
    assert got.class_names == want.class_names


REFERENCES: dict[str, tuple[Path, ChildRun]] = {}


def kill_and_rerun(tmp_path_factory, tmp_path, key, make_state, entry, argv_for, how, seed):
    """The uninterrupted reference run (once per ``key``) and a killed run; their directories."""
    if key not in REFERENCES:
        reference_dir = make_state(tmp_path_factory.mktemp("reference") / "run")
        reference = run_child(reference_dir, entry, argv_for(reference_dir))
        assert reference.returncode == 0, reference.stderr
        REFERENCES[key] = reference_dir, reference
    reference_dir, reference = REFERENCES[key]
    killed_dir = make_state(tmp_path / "killed")
    child = run_child(killed_dir, entry, argv_for(killed_dir), how, kill_point(how, seed, reference))
    assert child.returncode in (0, KILLED), child.stderr
    return reference_dir, killed_dir


def metrics_without_timings(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in csv.DictReader(handle)]


@pytest.mark.parametrize(("how", "seed"), KILLS)
@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_killed_embed_from_features(tmp_path_factory, tmp_path, inputs, suffix, how, seed):
    def state(run: Path) -> Path:
        run.mkdir()
        return run

    def argv(run: Path) -> list[str]:
        return embed_argv(inputs, run / f"pool{suffix}")

    reference, killed = kill_and_rerun(tmp_path_factory, tmp_path, f"embed{suffix}", state, EMBED, argv, how, seed)
    store = killed / f"pool{suffix}"
    assert_store_sound(store)
    if not store.exists() or open_store(store).rounds() != [0]:  # else it finished before the kill
        assert run_here(EMBED, argv(killed)) == 0
    assert open_store(store).rounds() == [0]
    assert_same_round(store, reference / f"pool{suffix}")
    assert_store_sound(store)


@pytest.mark.parametrize(("how", "seed"), KILLS)
@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_killed_select_with_overwrite(tmp_path_factory, tmp_path, embedded, suffix, how, seed):
    def argv(run: Path) -> list[str]:
        return select_argv(run / f"pool{suffix}", run / "next.csv")

    reference, killed = kill_and_rerun(
        tmp_path_factory, tmp_path, f"select{suffix}", lambda run: copy_run(embedded[suffix], run), SELECT, argv,
        how, seed,
    )
    store = killed / f"pool{suffix}"
    assert_store_sound(store)
    assert open_store(store).selections(0) == ["batch"]  # the old record or the new one, never none
    assert run_here(SELECT, argv(killed)) == 0
    got = open_store(store).read_selection(0, "batch")[1]
    want = open_store(reference / f"pool{suffix}").read_selection(0, "batch")[1]
    np.testing.assert_array_equal(got["chosen_ids"], want["chosen_ids"])
    assert (killed / "next.csv").read_text() == (reference / "next.csv").read_text()
    assert_store_sound(store)


@pytest.mark.parametrize(("how", "seed"), KILLS)
@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_killed_labels_import(tmp_path_factory, tmp_path, embedded, suffix, how, seed):
    def state(run: Path) -> Path:
        copy_run(embedded[suffix], run)
        batch = [line.split(",")[0] for line in (run / "batch.csv").read_text().splitlines()[1:]]
        (run / "answers.csv").write_text("id,label\n" + "".join(f"{i},{'abc'[n % 3]}\n" for n, i in enumerate(batch)))
        return run

    def argv(run: Path) -> list[str]:
        return ["labels", "import", str(run / "answers.csv"), "--batch", str(run / "batch.csv"),
                "--store", str(run / f"pool{suffix}")]

    reference, killed = kill_and_rerun(tmp_path_factory, tmp_path, f"labels{suffix}", state, ALOE, argv, how, seed)
    ledger = ledger_path_for(killed / f"pool{suffix}")
    before = ledger_path_for(embedded[suffix] / f"pool{suffix}").read_text()
    assert ledger.read_text() in (before, ledger_path_for(reference / f"pool{suffix}").read_text())
    assert_store_sound(killed / f"pool{suffix}")
    assert run_here(ALOE, argv(killed)) == 0
    assert ledger.read_text() == ledger_path_for(reference / f"pool{suffix}").read_text()


@pytest.mark.parametrize(("how", "seed"), KILLS)
def test_killed_simulate(tmp_path_factory, tmp_path, inputs, how, seed):
    def state(run: Path) -> Path:
        run.mkdir()
        return run

    def argv(run: Path) -> list[str]:
        return ["simulate", "--features", str(inputs / "sim.npz"), "--out", str(run / "sim"), "--strategy", "aloe",
                "--rounds", "2", "--seeds", "0", "--budget", "5", "--keep-stores", "--quiet"]

    reference, killed = kill_and_rerun(tmp_path_factory, tmp_path, "simulate", state, ALOE, argv, how, seed)
    for store in sorted((killed / "sim").glob("*/seed-*/store.zarr")):
        assert_store_sound(store)
    assert run_here(ALOE, argv(killed)) == 0
    assert metrics_without_timings(killed / "sim" / "metrics.csv") == metrics_without_timings(
        reference / "sim" / "metrics.csv"
    )
    run_store = Path("aloe", "seed-0", "store.zarr")
    for t in (0, 1, 2):
        assert_same_round(killed / "sim" / run_store, reference / "sim" / run_store, t)
    assert_store_sound(killed / "sim" / run_store)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_two_first_embeds_racing_on_one_new_store(tmp_path, inputs, suffix):
    import subprocess
    import sys

    from .conftest import KILLER, REPO

    store = tmp_path / f"pool{suffix}"
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    children = [
        subprocess.Popen([sys.executable, str(KILLER), str(tmp_path / f"r{i}.json"), "event", "0", EMBED,
                          *embed_argv(inputs, store)], env=env, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    results = [(child.wait(timeout=300), child.stderr.read()) for child in children]
    for code, err in results:
        assert code == 0 or (code == 2 and err.startswith("error: ") and err.count("\n") == 1), err
    assert any(code == 0 for code, _ in results)
    assert_store_sound(store)
    assert open_store(store).rounds() in ([0], [0, 1])
