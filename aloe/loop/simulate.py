"""``aloe simulate``: rounds of embed -> select -> oracle labels, per strategy and seed.

Layout of a simulation directory ``DIR``::

    simulation.json              settings, pool description, class count (the resume check)
    metrics.csv                  every run's rows (see :mod:`aloe.loop.metrics`)
    <strategy>/seed-<s>/
        store.zarr               a real store: round t = the linear head on all labels of rounds <= t
        batch-<t>.csv            the batch selected on round t (aloe-select's CSV)
        ledger.csv               the run's labels ledger (round 0: the initial random set)
        metrics.csv              this run's rows

Round ``t`` is written from the ledger's rounds ``<= t``; the selection on round ``t`` is recorded in
the store and its batch, answered by the oracle, becomes the ledger's round ``t + 1``. Each step
checks what is already there, so rerunning an interrupted command continues where it stopped, and
a rerun with more ``--rounds``, strategies or seeds extends the directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from aloe.config import StrictModel
from aloe.embedder.head import LinearHeadConfig, fit_linear_head, head_logits
from aloe.embedder.linear_round import ArrayFeatures, write_linear_round
from aloe.errors import AloeError
from aloe.labels import LabeledSet
from aloe.loop.ledger import Ledger
from aloe.loop.metrics import balanced_accuracies, predict, read_metrics, write_metrics
from aloe.loop.oracle import OraclePool
from aloe.loop.report import SETTINGS_NAME
from aloe.loop.selection import select_batch
from aloe.selector.config import SelectParams
from aloe.selector.strategies import STRATEGIES
from aloe.store import create_store, open_store

STORE_NAME = "store.zarr"


class SimulationSettings(StrictModel):
    """What a simulation runs; everything but strategies, seeds and rounds must match on resume."""

    strategies: list[str] = Field(default_factory=lambda: ["aloe", "random"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    budget: int = Field(10, ge=1)
    rounds: int = Field(5, ge=1)
    initial: int | None = Field(None, ge=1)
    select: SelectParams = SelectParams()
    head: LinearHeadConfig = LinearHeadConfig()

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
        return list(dict.fromkeys(names))

    @property
    def n_initial(self) -> int:
        """Random labels before round 1 (default: one budget)."""
        return self.initial if self.initial is not None else self.budget

    def resume_key(self) -> dict:
        """The settings a continued run must share with the one it continues."""
        return self.model_dump(exclude={"strategies", "seeds", "rounds"}) | {"initial": self.n_initial}


WHERE_KEYS = ("config", "features")  # where the pool came from: may differ between runs


def _check_or_write_settings(out: Path, settings: SimulationSettings, pool: OraclePool) -> None:
    """Write ``simulation.json``; refuse to continue a directory made with other settings or pool."""
    record = {
        "resume_key": settings.resume_key(),
        "pool": pool.description,
        "n_items": len(pool.ids),
        "n_test": len(pool.test_labels),
        "n_classes": len(pool.class_names),
    }
    path = out / SETTINGS_NAME
    if path.is_file():
        before = json.loads(path.read_text())
        for key in ("resume_key", "pool", "n_items", "n_classes"):
            old, new = before.get(key), record[key]
            if key == "pool":
                old, new = ({k: v for k, v in d.items() if k not in WHERE_KEYS} for d in (old or {}, new))
            if old != new:
                raise AloeError(
                    f"{out} holds a simulation with other {key.replace('_', ' ')} "
                    f"({old} vs {new}); use another --out to start a new one"
                )
    else:
        before = {}
    out.mkdir(parents=True, exist_ok=True)
    record["strategies"] = list(dict.fromkeys([*before.get("strategies", []), *settings.strategies]))
    record["seeds"] = sorted({*before.get("seeds", []), *settings.seeds})
    record["rounds"] = max(before.get("rounds", 0), settings.rounds)
    path.write_text(json.dumps(record, indent=2) + "\n")


class Run:
    """One strategy and seed: its store, ledger and metrics under ``DIR/<strategy>/seed-<s>``."""

    def __init__(self, out: Path, strategy: str, seed: int, pool: OraclePool, settings: SimulationSettings):
        self.strategy, self.seed, self.pool, self.settings = strategy, seed, pool, settings
        self.dir = out / strategy / f"seed-{seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.dir / "ledger.csv")
        self.metrics_path = self.dir / "metrics.csv"
        store_path = self.dir / STORE_NAME
        if store_path.exists():
            self.store = open_store(store_path, mode="a")
        else:
            meta = {"simulation": {"strategy": strategy, "seed": seed}, "pool": pool.description}
            self.store = create_store(store_path, pool.ids, meta=meta)
        self.features = ArrayFeatures(pool.features)

    def rows(self) -> list[dict]:
        """This run's metrics rows so far."""
        return read_metrics(self.metrics_path) if self.metrics_path.exists() else []

    def ensure_initial(self) -> None:
        """Round 0 of the ledger: ``initial`` items drawn uniformly at random (seeded)."""
        if self.ledger.last_round() is None:
            rng = np.random.default_rng(self.seed)
            n = min(self.settings.n_initial, len(self.pool.ids))
            positions = rng.choice(len(self.pool.ids), size=n, replace=False)
            self.ledger.append(self.pool.oracle(positions), 0, "initial")

    def _labeled(self, t: int) -> LabeledSet:
        return LabeledSet.from_labels(self.ledger.labels(up_to_round=t), self.store)

    def _head(self, labeled: LabeledSet):
        """Round ``t``'s head again: the same rows and settings as :meth:`ensure_round` gave
        ``write_linear_round`` (which keeps its head to itself), so the same weights on a CPU."""
        return fit_linear_head(
            self.pool.features[labeled.positions], labeled.classes, len(labeled.names), config=self.settings.head
        )

    def ensure_round(self, t: int) -> None:
        """Write store round ``t`` (the linear head on the ledger's rounds ``<= t``) if missing."""
        if t in self.store.rounds():
            return
        write_linear_round(
            self.store, t, self.features, self._labeled(t),
            head=self.settings.head, provenance={"simulation": {"strategy": self.strategy, "ledger_round": t}},
        )

    def metrics_row(self, t: int, select_seconds: float) -> dict:
        """The metrics of round ``t``: labels, classes, test balanced accuracies of its head."""
        labeled = self._labeled(t)
        logits = head_logits(self._head(labeled), self.pool.test_features)
        balanced, known = balanced_accuracies(self.pool.test_labels, predict(logits, labeled.names), labeled.names)
        before = set(self.ledger.labels(up_to_round=t - 1).values()) if t > 0 else set()
        batch = {e.label for e in self.ledger.entries() if e.round == t}
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "round": t,
            "n_labeled": len(labeled),
            "n_classes_discovered": len(labeled.names),
            "n_new_classes_in_batch": len(batch - before),
            "balanced_accuracy": balanced,
            "known_balanced_accuracy": known,
            "select_seconds": select_seconds,
        }

    def ensure_batch(self, t: int) -> float:
        """Select on round ``t`` (unless recorded), and put the oracle's answers in ledger round ``t+1``.

        The batch CSV (as ``aloe-select`` writes it) goes to ``batch-<t>.csv`` in the run's directory.
        Returns the selection's seconds.
        """
        s = self.settings
        ids, seconds = select_batch(self.store.path, t, self.strategy, s.budget, self.seed, s.select,
                                    self.dir / f"batch-{t:04d}.csv")
        if self.ledger.last_round() <= t:
            positions = self.store.position_of(ids)
            self.ledger.append(self.pool.oracle(positions), t + 1, f"oracle:{self.strategy}")
        return seconds

    def run(self, rounds: int, tick: Callable[[], None]) -> list[dict]:
        """Bring the run to ``rounds`` selection rounds (fewer once the whole pool is labeled);
        ``tick`` after each round."""
        self.ensure_initial()
        rows = {row["round"]: row for row in self.rows()}
        select_seconds = 0.0
        for t in range(rounds + 1):
            if self.ledger.last_round() < t:  # the pool ran out of unlabeled items
                tick()
                continue
            self.ensure_round(t)
            if t not in rows:
                rows[t] = self.metrics_row(t, select_seconds)
                write_metrics(self.metrics_path, rows.values())
            if t < rounds and rows[t]["n_labeled"] < len(self.pool.ids):
                select_seconds = self.ensure_batch(t)
            tick()
        return [rows[t] for t in sorted(rows)]


def collect_metrics(out: Path) -> list[dict]:
    """Every run's rows under ``out`` (so a directory extended over several commands stays whole)."""
    rows = []
    for path in sorted(out.glob("*/seed-*/metrics.csv")):
        rows.extend(read_metrics(path))
    return rows


def simulate(pool: OraclePool, settings: SimulationSettings, out: str | Path,
             progress: Callable[[int], Callable[[str], Callable[[], None]]] | None = None) -> Path:
    """Run (or continue) every strategy x seed for ``settings.rounds`` rounds; return metrics.csv.

    ``progress(total_rounds)`` returns ``describe(run_name) -> tick()``; ``None`` runs silently.
    """
    out = Path(out)
    _check_or_write_settings(out, settings, pool)
    runs = [(strategy, seed) for strategy in settings.strategies for seed in settings.seeds]
    describe = progress(len(runs) * (settings.rounds + 1)) if progress else None
    for strategy, seed in runs:
        tick = describe(f"{strategy} seed {seed}") if describe else (lambda: None)
        Run(out, strategy, seed, pool, settings).run(settings.rounds, tick)
    path = out / "metrics.csv"
    write_metrics(path, collect_metrics(out))
    return path

