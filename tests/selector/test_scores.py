"""OOD scores: GradNorm against autograd, orientation properties, knn against brute force, the rank mix, fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from aloe.errors import AloeError
from aloe.selector.scores import (
    LOGIT_SCORES,
    KnnScorer,
    compute_scores,
    energy,
    gradnorm,
    knn_scores,
    maxlogit,
    msp,
    rank_mix,
)
from aloe.selector.view import RoundView


def _autograd_gradnorm(head: torch.nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """Huang et al. (2021): per example, L1 norm of d KL(uniform || softmax(head(h))) / d weight."""
    norms = []
    for h in features:
        head.zero_grad()
        log_probs = torch.log_softmax(head(h[None]), dim=1)
        uniform = torch.full_like(log_probs, 1.0 / head.out_features)
        torch.nn.functional.kl_div(log_probs, uniform, reduction="sum").backward()
        norms.append(head.weight.grad.abs().sum())
    return torch.stack(norms)


@pytest.mark.parametrize("n_classes", [2, 5, 17])
def test_gradnorm_is_minus_the_autograd_l1_weight_gradient(n_classes):
    torch.manual_seed(n_classes)
    head = torch.nn.Linear(24, n_classes).double()
    features = torch.randn(40, 24, dtype=torch.float64) * torch.rand(40, 1, dtype=torch.float64) * 3
    expected = _autograd_gradnorm(head, features)
    with torch.no_grad():
        closed = gradnorm(features, head(features)).double()
    torch.testing.assert_close(closed, -expected, rtol=1e-5, atol=1e-6)


def test_gradnorm_differs_from_design_formula_only_by_the_factor_c():
    torch.manual_seed(0)
    h, z = torch.randn(8, 6), torch.randn(8, 4)
    design = -(h.abs().sum(1) * (4 * torch.softmax(z, 1) - 1).abs().sum(1))
    torch.testing.assert_close(gradnorm(h, z) * 4, design)


finite = st.floats(-20, 20, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (6, 5), elements=finite), st.floats(0.125, 10, width=32))
def test_adding_confidence_lowers_every_logit_score(logits, boost):
    """Raising an item's top logit makes it look more known: no score may go up."""
    features = torch.ones(6, 3)
    z = torch.from_numpy(logits.copy())
    top = z.argmax(dim=1)
    z2 = z.clone()
    z2[torch.arange(6), top] += boost
    for name, function in LOGIT_SCORES.items():
        assert (function(features, z2) <= function(features, z) + 1e-5).all(), name


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (6, 4), elements=finite), st.floats(1.5, 10, width=32))
def test_larger_features_look_more_known_under_gradnorm(logits, scale):
    z = torch.from_numpy(logits.copy())
    h = torch.ones(6, 3)
    assert (gradnorm(h * scale, z) <= gradnorm(h, z) + 1e-6).all()


def test_uniform_logits_are_the_most_unknown():
    z = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    h = torch.ones(2, 4)
    for function in (gradnorm, energy, msp, maxlogit):
        scores = function(h, z)
        assert scores[0] > scores[1]
    assert gradnorm(h, z)[0] == 0.0


def test_knn_matches_brute_force_with_leave_one_out_and_blocks():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((50, 8)).astype(np.float32)
    labeled = np.array([3, 7, 20, 41])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    dist = np.linalg.norm(unit[:, None, :] - unit[None, labeled, :], axis=2)
    for k in (1, 2):
        expected = np.sort(dist, axis=1)[:, k - 1]
        for i, p in enumerate(labeled):  # leave-one-out: drop the item itself
            expected[p] = np.sort(np.delete(dist[p], i))[k - 1]
        got = knn_scores(features, labeled, k=k, block_rows=7)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [1, 3])
def test_knn_on_torch_matches_faiss_in_row_slices(k, monkeypatch):
    """The GPU path (torch matrix products) on the CPU: the same scores as the FAISS index, also
    when a block is cut into several row slices and for a zero row."""
    import aloe.selector.scores as scores

    rng = np.random.default_rng(1)
    features = rng.standard_normal((60, 8)).astype(np.float32)
    features[5] = 0.0
    labeled = np.array([2, 9, 17, 30, 44])
    is_labeled = np.isin(np.arange(60), labeled)
    expected = KnnScorer(features[labeled], k).block(features, is_labeled)
    monkeypatch.setattr(scores, "KNN_MATMUL_ELEMENTS", 7 * len(labeled))  # slices of 7 rows
    on_torch = KnnScorer(features[labeled], k, device="cpu")
    assert on_torch.device == torch.device("cpu") and not hasattr(on_torch, "index")
    got = on_torch.block(features, is_labeled)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("device", [None, "cpu"])  # FAISS, and the torch path the GPU takes
def test_knn_ties_are_exact_and_do_not_depend_on_the_thread_count(device):
    """Two labels that are each other's nearest, and duplicate rows, get bit-equal scores; so do all
    rows whatever the thread count (BLAS rounds a matrix product differently as it splits it)."""
    import faiss

    rng = np.random.default_rng(3)
    features = rng.standard_normal((3000, 48)).astype(np.float32)
    labeled = np.arange(0, 3000, 7)
    is_labeled = np.isin(np.arange(3000), labeled)
    unlabeled = np.flatnonzero(~is_labeled)
    copies, originals = unlabeled[-100:], unlabeled[:100]
    features[copies] = features[originals]  # duplicate unlabeled rows
    before = faiss.omp_get_max_threads()
    try:
        by_threads = []
        for threads in (1, 2):
            faiss.omp_set_num_threads(threads)
            torch.set_num_threads(threads)
            by_threads.append(KnnScorer(features[labeled], 1, device=device).block(features, is_labeled))
    finally:
        faiss.omp_set_num_threads(before)
        torch.set_num_threads(before)
    one, two = by_threads
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one[copies], one[originals])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    inner = unit[labeled] @ unit[labeled].T
    np.fill_diagonal(inner, -np.inf)
    nearest = inner.argmax(axis=1)
    mutual = [(a, b) for a, b in enumerate(nearest) if nearest[b] == a and a < b]
    assert mutual, "the pool should hold labels that are each other's nearest"
    for a, b in mutual:
        assert one[labeled[a]] == one[labeled[b]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_knn_on_cuda_matches_the_cpu():
    view = _view(3)
    on_gpu = compute_scores(view, "knn", device="cuda").scores
    np.testing.assert_allclose(on_gpu, compute_scores(view, "knn").scores, rtol=1e-4, atol=1e-3)


def test_knn_with_one_labeled_item_and_none():
    features = np.eye(4, dtype=np.float32)
    scores = knn_scores(features, np.array([0]))
    assert scores[0] == 0.0 and np.allclose(scores[1:], np.sqrt(2), atol=1e-5)
    with pytest.raises(AloeError, match="at least one labeled"):
        knn_scores(features, np.array([], dtype=np.int64))


def _view(n_classes: int) -> RoundView:
    rng = np.random.default_rng(1)
    n = 30
    return RoundView(
        ids=[f"i{i}" for i in range(n)],
        features=rng.standard_normal((n, 5)),
        logits=rng.standard_normal((n, n_classes)),
        labeled_positions=[0, 1, 2],
        labeled_classes=[0, 0, 0],
        class_names=[f"c{i}" for i in range(n_classes)],
    )


def test_blocked_scores_equal_one_block_and_fallback_is_recorded():
    view = _view(3)
    whole = compute_scores(view, "energy", block_rows=1000)
    blocked = compute_scores(view, "energy", block_rows=4)
    np.testing.assert_allclose(whole.scores, blocked.scores, rtol=1e-6)
    assert whole.name == "energy" and not whole.notes
    fallback = compute_scores(_view(1), "gradnorm")
    assert fallback.name == "knn" and "knn" in fallback.notes[0]
    with pytest.raises(AloeError, match="unknown score"):
        compute_scores(view, "odin")


def _naive_percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Average rank (1-based, ties share it) over N, by comparing every pair."""
    below = (values[None, :] < values[:, None]).sum(axis=1)
    equal = (values[None, :] == values[:, None]).sum(axis=1)
    return (below + (equal + 1) / 2.0) / len(values)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float32, st.integers(1, 40), elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.5])),
    st.randoms(use_true_random=False),
)
def test_rank_mix_is_the_mean_percentile_rank_and_monotone(first, random):
    second = np.array([random.choice([0.1, 0.2, 0.3]) for _ in first], dtype=np.float32)
    mixed = rank_mix(first, second)
    expected = (_naive_percentile_ranks(first) + _naive_percentile_ranks(second)) / 2
    np.testing.assert_allclose(mixed, expected, rtol=1e-6)
    assert ((mixed > 0) & (mixed <= 1)).all()
    dominates = (first[:, None] >= first[None, :]) & (second[:, None] >= second[None, :])
    assert (mixed[:, None] >= mixed[None, :] - 1e-7)[dominates].all()  # more unknown on both: not lower


def test_msp_knn_is_the_rank_mix_of_its_parts():
    view = _view(3)
    mixed = compute_scores(view, "msp+knn", block_rows=5)
    parts = [compute_scores(view, name).scores for name in ("msp", "knn")]
    assert mixed.name == "msp+knn" and not mixed.notes
    np.testing.assert_array_equal(mixed.scores, rank_mix(*parts))
    fallback = compute_scores(_view(1), "msp+knn")
    assert fallback.name == "knn" and "msp+knn needs >= 2 known classes" in fallback.notes[0]
