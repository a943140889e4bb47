"""Select on a store round, record the selection in the store, write the batch CSV.

The Python API under ``aloe-select``: :func:`run_select` does the whole job (and reuses a recorded
selection with the same name and request); :func:`select_round`, :func:`record_selection` and
:func:`aloe.batchfile.write_batch_csv` are the steps.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aloe.batchfile import check_batch_out, write_batch_csv
from aloe.errors import AloeError
from aloe.internal.dist import Comm
from aloe.selector.config import SelectConfig
from aloe.selector.selection import Selection
from aloe.selector.strategies import run_strategy
from aloe.selector.streamed import select_streamed, streaming_reason
from aloe.selector.view import RoundView
from aloe.store import Store, open_store
from aloe.store.schema import check_name


def request_of(config: SelectConfig) -> dict[str, Any]:
    """The request a selection answers: strategy, budget, seed and every knob (JSON-safe)."""
    return json.loads(json.dumps(config.model_dump(), sort_keys=True))


def default_name(config: SelectConfig) -> str:
    """``<strategy>-b<budget>-<8 hex digits of the request>``: distinct requests never collide."""
    digest = hashlib.sha256(json.dumps(request_of(config), sort_keys=True).encode()).hexdigest()[:8]
    return f"{config.strategy}-b{config.budget}-{digest}"


def select_round(store: Store, t: int, config: SelectConfig, comm: Comm | None = None) -> Selection:
    """Read round ``t`` of ``store`` and run ``config``'s strategy on it; timings include ``read``.

    The features stream from the store (:mod:`aloe.selector.streamed`) under ``torchrun``, with a
    k-means sample, when asked, or when the in-memory path would not fit; otherwise the whole round
    is read into a :class:`RoundView`. Under ``torchrun`` every rank gets the same selection.
    """
    comm = comm or Comm()
    started = time.perf_counter()
    reader = store.round(t)
    reason = streaming_reason(config, reader.n_items, reader.feature_dim, comm)
    if reason is not None:
        selection = select_streamed(reader, store.ids, config, comm, reason)
        selection.timings["total"] = time.perf_counter() - started
        return selection
    view = RoundView.from_round(reader, store.ids)
    read = time.perf_counter() - started
    selection = run_strategy(view, config.strategy, config.budget, config.seed, config.params())
    selection.timings = {"read": read, **selection.timings, "total": time.perf_counter() - started}
    return selection


def _optional(array: np.ndarray | None, fill: Any, n: int, dtype: Any) -> np.ndarray:
    return np.full(n, fill, dtype=dtype) if array is None else np.asarray(array, dtype=dtype)


def selection_record(
    selection: Selection,
    ids: np.ndarray,
    labeled_positions: np.ndarray,
    request: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The attributes and arrays that record ``selection`` made on a pool of ``ids``.

    Attributes: the request, strategy, budget, seed, params, score used, ``tau``, ``k``, flagged count,
    notes, timings. Arrays: ``chosen_ids``, ``positions``, ``chosen_cluster``, ``chosen_score``,
    ``chosen_flagged``, ``chosen_ratio`` (rank order), and per pool item ``scores``, ``flagged``,
    ``clusters`` (-1: not clustered), plus ``cluster_ratios`` (per cluster).
    """
    n = len(ids)
    unlabeled = np.ones(n, dtype=bool)
    flagged = _optional(selection.flagged, 0, n, np.uint8)
    attrs = {
        "request": request if request is not None else {},
        "strategy": selection.strategy,
        "budget": selection.budget,
        "seed": selection.seed,
        "params": selection.params,
        "score": selection.score_name,
        "tau": selection.tau,
        "k": selection.k,
        "n_flagged_unlabeled": None,
        "notes": list(selection.notes),
        "timings": dict(selection.timings),
    }
    if selection.flagged is not None:
        unlabeled[np.asarray(labeled_positions, dtype=np.int64)] = False
        attrs["n_flagged_unlabeled"] = int(flagged[unlabeled].sum())
    arrays = {
        "chosen_ids": np.asarray(ids)[selection.positions].astype(str),
        "positions": selection.positions.astype(np.int64),
        "chosen_cluster": selection.chosen_clusters.astype(np.int64),
        "chosen_score": selection.chosen_scores.astype(np.float32),
        "chosen_flagged": selection.chosen_flagged.astype(np.uint8),
        "chosen_ratio": selection.chosen_ratios.astype(np.float32),
        "scores": _optional(selection.scores, np.nan, n, np.float32),
        "flagged": flagged,
        "clusters": _optional(selection.clusters, -1, n, np.int64),
        "cluster_ratios": _optional(selection.cluster_ratios, np.nan, 0, np.float32),
    }
    return attrs, arrays


def record_selection(
    store: Store,
    t: int,
    name: str,
    selection: Selection,
    request: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``selection`` into ``store`` as round ``t``'s selection ``name`` (see :func:`selection_record`)."""
    attrs, arrays = selection_record(selection, store.ids, store.round(t).labeled_positions, request)
    store.write_selection(t, name, attrs, arrays, overwrite=overwrite)


@dataclass
class SelectOutcome:
    """What :func:`run_select` did: the round, the selection's name, whether it was reused, the record."""

    t: int
    name: str
    reused: bool
    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in keys if old.get(key) != new.get(key))


def run_select(
    store: Store,
    config: SelectConfig,
    out: str | Path,
    round: int | None = None,
    name: str | None = None,
    overwrite: bool = False,
    comm: Comm | None = None,
) -> SelectOutcome:
    """Select on round ``round`` (default: the latest complete one), record it, write ``out``.

    A selection already recorded under ``name`` with the same request is reused (not rerun); with a
    different request it is an :class:`AloeError` unless ``overwrite``. Under ``torchrun`` (``comm``
    with several ranks) every rank reads its shard and rank 0 alone writes the record and ``out``.
    An ``out`` that is a directory, lies inside the store or is an existing file other than a batch
    CSV is refused before anything is selected or recorded.
    """
    out = Path(out)
    check_batch_out(out)
    if out.resolve().is_relative_to(Path(store.path).resolve()):
        raise AloeError(f"--out {out} lies inside the store {store.path}; write the batch elsewhere")
    comm = comm or Comm()
    t = store.latest_round() if round is None else round
    store.round(t)  # a precise error for a missing or incomplete round, before any work
    request = request_of(config)
    name = default_name(config) if name is None else check_name(name, "selection")
    reused = False
    if name in store.selections(t):
        attrs, _ = store.read_selection(t, name)
        if attrs.get("request") == request:
            reused = True
        elif not overwrite:
            raise AloeError(
                f"round {t} already has a selection {name!r} made with other parameters "
                f"({_differences(attrs.get('request', {}), request)}); use --overwrite or another --name"
            )
    if not reused:
        selection = select_round(store, t, config, comm)
        comm.barrier()  # every rank has finished reading before rank 0 writes
        if comm.is_root:
            writer = open_store(store.path, mode="a") if comm.sharded else store
            record_selection(writer, t, name, selection, request, overwrite=overwrite)
    comm.barrier()
    attrs, arrays = store.read_selection(t, name)
    if comm.is_root:
        write_batch_csv(out, arrays)
    return SelectOutcome(t, name, reused, attrs, arrays)


def summary_lines(outcome: SelectOutcome) -> list[str]:
    """A short human summary of a recorded selection: tau, k, flags, chosen clusters' ratios, timings."""
    attrs, arrays = outcome.attrs, outcome.arrays
    how = "reused the recorded selection" if outcome.reused else "recorded selection"
    lines = [
        f"round {outcome.t}: {attrs['strategy']} chose {len(arrays['positions'])} items "
        f"(budget {attrs['budget']}, seed {attrs['seed']}); {how} {outcome.name!r}"
    ]
    if attrs.get("tau") is not None:
        lines.append(
            f"score {attrs['score']}: tau {attrs['tau']:.6g} at tpr {attrs['params']['tpr']}; "
            f"{attrs['n_flagged_unlabeled']} unlabeled items flagged OOD"
        )
    if attrs.get("k"):
        ratios = arrays["chosen_ratio"][~np.isnan(arrays["chosen_ratio"])]
        shown = ""
        if len(ratios):
            shown = (
                f"; OOD ratio of the chosen clusters: max {ratios.max():.2f}, "
                f"median {np.median(ratios):.2f}, min {ratios.min():.2f}"
            )
        lines.append(f"k = {attrs['k']} clusters{shown}")
    timings = ", ".join(f"{step} {seconds:.2f}s" for step, seconds in attrs["timings"].items())
    lines.append(f"time: {timings}")
    lines.extend(f"note: {note}" for note in attrs["notes"])
    return lines
