"""``aloe simulate``: rounds of model -> select -> oracle labels, per strategy and seed.

Layout of a simulation directory ``DIR``::

    simulation.json              settings, pool description, class count (the resume check)
    metrics.csv                  every run's rows (see :mod:`aloe.loop.metrics`)
    <strategy>/seed-<s>/
        ledger.csv               the run's labels ledger (round 0: the initial random set)
        metrics.csv              this run's rows
        batch-<t>.csv            the batch selected on round t (aloe-select's CSV)
        selections/<t>.npz       the selection record of round t (see :func:`read_selection_record`)
        store.zarr               round t's features and logits, and its selection, as aloe-embed
                                 and aloe-select write them (linear mode: only with ``keep_stores``)
        eval/<t>.npz             finetune mode: round t's logits on the evaluation set

In ``linear`` mode (:class:`LinearRun`) round ``t``'s head is trained on the ledger's rounds
``<= t``; the pool's logits under it and the pool's features (held in memory) are what the strategy
selects from, and the batch, answered by the oracle, becomes the ledger's round ``t + 1``. The same
head gives the round's test metrics. Torch runs single-threaded in a run, so a run gives the same
rows whether it runs alone or beside others (``jobs``). ``finetune`` mode
(:class:`aloe.loop.finetune_run.FinetuneRun`) fine-tunes the backbone and embeds the pool every round.
The ledger is the state: every step checks what is already there, so rerunning an interrupted command
continues where it stopped, and a rerun with more ``--rounds``, strategies or seeds extends the
directory. Every random choice is seeded.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from aloe.batchfile import write_batch_csv
from aloe.config import StrictModel
from aloe.data.npz import save_npz_atomic
from aloe.embedder.head import LinearHeadConfig, fit_linear_head, head_logits
from aloe.embedder.linear_round import ArrayFeatures, write_head_round
from aloe.errors import AloeError
from aloe.internal.folders import make_out_folder
from aloe.labels import LabeledSet
from aloe.loop.ledger import Ledger
from aloe.loop.metrics import balanced_accuracies, predict, read_metrics, write_metrics
from aloe.loop.oracle import OracleLabels
from aloe.loop.report import SETTINGS_NAME, read_settings
from aloe.loop.selection import round_seed
from aloe.loop.workers import run_in_workers, torch_threads
from aloe.selector.clustering import FewPointsPerClusterWarning
from aloe.selector.config import SelectConfig, SelectParams, check_strategies
from aloe.selector.select import default_name, request_of, selection_record
from aloe.selector.strategies import run_strategy
from aloe.selector.view import RoundView
from aloe.store import create_store, open_store
from aloe.store.writer import write_json_atomic

STORE_NAME = "store.zarr"
SELECTIONS_DIR = "selections"


class SimulationSettings(StrictModel):
    """What a simulation runs; everything but strategies, seeds and rounds must match on resume."""

    strategies: list[str] = Field(default_factory=lambda: ["aloe", "random"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    budget: int = Field(10, ge=1)
    rounds: int = Field(5, ge=1)
    initial: int | None = Field(None, ge=1)
    select: SelectParams = SelectParams()
    head: LinearHeadConfig = LinearHeadConfig()
    mode: Literal["linear", "finetune"] = "linear"
    keep_stores: bool = False
    round_detail: bool = Field(False, description="finetune mode: show each round's fine-tune and pool-pass bars")

    @field_validator("strategies")
    @classmethod
    def _known_strategies(cls, names: list[str]) -> list[str]:
        return check_strategies(names)

    @property
    def n_initial(self) -> int:
        """Random labels before round 1 (default: one budget)."""
        return self.initial if self.initial is not None else self.budget

    def resume_key(self) -> dict:
        """The settings a continued run must share with the one it continues."""
        varying = {"strategies", "seeds", "rounds", "keep_stores", "round_detail"}
        return self.model_dump(exclude=varying) | {"initial": self.n_initial}


WHERE_KEYS = ("config", "features")  # where the pool came from: may differ between runs


def _check_or_write_settings(out: Path, settings: SimulationSettings, pool: OracleLabels) -> None:
    """Write ``simulation.json``; refuse to continue a directory made with other settings or pool."""
    record = {
        "resume_key": settings.resume_key(),
        "pool": pool.description,
        "n_items": len(pool.ids),
        "n_test": len(pool.test_labels),
        "n_classes": len(pool.class_names),
    }
    before = read_settings(out)
    if before is not None:
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
    make_out_folder(out)
    record["strategies"] = list(dict.fromkeys([*before.get("strategies", []), *settings.strategies]))
    record["seeds"] = sorted({*before.get("seeds", []), *settings.seeds})
    record["rounds"] = max(before.get("rounds", 0), settings.rounds)
    write_json_atomic(out / SETTINGS_NAME, record, indent=2)


def write_selection_record(path: Path, attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Save a selection record as an npz: its arrays, and its attributes as JSON in ``attrs``."""
    save_npz_atomic(path, attrs=np.array(json.dumps(attrs)), **arrays)


def read_selection_record(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The attributes and arrays of a saved selection record (the names of
    :func:`aloe.selector.select.selection_record`)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("attrs"))), arrays


def read_selection_attrs(path: str | Path) -> dict[str, Any]:
    """Only the attributes of a saved selection record (its arrays stay on disk)."""
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["attrs"]))


class Run:
    """One strategy and seed: its ledger, batches, selection records and metrics under
    ``DIR/<strategy>/seed-<s>``. Subclasses say how a round gets its model and its batch."""

    def __init__(self, out: Path, strategy: str, seed: int, pool: OracleLabels, settings: SimulationSettings):
        self.strategy, self.seed, self.pool, self.settings = strategy, seed, pool, settings
        self.dir = out / strategy / f"seed-{seed}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.dir / "ledger.csv")
        self.metrics_path = self.dir / "metrics.csv"
        self._select_seconds: dict[int, float] = {}

    def rows(self) -> list[dict]:
        """This run's metrics rows so far."""
        return read_metrics(self.metrics_path) if self.metrics_path.exists() else []

    def ensure_initial(self) -> None:
        """Round 0 of the ledger: ``initial`` items drawn uniformly at random (seeded)."""
        if self.ledger.last_round() is None:
            rng = np.random.default_rng(self.seed)
            positions = rng.choice(len(self.pool.ids), size=self.settings.n_initial, replace=False)
            self.ledger.append(self.pool.oracle(positions), 0, "initial")

    def labeled(self, t: int) -> LabeledSet:
        """The labels of the ledger's rounds ``<= t``."""
        return LabeledSet.from_labels(self.ledger.labels(up_to_round=t), self.pool)

    def selection_path(self, t: int) -> Path:
        """Where the selection record of round ``t`` is saved."""
        return self.dir / SELECTIONS_DIR / f"{t:04d}.npz"

    def select_seconds(self, t: int) -> float:
        """Seconds the selection that labeled round ``t`` took (0 for round 0)."""
        if t - 1 not in self._select_seconds:
            path = self.selection_path(t - 1)
            seconds = read_selection_attrs(path)["timings"]["total"] if t > 0 and path.is_file() else 0.0
            self._select_seconds[t - 1] = float(seconds)
        return self._select_seconds[t - 1]

    def metrics_row(self, t: int, labeled: LabeledSet, model: Any) -> dict:
        """The metrics of round ``t``: labels, classes, balanced accuracies on the evaluation set."""
        truth, logits = self.evaluation(t, model)
        balanced, known = balanced_accuracies(truth, predict(logits, labeled.names), labeled.names)
        before = set(self.ledger.labels(up_to_round=t - 1).values()) if t > 0 else set()
        batch = {e.label for e in self.ledger.entries() if e.round == t}
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "round": t,
            "n_labeled": len(labeled.positions),
            "n_classes_discovered": len(labeled.names),
            "n_new_classes_in_batch": len(batch - before),
            "balanced_accuracy": balanced,
            "known_balanced_accuracy": known,
            "select_seconds": self.select_seconds(t),
        }

    def select(self, t: int, labeled: LabeledSet, model: Any) -> None:
        """Select on round ``t``, save the record and the batch CSV, put the oracle's answers in ledger
        round ``t + 1``. k-means's warning about few points per cluster (small pools) is not shown."""
        s = self.settings
        config = SelectConfig(strategy=self.strategy, budget=s.budget, seed=round_seed(self.seed, t),
                              **s.select.model_dump())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FewPointsPerClusterWarning)
            attrs, arrays = self.choose(t, labeled, model, config, self.dir / f"batch-{t:04d}.csv")
        write_selection_record(self.selection_path(t), attrs, arrays)
        self._select_seconds[t] = float(attrs["timings"]["total"])
        self.ledger.append(self.pool.oracle(arrays["positions"]), t + 1, f"oracle:{self.strategy}")

    def round_missing(self, t: int) -> bool:
        """Whether round ``t`` still has to be written somewhere besides the metrics and the ledger."""
        return False

    def prepare(self, t: int, labeled: LabeledSet, missing: bool) -> Any:
        """Round ``t``'s model (whatever :meth:`evaluation` and :meth:`choose` need), written where kept
        when ``missing`` (what :meth:`round_missing` said of round ``t``)."""
        raise NotImplementedError

    def evaluation(self, t: int, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """The evaluation set's true labels and round ``t``'s logits on it."""
        raise NotImplementedError

    def choose(self, t: int, labeled: LabeledSet, model: Any, config: SelectConfig,
               batch_csv: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Run the selection ``config`` on round ``t``, write ``batch_csv``; the selection record."""
        raise NotImplementedError

    def round_context(self) -> AbstractContextManager:
        """What a round runs under (e.g. a thread limit)."""
        return nullcontext()

    def run(self, rounds: int, tick: Callable[[], None]) -> list[dict]:
        """Bring the run to ``rounds`` selection rounds (fewer once the whole pool is labeled);
        ``tick`` after each round."""
        self.ensure_initial()
        rows = {row["round"]: row for row in self.rows()}
        for t in range(rounds + 1):
            last = self.ledger.last_round()
            if last < t:  # the pool ran out of unlabeled items
                tick()
                continue
            labeled = self.labeled(t)
            select = t < rounds and last <= t and len(labeled.positions) < len(self.pool.ids)
            missing = self.round_missing(t)
            if t in rows and not select and not missing:
                tick()
                continue
            with self.round_context():
                model = self.prepare(t, labeled, missing)
                if t not in rows:
                    rows[t] = self.metrics_row(t, labeled, model)
                    write_metrics(self.metrics_path, rows.values())
                if select:
                    self.select(t, labeled, model)
            tick()
        return [rows[t] for t in sorted(rows)]


class LinearRun(Run):
    """A run on fixed features held in memory: each round trains the linear head once; its logits on
    the pool are what the strategy reads, its logits on the test split give the metrics. Torch runs
    single-threaded (small heads; the same result whatever the load or the runs beside it)."""

    _store = None

    @property
    def store(self):
        """The run's store (``keep_stores``), opened or created on first use."""
        if self._store is None:
            path = self.dir / STORE_NAME
            if path.exists():
                self._store = open_store(path, mode="a")
            else:
                meta = {"simulation": {"strategy": self.strategy, "seed": self.seed}, "pool": self.pool.description}
                self._store = create_store(path, self.pool.ids, meta=meta)
        return self._store

    def round_context(self) -> AbstractContextManager:
        """Torch single-threaded."""
        return torch_threads(1)

    def round_missing(self, t: int) -> bool:
        """A kept store lacks round ``t``."""
        return self.settings.keep_stores and t not in self.store.rounds()

    def prepare(self, t: int, labeled: LabeledSet, missing: bool):
        """Round ``t``'s head, trained once on the round's labeled rows; when the kept store lacks it
        (``missing``), round ``t`` written into the store (float32, so aloe-select on it gives the same batch)."""
        head = fit_linear_head(self.pool.features[labeled.positions], labeled.classes, len(labeled.names),
                               config=self.settings.head)
        if missing:
            provenance = {"mode": "linear", "head": self.settings.head.model_dump(),
                          "simulation": {"strategy": self.strategy, "seed": self.seed, "ledger_round": t}}
            write_head_round(self.store, t, ArrayFeatures(self.pool.features), head, labeled, provenance,
                             feature_dtype="float32")
        return head

    def evaluation(self, t: int, model) -> tuple[np.ndarray, np.ndarray]:
        """The test split's labels and the head's logits on its features."""
        return self.pool.test_labels, head_logits(model, self.pool.test_features)

    def choose(self, t: int, labeled: LabeledSet, model, config: SelectConfig,
               batch_csv: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The strategy on an in-memory view: the pool's features and the head's logits."""
        view = RoundView(ids=self.pool.ids, features=self.pool.features,
                         logits=head_logits(model, self.pool.features), labeled_positions=labeled.positions,
                         labeled_classes=labeled.classes, class_names=tuple(labeled.names),
                         head=self.settings.head.model_dump())
        selection = run_strategy(view, config.strategy, config.budget, config.seed, config.params())
        attrs, arrays = selection_record(selection, self.pool.ids, labeled.positions, request_of(config))
        write_batch_csv(batch_csv, arrays)
        if self.settings.keep_stores:
            self.store.write_selection(t, default_name(config), attrs, arrays, overwrite=True)
        return attrs, arrays


class RunTask:
    """Runs one strategy and seed of a simulation (what each worker process holds: pool and settings)."""

    def __init__(self, out: Path, pool: OracleLabels, settings: SimulationSettings) -> None:
        self.out, self.pool, self.settings = out, pool, settings

    def __call__(self, strategy: str, seed: int, tick: Callable[[], None]) -> list[dict]:
        """Bring the run to the settings' rounds; ``tick`` after each round."""
        if self.settings.mode == "finetune":
            from aloe.loop.finetune_run import FinetuneRun as run_class
        else:
            run_class = LinearRun
        return run_class(self.out, strategy, seed, self.pool, self.settings).run(self.settings.rounds, tick)


def collect_metrics(out: Path) -> list[dict]:
    """Every run's rows under ``out`` (so a directory extended over several commands stays whole)."""
    rows = []
    for path in sorted(out.glob("*/seed-*/metrics.csv")):
        rows.extend(read_metrics(path))
    return rows


def simulate(pool: OracleLabels, settings: SimulationSettings, out: str | Path,
             progress: Callable[[int], Callable[[str], Callable[[], None]]] | None = None, jobs: int = 1) -> Path:
    """Run (or continue) every strategy x seed for ``settings.rounds`` rounds; return metrics.csv.

    ``progress(total_rounds)`` returns ``describe(run_name) -> tick()``; ``None`` runs silently.
    ``jobs > 1`` runs that many strategy x seed runs at once in spawned processes (the cores shared
    out between them); the results are the same as with ``jobs=1``.
    """
    if jobs < 1:
        raise AloeError(f"jobs must be >= 1, got {jobs}")
    if settings.n_initial >= len(pool.ids):
        raise AloeError(f"--initial {settings.n_initial} labels the whole pool ({len(pool.ids)} items) before round "
                        "1: no strategy would select anything; give fewer initial labels")
    out = Path(out)
    _check_or_write_settings(out, settings, pool)
    runs = [(strategy, seed) for strategy in settings.strategies for seed in settings.seeds]
    describe = progress(len(runs) * (settings.rounds + 1)) if progress else None
    task = RunTask(out, pool, settings)
    names = [f"{strategy} seed {seed}" for strategy, seed in runs]
    if jobs == 1 or len(runs) == 1:
        for name, (strategy, seed) in zip(names, runs, strict=True):
            task(strategy, seed, describe(name) if describe else (lambda: None))
    else:
        run_in_workers(task, list(zip(names, runs, strict=True)), min(jobs, len(runs)),
                       (lambda name: describe(name)()) if describe else (lambda name: None))
    path = out / "metrics.csv"
    write_metrics(path, collect_metrics(out))
    return path
