"""The in-memory discovery loop behind the tables of docs/why-aloe-stalled.md.

The same rule, head and seeds as ``aloe simulate``, without the store: per seed, ``B`` random
initial labels, then rounds that fit the linear head on the labels so far (scikit-learn's
``LogisticRegression(C)`` objective), select ``B`` more with a strategy, and reveal their labels,
until every class is found (torch single-threaded, as in ``aloe simulate``). It prints the labels
each seed needed to find every class, and with ``--auroc`` how well each OOD score separates
unseen classes from seen ones after 50 random labels.

    python docs/results/discovery.py runs/evidence/pools/mnist-lt-0.01.npz --strategies aloe,ood
    python docs/results/discovery.py POOL.npz --params '{"score": "gradnorm", "threshold": "in_sample"}'
    python docs/results/discovery.py POOL.npz --auroc

A pool is an npz with ``features`` and ``labels`` (``aloe pools build``, or the synthetic pools
that ``docs/results/evidence.py`` writes); its test split, if any, is not used.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aloe.embedder.head import LinearHeadConfig, head_logits, train_linear_head  # noqa: E402
from aloe.loop.selection import round_seed  # noqa: E402
from aloe.loop.workers import torch_threads  # noqa: E402
from aloe.selector.clustering import FewPointsPerClusterWarning  # noqa: E402
from aloe.selector.config import SelectParams  # noqa: E402
from aloe.selector.scores import LOGIT_SCORES  # noqa: E402
from aloe.selector.strategies import run_strategy  # noqa: E402
from aloe.selector.view import RoundView  # noqa: E402


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A pool's features (float32) and labels (class indices)."""
    with np.load(path, allow_pickle=False) as data:
        features = np.asarray(data["features"], dtype=np.float32)
        _, labels = np.unique(np.asarray(data["labels"]), return_inverse=True)
    return features, labels


def fit_logits(features: np.ndarray, labeled: np.ndarray, labels: np.ndarray, C: float):
    """The round's head fitted on ``labeled``: ``(known class ids, their index per labeled item, logits)``."""
    names, classes = np.unique(labels[labeled], return_inverse=True)
    head = train_linear_head(features[labeled], classes, len(names), config=LinearHeadConfig(C=C)).head
    return names, classes, head_logits(head, features)


def labels_to_find_all(features, labels, strategy, seed, budget, rounds, C, params) -> tuple[int, bool]:
    """Labels at which the last class was found (or the labels spent, and False, after ``rounds``)."""
    n, n_classes = len(labels), len(np.unique(labels))
    ids = np.array([str(i) for i in range(n)])
    labeled = np.random.default_rng(seed).choice(n, size=budget, replace=False)
    for t in range(rounds + 1):
        if len(np.unique(labels[labeled])) == n_classes:
            return len(labeled), True
        if t == rounds:
            return len(labeled), False
        names, classes, logits = fit_logits(features, labeled, labels, C)
        view = RoundView(ids, features, logits, labeled, classes, [str(c) for c in names], head={"C": C})
        batch = run_strategy(view, strategy, budget, round_seed(seed, t), params)
        labeled = np.concatenate([labeled, np.asarray(batch.positions)])
    raise AssertionError("unreachable")


def auroc(features, labels, seeds, C) -> dict[str, float]:
    """Mean AUROC, over ``seeds``, of each logit score for unseen-vs-seen classes after 50 random labels."""
    found: dict[str, list[float]] = {name: [] for name in LOGIT_SCORES}
    for seed in seeds:
        labeled = np.random.default_rng(seed).choice(len(labels), size=50, replace=False)
        names, _, logits = fit_logits(features, labeled, labels, C)
        unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
        unseen = ~np.isin(labels[unlabeled], names)
        if len(names) < 2 or unseen.all() or not unseen.any():
            continue
        rows, z = torch.from_numpy(features[unlabeled]), torch.from_numpy(logits[unlabeled])
        for name, score in LOGIT_SCORES.items():
            found[name].append(roc_auc_score(unseen, score(rows, z).numpy()))
    return {name: float(np.mean(values)) for name, values in found.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pools", nargs="+", type=Path, help="pool npz files")
    parser.add_argument("--strategies", default="aloe,ood,random")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--C", type=float, default=1.0, help="the head's inverse L2 strength")
    parser.add_argument("--params", default="{}", help="selector settings as JSON (SelectParams fields)")
    parser.add_argument("--auroc", action="store_true", help="score AUROCs instead of the discovery loop")
    args = parser.parse_args()
    warnings.simplefilter("ignore", FewPointsPerClusterWarning)
    seeds = [int(s) for s in args.seeds.split(",")]
    params = SelectParams(**json.loads(args.params))
    for path in args.pools:
        features, labels = load(path)
        if args.auroc:
            print(path.stem, " ".join(f"{k}={v:.2f}" for k, v in auroc(features, labels, seeds, args.C).items()))
            continue
        for strategy in args.strategies.split(","):
            with torch_threads(1):  # as aloe simulate runs: the head's sums, and so a few batches, depend on it
                runs = [labels_to_find_all(features, labels, strategy, s, args.budget, args.rounds, args.C, params)
                        for s in seeds]
            short = "" if all(done for _, done in runs) else "> "
            print(f"{path.stem} {strategy}: {short}{np.mean([n for n, _ in runs]):.0f} "
                  f"[{','.join(str(n) for n, _ in runs)}]", flush=True)


if __name__ == "__main__":
    main()
