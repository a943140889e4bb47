"""The linear head: determinism with a seed, learning a separable problem, blocked logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aloe.data.synthetic import make_pool
from aloe.embedder.head import fit_linear_head, head_logits
from aloe.errors import AloeError


@pytest.fixture(scope="module")
def pool():
    return make_pool(n_classes=5, n0=60, alpha=0.5, dim=16, spread=0.2, seed=3)


def test_same_seed_same_weights_other_seed_other_weights(pool):
    fit = lambda seed: fit_linear_head(pool.features, pool.labels, 5, epochs=5, seed=seed)  # noqa: E731
    a, b, c = fit(1), fit(1), fit(2)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)


def test_learns_separable_classes(pool):
    head = fit_linear_head(pool.features, pool.labels, 5, epochs=60, lr=5e-2, seed=0)
    accuracy = (head_logits(head, pool.features).argmax(axis=1) == pool.labels).mean()
    assert accuracy > 0.95


def test_blocked_logits_equal_one_shot(pool):
    head = fit_linear_head(pool.features, pool.labels, 5, epochs=2, seed=0)
    whole = head(torch.from_numpy(pool.features)).detach().numpy()
    blocked = head_logits(head, pool.features, block_rows=7)
    assert blocked.dtype == np.float32 and blocked.shape == (len(pool.features), 5)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_classes", [0, 1])
def test_fewer_than_two_classes_gives_untrained_head_of_that_width(pool, n_classes):
    rows = 4 * n_classes
    head = fit_linear_head(pool.features[:rows], np.zeros(rows, dtype=np.int64), n_classes, epochs=3)
    assert head_logits(head, pool.features).shape == (len(pool.features), n_classes)


def test_bad_class_index_is_an_aloe_error(pool):
    with pytest.raises(AloeError, match="class indices"):
        fit_linear_head(pool.features, pool.labels, 2, epochs=1)
