"""The shared template every registered strategy passes, plus checks of coreset and badge."""

from __future__ import annotations

import numpy as np
import pytest
from selector_helpers import build_view

from aloe.errors import AloeError
from aloe.selector.baselines import select_badge, select_coreset
from aloe.selector.config import SelectParams
from aloe.selector.strategies import STRATEGIES, run_strategy
from aloe.selector.view import RoundView

ALL = sorted(STRATEGIES)


def _check_batch(view: RoundView, positions: np.ndarray, budget: int) -> None:
    assert positions.dtype == np.int64
    assert len(positions) == budget
    assert len(np.unique(positions)) == budget
    assert not np.isin(positions, view.labeled_positions).any()
    assert positions.min() >= 0 and positions.max() < view.n_items


@pytest.mark.parametrize("name", ALL)
def test_exactly_budget_unique_unlabeled_items(small_view, name):
    selection = run_strategy(small_view, name, 17, seed=3)
    _check_batch(small_view, selection.positions, 17)
    assert selection.strategy == name
    assert selection.timings["total"] > 0


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_batch(small_view, name):
    first = run_strategy(small_view, name, 12, seed=5).positions
    again = run_strategy(small_view, name, 12, seed=5).positions
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", ALL)
def test_budget_covering_the_pool_returns_every_unlabeled_item(small_view, name):
    n_unlabeled = len(small_view.unlabeled_positions)
    for budget in (n_unlabeled, n_unlabeled + 10):
        selection = run_strategy(small_view, name, budget, seed=0)
        np.testing.assert_array_equal(np.sort(selection.positions), small_view.unlabeled_positions)
        assert any("took them all" in note for note in selection.notes)


@pytest.mark.parametrize("name", ALL)
def test_zero_known_classes_is_a_recorded_cold_start(name):
    view, _ = build_view(n_known=0)
    selection = run_strategy(view, name, 9, seed=1)
    _check_batch(view, selection.positions, 9)
    assert selection.scores is None and selection.tau is None
    if STRATEGIES[name].needs_labels:
        assert any("cold start" in note for note in selection.notes)


@pytest.mark.parametrize("name", ALL)
def test_one_known_class_is_handled_and_scored_by_knn(name):
    view, _ = build_view(n_known=1, per_class=6)
    selection = run_strategy(view, name, 9, seed=1)
    _check_batch(view, selection.positions, 9)
    assert selection.score_name == "knn"
    assert any("knn" in note for note in selection.notes)


@pytest.mark.parametrize("name", ALL)
def test_every_selection_carries_scores_tau_and_flags(small_view, name):
    selection = run_strategy(small_view, name, 10, seed=0)
    assert selection.scores.shape == (small_view.n_items,)
    assert selection.flagged.dtype == bool
    np.testing.assert_array_equal(selection.flagged, selection.scores > selection.tau)


@pytest.mark.parametrize("budget", [0, -3])
def test_non_positive_budget_is_an_error(small_view, budget):
    with pytest.raises(AloeError, match="budget"):
        run_strategy(small_view, "aloe", budget)


@pytest.mark.parametrize("seed", [-1, 2**31])
def test_seed_out_of_range_is_an_error(small_view, seed):
    with pytest.raises(AloeError, match="seed"):
        run_strategy(small_view, "aloe", 3, seed)


def test_unknown_strategy_and_fully_labeled_pool_are_errors(small_view):
    with pytest.raises(AloeError, match="unknown strategy"):
        run_strategy(small_view, "nope", 3)
    full = RoundView(small_view.ids[:4], small_view.features[:4], small_view.logits[:4], [0, 1, 2, 3],
                     [0, 1, 0, 1], small_view.class_names)
    with pytest.raises(AloeError, match="nothing left"):
        run_strategy(full, "random", 1)


def _naive_k_center(points: np.ndarray, centres: list[int], candidates: np.ndarray, budget: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(budget):
        taken = centres + chosen
        dist = ((points[candidates, None, :] - points[None, taken, :]) ** 2).sum(-1).min(axis=1)
        dist[np.isin(candidates, chosen)] = -1
        chosen.append(int(candidates[np.argmax(dist)]))
    return chosen


@pytest.mark.parametrize("normalize", [True, False])
def test_coreset_matches_a_naive_k_center_greedy(small_view, normalize):
    params = SelectParams(normalize=normalize)
    selection = select_coreset(small_view, 8, 0, params)
    points = small_view.features.astype(np.float64)
    if normalize:
        points = points / np.linalg.norm(points, axis=1, keepdims=True)
    expected = _naive_k_center(points, list(small_view.labeled_positions), small_view.unlabeled_positions, 8)
    np.testing.assert_array_equal(selection.positions, expected)


def _naive_badge(view: RoundView, budget: int, seed: int) -> np.ndarray:
    """BADGE with the explicit N x (C*D) gradient embeddings, in float64."""
    unlabeled = view.unlabeled_positions
    z = view.logits[unlabeled].astype(np.float64)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    probs[np.arange(len(z)), probs.argmax(axis=1)] -= 1.0
    g = (probs[:, :, None] * view.features[unlabeled, None, :].astype(np.float64)).reshape(len(z), -1)
    rng = np.random.default_rng(seed)
    chosen = [int(np.argmax((g**2).sum(axis=1)))]
    while len(chosen) < budget:
        d2 = ((g[:, None, :] - g[None, chosen, :]) ** 2).sum(-1).min(axis=1)
        d2[chosen] = 0.0
        chosen.append(int(rng.choice(len(g), p=d2 / d2.sum())))
    return unlabeled[chosen]


@pytest.mark.parametrize("seed", [0, 4])
def test_badge_matches_explicit_gradient_embeddings(small_view, seed):
    selection = select_badge(small_view, 10, seed, SelectParams())
    np.testing.assert_array_equal(selection.positions, _naive_badge(small_view, 10, seed))


@pytest.mark.parametrize("name", ALL)
def test_excluded_items_are_never_chosen(small_view, name):
    """Rows of images the embedder could not read are not candidates, whatever the strategy."""
    candidates = small_view.unlabeled_positions
    excluded = candidates[::3]
    view = RoundView(
        ids=small_view.ids, features=small_view.features, logits=small_view.logits,
        labeled_positions=small_view.labeled_positions, labeled_classes=small_view.labeled_classes,
        class_names=small_view.class_names, excluded_positions=excluded,
    )
    positions = run_strategy(view, name, 20, seed=2).positions
    _check_batch(view, positions, 20)
    assert not np.isin(positions, excluded).any()
    everything = run_strategy(view, name, len(candidates), seed=2).positions
    np.testing.assert_array_equal(np.sort(everything), np.setdiff1d(candidates, excluded))
