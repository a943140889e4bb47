"""A linear classification head over fixed features: fitting it to convergence, and blocked logits.

Used by the ``linear`` embed mode, by ``aloe-embed --from-features`` and by ``aloe simulate``: the
backbone is frozen (or absent), so the head is the only thing trained, on the labeled rows' features.

The head is multinomial logistic regression with an L2 penalty, the objective of scikit-learn's
``LogisticRegression(C=C)`` (lbfgs, multinomial)::

    sum_i -log softmax(W h_i + b)_{y_i}  +  ||W||^2 / (2 C)          (the bias is not penalised)

It is convex, so it is minimised to a tolerance with full-batch L-BFGS (strong-Wolfe line search)
from zero weights: no seed, no learning rate, no epochs, the same weights on a CPU every time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from torch import nn

from aloe.config import StrictModel
from aloe.errors import AloeError
from aloe.internal.arrays import BLOCK_ROWS


class LinearHeadConfig(StrictModel):
    """The head's L2-penalised logistic regression (the settings of :func:`train_linear_head`).

    Defaults: ``C = 1.0`` (scikit-learn's default), ``max_iter = 1000`` L-BFGS iterations,
    ``tol = 1e-6`` on the largest gradient entry of the per-row objective, ``device_rows = 262144``
    labeled rows held on the device at once (more are streamed through it in blocks of that size).
    """

    C: float = Field(1.0, gt=0, description="inverse L2 strength, as scikit-learn's LogisticRegression(C)")
    max_iter: int = Field(1000, ge=0, description="cap on L-BFGS iterations")
    tol: float = Field(1e-6, gt=0, description="stop when every gradient entry of the mean objective is below")
    device_rows: int = Field(262_144, ge=1, description="labeled rows on the device at once; more stream in blocks")


@dataclass(frozen=True)
class HeadFit:
    """A fitted head and how the fit ended."""

    head: nn.Linear  # eval mode, on the CPU
    iterations: int
    converged: bool  # stopped by a tolerance (gradient below tol, or no progress) before max_iter
    objective: float  # sum of log-losses + ||W||^2 / (2C) at the returned weights

    def summary(self) -> dict:
        """Iterations, convergence and objective, for a round's provenance."""
        return {"iterations": self.iterations, "converged": self.converged, "objective": self.objective}


def _check_inputs(features: np.ndarray, classes: np.ndarray, n_classes: int) -> None:
    if features.ndim != 2:
        raise AloeError(f"features must be 2-D (rows x dim), got shape {features.shape}")
    if classes.shape != (features.shape[0],):
        raise AloeError(f"{features.shape[0]} feature rows but {classes.shape[0]} class indices")
    if n_classes < 0:
        raise AloeError(f"n_classes must be >= 0, got {n_classes}")
    if len(classes) and (classes.min() < 0 or classes.max() >= n_classes):
        raise AloeError(f"class indices must lie in [0, {n_classes}), got {classes.min()}..{classes.max()}")


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
        head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight.detach().cpu().float())
        head.bias.copy_(bias.detach().cpu().float())
    return head.eval()


def _blocks(x_all: torch.Tensor, y_all: torch.Tensor, resident: bool, rows: int, device: torch.device):
    """``(features float64, classes)`` on ``device``: all at once when resident, else ``rows`` at a time."""
    if resident:
        yield x_all, y_all
        return
    for start in range(0, len(y_all), rows):
        yield x_all[start : start + rows].to(device, torch.float64), y_all[start : start + rows].to(device)


def train_linear_head(
    features: np.ndarray,
    classes: np.ndarray,
    n_classes: int,
    *,
    config: LinearHeadConfig | None = None,
    device: str | torch.device = "cpu",
) -> HeadFit:
    """Fit ``nn.Linear(D, n_classes)`` by L2-penalised multinomial logistic regression.

    Parameters
    ----------
    features
        ``(n, D)`` float array of the labeled rows.
    classes
        ``(n,)`` class indices in ``[0, n_classes)``.
    n_classes
        Output width. With fewer than two classes (or no rows) there is nothing to discriminate:
        the head is all zeros (uniform probabilities) and ``iterations`` is 0.
    config
        ``C``, ``max_iter``, ``tol`` and ``device_rows`` (default :class:`LinearHeadConfig`).
    device
        Torch device to fit on (float64 arithmetic); the returned head lives on the CPU.

    Returns
    -------
    HeadFit
        The head in eval mode on the CPU, the L-BFGS iterations, whether it converged, the objective.

    Notes
    -----
    L-BFGS minimises the objective divided by ``n`` (same minimiser, gradients on a per-row scale)
    over rows centred on their mean (an exact reparametrisation, since the bias is free; it halves
    the iterations on uncentred features such as post-ReLU CNN activations); it stops when every
    gradient entry is below ``tol``, when a step changes nothing, or after ``max_iter`` iterations.
    Up to ``device_rows`` rows the features sit on the device at once; beyond, every evaluation
    streams them through in blocks of ``device_rows`` (still full batch).
    """
    config = config or LinearHeadConfig()
    features = np.asarray(features, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    _check_inputs(features, classes, n_classes)
    device = torch.device(device)
    n, dim = features.shape
    weight = torch.zeros((n_classes, dim), dtype=torch.float64, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, device=device, requires_grad=True)
    if n_classes < 2 or n == 0 or config.max_iter == 0:
        return HeadFit(_linear(weight, bias), 0, False, float("nan"))

    resident = n <= config.device_rows
    x_all = torch.from_numpy(features)
    y_all = torch.from_numpy(classes)
    if resident:
        x_all, y_all = x_all.to(device, torch.float64), y_all.to(device)
    penalty = 1.0 / (2.0 * config.C)
    # The fit sees centred rows, h - mean, with the bias b' = b + W mean: the same objective (the
    # bias is free), far better conditioned (L-BFGS needs about half the iterations).
    mean = sum(x.sum(dim=0) for x, _ in _blocks(x_all, y_all, resident, config.device_rows, device)) / n

    def blocks():
        for x, y in _blocks(x_all, y_all, resident, config.device_rows, device):
            yield x - mean, y

    def objective() -> torch.Tensor:
        """Sum of log-losses + penalty, divided by n; gradients accumulated block by block."""
        weight.grad = bias.grad = None
        total = penalty * (weight * weight).sum() / n
        total.backward()
        value = total.detach()
        for x, y in blocks():
            loss = nn.functional.cross_entropy(x @ weight.T + bias, y, reduction="sum") / n
            loss.backward()
            value = value + loss.detach()
        return value

    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=config.max_iter,
        max_eval=2 * config.max_iter + 10,
        tolerance_grad=config.tol,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    optimizer.step(objective)
    iterations = int(optimizer.state[weight]["n_iter"])
    final = float(objective()) * n
    with torch.no_grad():
        bias -= weight @ mean
    return HeadFit(_linear(weight, bias), iterations, iterations < config.max_iter, final)


def fit_linear_head(
    features: np.ndarray,
    classes: np.ndarray,
    n_classes: int,
    *,
    config: LinearHeadConfig | None = None,
    device: str | torch.device = "cpu",
) -> nn.Linear:
    """The head of :func:`train_linear_head` alone (same parameters), in eval mode on the CPU."""
    return train_linear_head(features, classes, n_classes, config=config, device=device).head


@torch.no_grad()
def head_logits(head: nn.Linear, features: np.ndarray, block_rows: int = BLOCK_ROWS) -> np.ndarray:
    """Logits ``head(features)`` as float32 ``(n, C)``, computed ``block_rows`` rows at a time.

    The head and the blocks stay on the head's device; the result is a numpy array.
    """
    features = np.asarray(features)
    device = head.weight.device
    out = np.empty((features.shape[0], head.out_features), dtype=np.float32)
    for start in range(0, features.shape[0], block_rows):
        block = torch.from_numpy(np.ascontiguousarray(features[start : start + block_rows], dtype=np.float32))
        out[start : start + len(block)] = head(block.to(device)).float().cpu().numpy()
    return out
