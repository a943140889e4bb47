"""The threshold: at least ``tpr`` of the labeled scores are <= tau, and tau is one of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aloe.errors import AloeError
from aloe.selector.threshold import ood_threshold

scores_st = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(scores_st, st.floats(0.01, 1.0))
def test_at_least_tpr_of_labeled_scores_are_not_flagged(scores, tpr):
    scores = np.array(scores)
    tau = ood_threshold(scores, tpr)
    assert (scores <= tau).mean() >= tpr - 1e-12
    assert tau in scores


@settings(max_examples=200, deadline=None)
@given(scores_st, st.floats(0.01, 1.0))
def test_tau_is_the_smallest_such_labeled_score(scores, tpr):
    scores = np.array(scores)
    tau = ood_threshold(scores, tpr)
    below = scores[scores < tau]
    if len(below):
        assert (scores <= below.max()).mean() < tpr


def test_known_values():
    scores = np.arange(1, 21, dtype=float)  # 1..20
    assert ood_threshold(scores, 0.95) == 19.0  # 19 of 20 are <= 19
    assert ood_threshold(scores, 1.0) == 20.0
    assert ood_threshold(scores, 0.5) == 10.0


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.01])
def test_bad_tpr_and_empty_scores(tpr):
    with pytest.raises(AloeError, match="tpr"):
        ood_threshold(np.ones(3), tpr)
    with pytest.raises(AloeError, match="labeled"):
        ood_threshold(np.array([]), 0.95)
