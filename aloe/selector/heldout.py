"""Out-of-fold OOD scores of the labeled items, for an honest threshold.

The paper sets ``tau`` from the labeled items' scores under the head that was fit on those very
items. Those in-sample scores are not what an unlabeled item of a known class gets: with a weak
penalty they are overconfident (``tau`` too low, most clusters saturate at OOD ratio 1), and with a
strong one the items of classes with one or two labels look unknown (``tau`` too high, nothing is
flagged, every ratio is 0). Either way the cluster ranking degenerates to its tie-break.

Here each labeled item is scored by a head refit without it: the labeled items are split into
``folds`` seeded folds, a head with the round's settings is fit on the other folds, and the item is
scored with it. Items whose class has no labels left in the other folds (a class's only labels) are
not scored: nothing known about their class remains, so they cannot tell how a known item looks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pydantic import ValidationError

from aloe.embedder.head import LinearHeadConfig, head_logits, train_linear_head
from aloe.selector.config import SelectParams
from aloe.selector.scores import LOGIT_SCORES


def round_head_config(head: dict | None) -> LinearHeadConfig | None:
    """A round's linear-head settings (its ``provenance["head"]``), or ``None`` when there are none we
    can refit (a fine-tuned head, or a store written before the head was logistic regression)."""
    if head is None:
        return None
    try:
        return LinearHeadConfig(**head)
    except (ValidationError, TypeError):
        return None


def out_of_fold_scores(
    features: np.ndarray, classes: np.ndarray, score: str, config: LinearHeadConfig, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Score every labeled item (``features`` L x D, ``classes``) with a head fit without its fold.

    ``score`` is a logit score. Returns ``(L,)`` float32, NaN for the items left unscored (their
    class has no labels in the other folds, or the other folds hold fewer than two classes). Fold
    ``i`` holds the items at ``permutation(L) % folds == i`` (seeded by ``seed``).
    """
    features = np.asarray(features, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    fold = np.random.default_rng(seed).permutation(len(classes)) % folds
    out = np.full(len(classes), np.nan, dtype=np.float32)
    function = LOGIT_SCORES[score]
    for held in range(folds):
        test = np.flatnonzero(fold == held)
        train = np.flatnonzero(fold != held)
        known, train_classes = np.unique(classes[train], return_inverse=True)
        test = test[np.isin(classes[test], known)]
        if len(known) < 2 or len(test) == 0:
            continue
        head = train_linear_head(features[train], train_classes, len(known), config=config).head
        logits = head_logits(head, features[test])
        with torch.no_grad():
            out[test] = function(torch.from_numpy(features[test]), torch.from_numpy(logits)).numpy()
    return out


def threshold_scores(
    in_sample: np.ndarray,
    labeled_features: Callable[[], np.ndarray],
    classes: np.ndarray,
    score: str,
    params: SelectParams,
    head: dict | None,
    seed: int,
    notes: list[str],
) -> np.ndarray:
    """The labeled items' scores that ``tau`` is taken over (``params.threshold``); appends notes.

    ``in_sample`` are the labeled items' scores under the round's head, ``labeled_features`` reads
    their features (only called for ``out_of_fold``), ``head`` is the round's ``provenance["head"]``.
    ``out_of_fold`` needs a logit score and linear-head settings; without them, or when fewer than
    two labeled items can be scored out of fold, the in-sample scores are used and a note says why.
    (``knn`` scores of labeled items are leave-one-out already; a mix such as ``msp+knn`` ranks
    every item against the whole pool, so it has no out-of-fold form.)
    """
    if params.threshold == "in_sample":
        return in_sample
    if score == "knn":
        notes.append("knn scores of labeled items are leave-one-out already: tau over them as they are")
        return in_sample
    if score not in LOGIT_SCORES:
        notes.append(f"{score} has no out-of-fold form: tau over the labeled items' in-sample scores")
        return in_sample
    config = round_head_config(head)
    if config is None:
        notes.append("out-of-fold threshold needs the round's linear-head settings: used in-sample scores")
        return in_sample
    held = out_of_fold_scores(labeled_features(), classes, score, config, params.folds, seed)
    held = held[np.isfinite(held)]
    if len(held) < 2:
        notes.append(f"only {len(held)} labeled item(s) could be scored out of fold: used in-sample scores")
        return in_sample
    notes.append(f"tau over {len(held)} of {len(in_sample)} labeled items scored out of {params.folds} folds")
    return held
