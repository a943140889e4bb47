"""The ALOE rule exactly as ``select_aloe`` documents it, checked against a plain re-implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from selector_helpers import build_view

from aloe.selector.config import SelectParams
from aloe.selector.rule import (
    best_member,
    pick_from_top_clusters,
    rank_clusters,
    select_aloe,
    select_kmeans,
    select_ood,
)
from aloe.selector.strategies import run_strategy
from aloe.selector.view import RoundView


def _naive_aloe_batch(clusters, scores, flagged, unlabeled, budget, per_cluster=2):
    """Loop over clusters: (ratio desc, top o desc, id asc); each of the top ``budget`` offers its
    ``per_cluster`` highest-o members; the batch is the ``budget`` highest-o offers, ordered by
    (pick, cluster rank), then the highest-o items left."""
    table = []
    for c in np.unique(clusters[unlabeled]):
        members = sorted(unlabeled[clusters[unlabeled] == c], key=lambda p: (-scores[p], p))
        ratio = flagged[members].sum() / len(members)
        table.append((-ratio, -float(scores[members[0]]), c, members))
    table.sort()
    offers = [(pick, rank, p) for rank, row in enumerate(table[:budget]) for pick, p in enumerate(row[3][:per_cluster])]
    taken = sorted(offers, key=lambda offer: (-scores[offer[2]], offer[2]))[:budget]
    batch = [p for _, _, p in sorted(taken)]
    rest = sorted((p for p in unlabeled if p not in batch), key=lambda p: (-scores[p], p))
    return np.array(batch + rest[: budget - len(batch)])


@pytest.mark.parametrize("per_cluster", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [5, 20])
def test_aloe_batch_is_the_rule_applied_to_its_own_record(seed, budget, per_cluster):
    view, _ = build_view(seed=seed)
    selection = select_aloe(view, budget, seed, SelectParams(per_cluster=per_cluster))
    assert selection.k == min(len(view.unlabeled_positions), 2 * max(budget, view.n_classes))
    assert len(np.unique(selection.clusters[view.unlabeled_positions])) <= selection.k
    assert (selection.clusters[view.labeled_positions] == -1).all()
    expected = _naive_aloe_batch(
        selection.clusters, selection.scores, selection.flagged, view.unlabeled_positions, budget, per_cluster
    )
    np.testing.assert_array_equal(selection.positions, expected)
    per_cluster_taken = np.bincount(selection.clusters[selection.positions])
    assert per_cluster_taken.max() <= per_cluster


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=40),
    st.integers(1, 8),
    st.integers(1, 4),
    st.randoms(use_true_random=False),
)
def test_picks_are_the_top_offers_of_the_top_clusters(items, budget, per_cluster, random):
    """Against a plain loop, with many score ties: each of the top ``budget`` clusters offers its
    ``per_cluster`` best members (score desc, position asc); the batch is the best ``budget`` offers,
    ordered by (pick, cluster rank)."""
    assignment = np.array([c for c, _ in items])
    scores = np.array([float(s) for _, s in items])
    positions = np.array(sorted(random.sample(range(100), len(items))))
    ranked = np.array(random.sample(sorted(set(assignment.tolist())), len(set(assignment.tolist()))))
    offers = []
    for rank, c in enumerate(ranked[:budget]):
        members = sorted(np.flatnonzero(assignment == c), key=lambda i: (-scores[i], positions[i]))
        offers += [(pick, rank, i) for pick, i in enumerate(members[:per_cluster])]
    taken = sorted(offers, key=lambda offer: (-scores[offer[2]], positions[offer[2]]))[:budget]
    expected = [positions[i] for _, _, i in sorted(taken)]
    got = pick_from_top_clusters(assignment, scores, positions, ranked, 6, budget, per_cluster)
    np.testing.assert_array_equal(got, expected)


def test_k_follows_the_multiplier_and_the_class_count():
    view, _ = build_view(n_known=6)
    assert select_aloe(view, 2, 0, SelectParams(multiplier=3)).k == 3 * 6
    assert select_aloe(view, 10, 0, SelectParams(multiplier=1)).k == 10


def test_cluster_ties_break_by_top_score_then_id():
    assignment = np.array([0, 0, 1, 1, 2, 2, 3, 5, 5])
    scores = np.array([1.0, 6.0, 5.0, 5.0, 0.0, 0.0, 9.0, 6.0, 6.0])
    flagged = np.array([1, 0, 1, 0, 1, 0, 0, 1, 0], dtype=bool)  # clusters 0-2 and 5 ratio 0.5, 3 ratio 0
    ratios, ranked = rank_clusters(assignment, scores, flagged, 6)  # cluster 4 is empty
    np.testing.assert_allclose(ratios, [0.5, 0.5, 0.5, 0.0, 0.0, 0.5])
    # cluster 0's mean (3.5) is below cluster 1's (5) but its top score (6) is higher; 0 and 5 tie on both
    np.testing.assert_array_equal(ranked, [0, 5, 1, 2, 3])
    best = best_member(assignment, scores, np.arange(10, 19), 6)
    np.testing.assert_array_equal(best, [11, 12, 14, 16, -1, 17])


@pytest.mark.parametrize(("per_cluster", "budget"), [(1, 5), (2, 8)])
def test_fewer_offers_than_budget_fills_by_highest_score(per_cluster, budget):
    """Three distinct points, each repeated: k-means can only fill three clusters, which offer
    ``3 * per_cluster`` items, two short of the budget."""
    rng = np.random.default_rng(0)
    features = np.repeat(np.eye(3, dtype=np.float32) + 1, 20, axis=0)
    logits = rng.standard_normal((60, 2)).astype(np.float32)
    view = RoundView([f"i{i}" for i in range(60)], features, logits, [0, 20], [0, 1], ["a", "b"])
    selection = select_aloe(view, budget, 0, SelectParams(backend="torch", per_cluster=per_cluster))
    assert any("filled 2 by highest o" in note for note in selection.notes)
    assert len(np.unique(selection.positions)) == budget
    expected = _naive_aloe_batch(
        selection.clusters, selection.scores, selection.flagged, view.unlabeled_positions, budget, per_cluster
    )
    np.testing.assert_array_equal(selection.positions, expected)


def test_ood_takes_the_top_scores_and_kmeans_the_centroid_nearest_members(small_view):
    ood = select_ood(small_view, 7, 0, SelectParams())
    unlabeled = small_view.unlabeled_positions
    top = unlabeled[np.argsort(-ood.scores[unlabeled], kind="stable")[:7]]
    np.testing.assert_array_equal(np.sort(ood.positions), np.sort(top))
    km = select_kmeans(small_view, 7, 0, SelectParams())
    assert km.k == 7 and sorted(np.unique(km.chosen_clusters)) == list(range(7))


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(12, 60),
    n_labeled=st.integers(1, 10),
    n_classes=st.integers(1, 4),
    budget=st.integers(1, 15),
    seed=st.integers(0, 2**16),
)
def test_aloe_invariants_on_random_rounds(n, n_labeled, n_classes, budget, seed):
    """Whatever the round: B unique unlabeled items (or all of them), flags are ``o > tau``, at
    least ``tpr`` of the labeled items are not flagged, and every chosen cluster ranks no lower
    than any cluster left out."""
    rng = np.random.default_rng(seed)
    positions = rng.choice(n, min(n_labeled, n - 1), replace=False)
    view = RoundView([f"i{i}" for i in range(n)], rng.standard_normal((n, 5)),
                     rng.standard_normal((n, n_classes)), positions,
                     rng.integers(0, n_classes, len(positions)), [f"c{c}" for c in range(n_classes)])
    selection = run_strategy(view, "aloe", budget, seed)
    expected = min(budget, n - len(positions))
    assert len(np.unique(selection.positions)) == len(selection.positions) == expected
    assert not np.isin(selection.positions, positions).any()
    np.testing.assert_array_equal(selection.flagged, selection.scores > selection.tau)
    assert (~selection.flagged[positions]).mean() >= 0.95 - 1e-9
    if selection.clusters is not None and budget < n - len(positions):
        chosen = set(selection.chosen_clusters)
        left = [c for c in set(selection.clusters[view.unlabeled_positions]) if c not in chosen]
        if left and len(chosen) == budget:
            ratios = selection.cluster_ratios
            assert min(ratios[list(chosen)]) >= max(ratios[left])
