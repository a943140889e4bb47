"""The linear head: it reaches scikit-learn's optimum, is deterministic, streams big sets, logits in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import log_softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from aloe.data.synthetic import make_pool
from aloe.embedder.head import LinearHeadConfig, fit_linear_head, head_logits, train_linear_head
from aloe.errors import AloeError


@pytest.fixture(scope="module")
def pool():
    return make_pool(n_classes=5, n0=60, alpha=0.5, dim=16, spread=0.2, seed=3)


def _overlapping(n: int, dim: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian classes that overlap (so the optimum is finite and the penalty matters)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    classes = rng.integers(0, n_classes, n)
    classes[:n_classes] = np.arange(n_classes)
    return (centers[classes] + rng.normal(size=(n, dim))).astype(np.float32), classes


def _objective(features: np.ndarray, classes: np.ndarray, weight: np.ndarray, bias: np.ndarray, c: float) -> float:
    logp = log_softmax(features.astype(np.float64) @ weight.T + bias, axis=1)
    return float(-logp[np.arange(len(classes)), classes].sum() + (weight**2).sum() / (2 * c))


@pytest.mark.parametrize(("n", "dim", "n_classes", "c"), [(240, 8, 4, 0.5), (300, 20, 5, 10.0), (150, 40, 3, 100.0)])
def test_matches_scikit_learn_logistic_regression(n, dim, n_classes, c):
    features, classes = _overlapping(n, dim, n_classes, seed=n)
    fit = train_linear_head(features, classes, n_classes, config=LinearHeadConfig(C=c, tol=1e-8))
    reference = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(features, classes)
    logits = head_logits(fit.head, features)
    probs = np.exp(log_softmax(logits.astype(np.float64), axis=1))
    expected = reference.predict_proba(features)
    assert fit.converged and 0 < fit.iterations < 1000
    np.testing.assert_allclose(probs, expected, atol=5e-4)
    assert (logits.argmax(axis=1) == reference.predict(features)).mean() >= 0.99
    assert log_loss(classes, probs) == pytest.approx(log_loss(classes, expected), rel=1e-3, abs=1e-6)
    # the same objective: ours is at least as low as scikit-learn's, and reported correctly
    weight, bias = fit.head.weight.detach().numpy(), fit.head.bias.detach().numpy()
    ours = _objective(features, classes, weight, bias, c)
    assert ours <= _objective(features, classes, reference.coef_, reference.intercept_, c) + 1e-5 * abs(ours)
    assert fit.objective == pytest.approx(ours, rel=1e-5)


def test_smaller_c_means_smaller_weights_and_unpenalised_bias():
    features, classes = _overlapping(200, 6, 3, seed=1)
    features += 5.0  # an offset only the bias should absorb
    strong = fit_linear_head(features, classes, 3, config=LinearHeadConfig(C=1e-3))
    weak = fit_linear_head(features, classes, 3, config=LinearHeadConfig(C=1e3))
    assert strong.weight.norm() < weak.weight.norm()
    # with a near-zero weight the bias alone matches the class frequencies (it is not shrunk)
    tiny = fit_linear_head(features, classes, 3, config=LinearHeadConfig(C=1e-9))
    frequencies = np.bincount(classes, minlength=3) / len(classes)
    np.testing.assert_allclose(torch.softmax(tiny.bias.detach(), 0).numpy(), frequencies, atol=1e-3)


def test_deterministic_and_the_same_when_rows_stream_in_blocks(pool):
    whole = train_linear_head(pool.features, pool.labels, 5)
    again = train_linear_head(pool.features, pool.labels, 5)
    assert torch.equal(whole.head.weight, again.head.weight) and torch.equal(whole.head.bias, again.head.bias)
    streamed = train_linear_head(pool.features, pool.labels, 5, config=LinearHeadConfig(device_rows=17))
    np.testing.assert_allclose(streamed.head.weight.detach(), whole.head.weight.detach(), atol=1e-4)
    assert streamed.objective == pytest.approx(whole.objective, rel=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(3, 40),
    n_classes=st.integers(2, 5),
    c=st.floats(1e-2, 1e2),
    seed=st.integers(0, 2**16),
)
def test_the_fit_is_a_stationary_point_and_beats_zero(n, n_classes, c, seed):
    features, classes = _overlapping(max(n, n_classes), 5, n_classes, seed)
    fit = train_linear_head(features, classes, n_classes, config=LinearHeadConfig(C=c, tol=1e-7))
    weight = fit.head.weight.detach().double().requires_grad_(True)
    bias = fit.head.bias.detach().double().requires_grad_(True)
    x, y = torch.from_numpy(features).double(), torch.from_numpy(classes)
    loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, reduction="sum") + (weight**2).sum() / (2 * c)
    loss.backward()
    scale = len(classes)  # the tolerance applies to the per-row objective; float32 weights add rounding
    assert weight.grad.abs().max() / scale < 1e-3 and bias.grad.abs().max() / scale < 1e-3
    assert float(loss.detach()) <= len(classes) * np.log(n_classes) + 1e-6  # zero weights give n * log(C)


def test_learns_separable_classes(pool):
    head = fit_linear_head(pool.features, pool.labels, 5)
    accuracy = (head_logits(head, pool.features).argmax(axis=1) == pool.labels).mean()
    assert accuracy > 0.95


def test_blocked_logits_equal_one_shot(pool):
    head = fit_linear_head(pool.features, pool.labels, 5)
    whole = head(torch.from_numpy(pool.features)).detach().numpy()
    blocked = head_logits(head, pool.features, block_rows=7)
    assert blocked.dtype == np.float32 and blocked.shape == (len(pool.features), 5)
    np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_classes", [0, 1])
def test_fewer_than_two_classes_gives_a_zero_head_of_that_width(pool, n_classes):
    rows = 4 * n_classes
    fit = train_linear_head(pool.features[:rows], np.zeros(rows, dtype=np.int64), n_classes)
    assert head_logits(fit.head, pool.features).shape == (len(pool.features), n_classes)
    assert fit.iterations == 0 and not fit.head.weight.any()


def test_bad_inputs_are_aloe_errors(pool):
    with pytest.raises(AloeError, match="class indices"):
        fit_linear_head(pool.features, pool.labels, 2)
    with pytest.raises(AloeError, match="2-D"):
        fit_linear_head(pool.features[0], pool.labels[:1], 5)
