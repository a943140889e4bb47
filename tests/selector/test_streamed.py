"""The streamed (out-of-core) selection and ``aloe-select`` under ``torchrun`` with 2 gloo ranks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rank_helpers import run_ranks
from selector_helpers import build_view

from aloe.internal.cli import run_cli
from aloe.internal.dist import Comm
from aloe.selector.cli import cli
from aloe.selector.config import SelectConfig
from aloe.selector.lloyd import faiss_permutation_head
from aloe.selector.select import select_round
from aloe.store import create_store, open_store

REPO = Path(__file__).resolve().parents[2]


def _write_store(path: Path, view, chunk_rows: int = 64, features=None) -> Path:
    store = create_store(path, view.ids)
    writer = store.begin_round(
        0,
        feature_dim=view.features.shape[1],
        class_names=list(view.class_names),
        labeled_positions=view.labeled_positions,
        labeled_classes=view.labeled_classes,
        feature_dtype="float32",
        chunk_rows=chunk_rows,
    )
    writer.write(view.features if features is None else features, view.logits)
    writer.commit()
    return path


@pytest.fixture(scope="module")
def pool_store(tmp_path_factory):
    """About 1,000 items in 12 well-separated classes (4 known, 20 labels), 64-row chunks."""
    view, _ = build_view(n0=200, spread=0.05, seed=1)
    return _write_store(tmp_path_factory.mktemp("streamed") / "pool.zarr", view), view


@given(n=st.integers(0, 5000), world=st.integers(1, 9), align=st.integers(1, 700))
def test_rank_row_ranges_tile_the_rows_in_whole_chunks(n, world, align):
    ranges = [Comm(rank=r, world=world).row_range(n, align) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (_, stop), (start, _) in zip(ranges, ranges[1:], strict=False):
        assert stop == start
    assert all(start % align == 0 or start == n for start, _ in ranges)
    sizes = [-(-(stop - start) // align) for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


@given(n=st.integers(1, 3000), count=st.integers(1, 3000), seed=st.integers(0, 2**31 - 2))
def test_permutation_head_is_faiss_rand_perm(n, count, seed):
    import faiss

    perm = np.empty(n, dtype=np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed)
    np.testing.assert_array_equal(faiss_permutation_head(n, count, seed), perm[: min(n, count)])


@pytest.mark.parametrize("score", ["msp", "knn", "msp+knn"])
@pytest.mark.parametrize("strategy", ["aloe", "ood"])
def test_streamed_selection_equals_the_in_memory_one(pool_store, strategy, score):
    path, _ = pool_store
    store = open_store(path)
    config = {"budget": 10, "strategy": strategy, "seed": 4, "score": score}
    in_memory = select_round(store, 0, SelectConfig(**config, stream="never"))
    streamed = select_round(store, 0, SelectConfig(**config, stream="always"))
    np.testing.assert_array_equal(streamed.positions, in_memory.positions)
    np.testing.assert_array_equal(streamed.scores, in_memory.scores)
    assert streamed.tau == in_memory.tau
    if strategy == "aloe":
        assert np.mean(streamed.clusters == in_memory.clusters) > 0.99
    assert any("streamed from the store" in note for note in streamed.notes)
    assert not any("streamed" in note for note in in_memory.notes)


def test_kmeans_sample_trains_on_the_sample_faiss_would_draw_and_assigns_everything(pool_store):
    path, view = pool_store
    store = open_store(path)
    k = 2 * max(10, 4)
    sampled = select_round(store, 0, SelectConfig(budget=10, seed=2, kmeans_sample=k * 10))
    faiss_capped = select_round(
        store, 0, SelectConfig(budget=10, seed=2, stream="never", backend="faiss", max_points_per_centroid=10)
    )
    np.testing.assert_array_equal(sampled.positions, faiss_capped.positions)
    assert np.all(sampled.clusters[view.unlabeled_positions] >= 0)
    assert f"trained on {k * 10} sampled points of {len(view.unlabeled_positions)}" in sampled.notes


def test_cli_records_the_sample_and_refuses_what_cannot_stream(pool_store, tmp_path, capsys):
    path, _ = pool_store
    out = tmp_path / "b.csv"
    argv = ["--store", str(path), "--budget", "6", "--out", str(out), "--kmeans-sample", "200", "--name", "s"]
    assert run_cli(cli, argv) == 0
    attrs, _ = open_store(path).read_selection(0, "s")
    assert attrs["request"]["kmeans_sample"] == 200
    assert any("sample of 200" in note for note in attrs["notes"])
    capsys.readouterr()
    assert run_cli(cli, [*argv[:6], "--kmeans-sample", "200", "--stream", "never", "--name", "t"]) == 2
    assert "must stream from the store" in capsys.readouterr().err
    assert run_cli(cli, [*argv[:6], "--strategy", "coreset", "--stream", "always", "--name", "u"]) == 2
    assert "runs in one process, in memory" in capsys.readouterr().err


def test_cli_refuses_a_kmeans_sample_below_k_and_writes_nothing(pool_store, tmp_path, capsys):
    path, _ = pool_store
    out = tmp_path / "b.csv"
    before = len(open_store(path).selections(0))
    argv = ["--store", str(path), "--budget", "50", "--out", str(out), "--kmeans-sample", "60", "--name", "few"]
    assert run_cli(cli, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --kmeans-sample 60 is below the 100 clusters") and err.count("\n") == 1
    assert "--kmeans-sample 100 or more" in err and "Traceback" not in err
    assert len(open_store(path).selections(0)) == before and not out.exists()
    assert run_cli(cli, [*argv[:7], "100", "--name", "enough"]) == 0


def test_streamed_names_the_first_nonfinite_row(tmp_path, capsys):
    view, _ = build_view()
    features = view.features.copy()
    features[150, 3] = np.nan
    path = _write_store(tmp_path / "nan.zarr", view, features=features)
    code = run_cli(cli, ["--store", str(path), "--budget", "5", "--out", str(tmp_path / "b.csv"), "--stream", "always"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"first: row 150 (id '{view.ids[150]}')" in err
    assert open_store(path).selections(0) == []


def test_two_gloo_ranks_under_torchrun_give_the_one_process_batch(pool_store, tmp_path):
    path, _ = pool_store
    one = tmp_path / "one.csv"
    assert run_cli(cli, ["--store", str(path), "--budget", "8", "--seed", "3", "--out", str(one), "--name", "one"]) == 0
    two = tmp_path / "two.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "aloe.selector.cli", "--store", str(path), "--budget", "8", "--seed", "3",
               "--out", str(two), "--name", "two"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sharded over 2 ranks" in done.stdout
    assert done.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    assert two.read_text() == one.read_text()
    store = open_store(path)
    _, arrays_one = store.read_selection(0, "one")
    _, arrays_two = store.read_selection(0, "two")
    np.testing.assert_array_equal(arrays_two["scores"], arrays_one["scores"])
    assert np.mean(arrays_two["clusters"] == arrays_one["clusters"]) > 0.99


@pytest.mark.parametrize("differs", ["seed", "store"])
def test_ranks_started_with_different_arguments_all_refuse_in_one_line(pool_store, tmp_path, differs):
    """Rank 1 alone gets --seed 5, or another --store: every rank names the setting and nothing is written."""
    path, _ = pool_store
    before = open_store(path).selections(0)
    argv = ["--store", str(path), "--budget", "20", "--out", str(tmp_path / "b.csv")]
    other = tmp_path / "other.zarr"
    odd = [*argv, "--seed", "5"] if differs == "seed" else [*argv[:1], str(other), *argv[2:]]
    ranks = run_ranks("aloe.selector.cli", argv, odd)
    for done in ranks:
        assert done.returncode == 2, done.stderr[-3000:]
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith(f"error: the ranks were started with different settings: {differs} is ")
        assert "on rank 0 but" in done.stderr and "on rank 1" in done.stderr
    if differs == "seed":
        assert "seed is 0 on rank 0 but 5 on rank 1" in ranks[0].stderr
    else:
        assert "(absent)" in ranks[0].stderr and not other.exists()
    assert open_store(path).selections(0) == before and not (tmp_path / "b.csv").exists()


def test_round_blocks_cover_a_row_range_in_the_stored_dtype(pool_store):
    path, view = pool_store
    reader = open_store(path).round(0)
    blocks = list(reader.iter_blocks(64, start=100, stop=300, dtype=None))
    assert [start for start, *_ in blocks] == [100, 164, 228, 292]
    np.testing.assert_array_equal(np.concatenate([f for _, f, _ in blocks]), view.features[100:300])
    np.testing.assert_array_equal(np.concatenate([z for *_, z in blocks]), view.logits[100:300])
