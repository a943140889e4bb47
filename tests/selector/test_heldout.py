"""The out-of-fold threshold: each labeled item scored by a head that never saw it, the paper's rule reachable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aloe.data.synthetic import make_pool
from aloe.embedder.head import LinearHeadConfig, fit_linear_head, head_logits
from aloe.selector.config import SelectConfig, SelectParams
from aloe.selector.heldout import out_of_fold_scores, round_head_config
from aloe.selector.rule import score_round
from aloe.selector.select import select_round
from aloe.selector.scores import gradnorm
from aloe.selector.strategies import run_strategy
from aloe.selector.threshold import ood_threshold
from aloe.selector.view import RoundView
from aloe.store import create_store

C = 100.0  # a weak penalty: the in-sample scores are overconfident
SCORE = "msp"  # a logit score: the out-of-fold threshold refits the head to score with it


def _view(per_class: list[int], seed: int = 0, head: dict | None = None) -> RoundView:
    pool = make_pool(n_classes=8, n0=80, alpha=0.3, dim=16, spread=0.35, seed=seed)
    rng = np.random.default_rng(seed)
    labeled = np.concatenate(
        [rng.choice(np.flatnonzero(pool.labels == c), n, replace=False) for c, n in enumerate(per_class)]
    )
    n_known = len(per_class)
    head_model = fit_linear_head(pool.features[labeled], pool.labels[labeled], n_known, config=LinearHeadConfig(C=C))
    return RoundView(pool.ids, pool.features, head_logits(head_model, pool.features), labeled,
                     pool.labels[labeled], pool.class_names[:n_known], head=head)


def test_each_item_is_scored_by_a_head_fit_without_its_fold():
    view = _view([12, 10, 8, 6])
    config = LinearHeadConfig(C=C)
    features = view.features[view.labeled_positions]
    scores = out_of_fold_scores(features, view.labeled_classes, "gradnorm", config, folds=3, seed=7)
    fold = np.random.default_rng(7).permutation(len(view.labeled_positions)) % 3
    for held in range(3):  # recompute fold `held` independently
        train = fold != held
        head = fit_linear_head(view.features[view.labeled_positions[train]], view.labeled_classes[train], 4,
                               config=config)
        rows = view.features[view.labeled_positions[~train]]
        expected = gradnorm(torch.from_numpy(rows), torch.from_numpy(head_logits(head, rows))).numpy()
        np.testing.assert_allclose(scores[~train], expected, rtol=1e-5)


def test_items_whose_class_has_no_other_labels_are_left_unscored():
    view = _view([10, 10, 1])
    features = view.features[view.labeled_positions]
    scores = out_of_fold_scores(features, view.labeled_classes, "energy", LinearHeadConfig(C=C), folds=5, seed=0)
    singleton = view.labeled_classes == 2
    assert np.isnan(scores[singleton]).all() and np.isfinite(scores[~singleton]).all()


def test_out_of_fold_scores_look_less_known_than_in_sample_ones():
    """The reason for the departure: in-sample scores understate how unknown a known item can look."""
    view = _view([12, 10, 8, 6, 5])
    held = out_of_fold_scores(view.features[view.labeled_positions], view.labeled_classes, SCORE,
                              LinearHeadConfig(C=C), folds=5, seed=0)
    in_sample = score_round(view, SelectParams(score=SCORE, threshold="in_sample")).scores[view.labeled_positions]
    assert np.nanmean(held) > in_sample.mean()


def test_score_round_uses_out_of_fold_scores_for_tau_and_says_so():
    view = _view([12, 10, 8, 6, 1], head={"C": C})
    scored = score_round(view, SelectParams(score=SCORE, folds=4), seed=3)
    held = out_of_fold_scores(view.features[view.labeled_positions], view.labeled_classes, SCORE,
                              LinearHeadConfig(C=C), folds=4, seed=3)
    assert scored.tau == ood_threshold(held[np.isfinite(held)], 0.95)
    assert any("out of 4 folds" in note for note in scored.notes)
    paper = score_round(view, SelectParams(score=SCORE, threshold="in_sample"), seed=3)
    assert paper.tau == ood_threshold(paper.scores[view.labeled_positions], 0.95)
    assert paper.tau != scored.tau


@pytest.mark.parametrize("head", [None, {"epochs": 100, "lr": 0.01}])
def test_without_linear_head_settings_the_threshold_is_in_sample_with_a_note(head):
    view = _view([8, 8, 8], head=head)
    assert round_head_config(view.head) is None
    scored = score_round(view, SelectParams(score=SCORE))
    assert scored.tau == ood_threshold(scored.scores[view.labeled_positions], 0.95)
    assert any("used in-sample" in note for note in scored.notes)


def test_same_seed_same_batch_and_the_selection_records_the_threshold_kind():
    view = _view([12, 10, 8, 6], head={"C": C})
    a = run_strategy(view, "aloe", 5, seed=11, params=SelectParams(score=SCORE))
    b = run_strategy(view, "aloe", 5, seed=11, params=SelectParams(score=SCORE))
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.tau == b.tau and a.params["threshold"] == "out_of_fold" and a.params["folds"] == 5


def test_a_stored_linear_round_gets_the_same_out_of_fold_tau_streamed_or_in_memory(tmp_path):
    view = _view([12, 10, 8, 6])
    store = create_store(tmp_path / "s.zarr", view.ids)
    writer = store.begin_round(0, feature_dim=view.features.shape[1], class_names=list(view.class_names),
                               labeled_positions=view.labeled_positions, labeled_classes=view.labeled_classes,
                               provenance={"head": LinearHeadConfig(C=C).model_dump()}, feature_dtype="float32")
    writer.write(view.features, view.logits)
    writer.commit()
    in_memory = select_round(store, 0, SelectConfig(budget=6, seed=2, score=SCORE, stream="never"))
    streamed = select_round(store, 0, SelectConfig(budget=6, seed=2, score=SCORE, stream="always"))
    held = out_of_fold_scores(view.features[view.labeled_positions], view.labeled_classes, SCORE,
                              LinearHeadConfig(C=C), folds=5, seed=2)
    assert in_memory.tau == streamed.tau == ood_threshold(held, 0.95)
    np.testing.assert_array_equal(streamed.positions, in_memory.positions)
    assert any("out of 5 folds" in note for note in streamed.notes)


@pytest.mark.parametrize(("score", "why"), [("msp+knn", "msp+knn has no out-of-fold form"),
                                             ("knn", "leave-one-out already")])
def test_a_mixed_or_knn_score_takes_tau_in_sample_and_says_why(score, why):
    view = _view([12, 10, 8, 6], head={"C": C})
    scored = score_round(view, SelectParams(score=score))
    assert scored.tau == ood_threshold(scored.scores[view.labeled_positions], 0.95)
    assert any(why in note for note in scored.notes)
