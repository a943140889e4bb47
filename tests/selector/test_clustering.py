"""k-means: every point used, the small-cluster warning, seeding, blocked torch assignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aloe.errors import AloeError
from aloe.selector.clustering import FewPointsPerClusterWarning, kmeans, resolve_backend, torch_kmeans


def _blobs(n_per: int = 1500, k: int = 4, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)) * 10
    return (np.repeat(centres, n_per, axis=0) + rng.standard_normal((k * n_per, dim))).astype(np.float32)


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_every_point_trains_the_centroids_by_default(backend):
    """With stable, separated blobs each centroid is the mean of *all* its members; FAISS's default
    cap (256 points per centroid) would make it the mean of a sample."""
    x = _blobs()
    result = kmeans(x, 4, seed=0, backend=backend)
    for c in range(4):
        np.testing.assert_allclose(result.centroids[c], x[result.assignment == c].mean(axis=0), atol=2e-4)
    capped = kmeans(x, 4, seed=0, backend=backend, max_points_per_centroid=50)
    assert any("sampled points" in note for note in capped.notes)
    gaps = [np.abs(capped.centroids[c] - x[capped.assignment == c].mean(axis=0)).max() for c in range(4)]
    assert max(gaps) > 1e-2


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_same_seed_same_clusters_other_seed_other_start(backend):
    x = np.random.default_rng(1).standard_normal((800, 6)).astype(np.float32)
    a, b = kmeans(x, 20, seed=3, backend=backend), kmeans(x, 20, seed=3, backend=backend)
    np.testing.assert_array_equal(a.assignment, b.assignment)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    c = kmeans(x, 20, seed=4, backend=backend)
    assert not np.array_equal(a.centroids, c.centroids)


@pytest.mark.filterwarnings("ignore::aloe.selector.clustering.FewPointsPerClusterWarning")
def test_with_exactly_k_points_both_backends_number_the_clusters_by_point():
    """FAISS makes each point its own centroid, in order; the torch k-means must number them alike,
    since ALOE's cluster-id tie-break orders a batch whose clusters all tie."""
    x = np.random.default_rng(5).standard_normal((12, 4)).astype(np.float32)
    for backend in ("faiss", "torch"):
        for seed in (0, 7):
            np.testing.assert_array_equal(kmeans(x, 12, seed=seed, backend=backend).assignment, np.arange(12))


def test_warns_below_39_points_per_cluster():
    x = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
    with pytest.warns(FewPointsPerClusterWarning, match="fewer than 39"):
        result = kmeans(x, 5, backend="faiss")
    assert any("fewer than 39" in note for note in result.notes)


def test_torch_blocked_assignment_equals_one_block_and_matches_faiss_inertia():
    x = np.random.default_rng(2).standard_normal((3000, 16)).astype(np.float32)
    small = torch_kmeans(x, 30, seed=1, block_rows=97)
    large = torch_kmeans(x, 30, seed=1, block_rows=10_000)
    torch.testing.assert_close(small[0], large[0])
    torch.testing.assert_close(small[1], large[1])
    faiss_inertia = kmeans(x, 30, seed=1, backend="faiss").sq_distance.sum()
    assert abs(float(small[2].sum()) / faiss_inertia - 1) < 0.03
    np.testing.assert_allclose(
        small[2].numpy(), ((x - small[0].numpy()[small[1].numpy()]) ** 2).sum(1), rtol=1e-3, atol=1e-3
    )


def test_torch_reseeds_empty_clusters():
    x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)
    x = np.concatenate([x, np.full((1, 3), 5.0, dtype=np.float32)])
    _, assignment, _ = torch_kmeans(x, 4, seed=0, niter=10)
    assert len(np.unique(assignment.numpy())) == 4


def test_backend_resolution_and_bad_k():
    expected_auto = "torch" if torch.cuda.is_available() else "faiss"
    assert resolve_backend("auto") in (expected_auto, "faiss")
    assert resolve_backend("torch") == "torch"
    with pytest.raises(AloeError, match="backend"):
        resolve_backend("sklearn")
    with pytest.raises(AloeError, match="1 <= k <= n"):
        kmeans(np.zeros((3, 2), dtype=np.float32), 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_input_and_kmeans_match_the_host_and_repeat_exactly(small_view):
    from aloe.selector.rule import cluster_input, cuda_cluster_input

    positions = small_view.unlabeled_positions
    on_gpu = cuda_cluster_input(small_view, positions, True)
    np.testing.assert_allclose(on_gpu.cpu().numpy(), cluster_input(small_view, positions, True), atol=1e-6)
    first, again = torch_kmeans(on_gpu, 12, seed=2), torch_kmeans(on_gpu, 12, seed=2)
    assert first[0].is_cuda
    torch.testing.assert_close(first[0], again[0], rtol=0, atol=0)
    torch.testing.assert_close(first[1], again[1], rtol=0, atol=0)
