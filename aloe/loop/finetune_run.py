"""The simulation in ``finetune`` mode: the paper's protocol, one real embedding round per round.

Each round resets the backbone to its pretrained weights, fine-tunes it end to end with a new head on
the ledger's labels so far, evaluates that model on the evaluation set, runs the pool pass into the
run's store (:func:`aloe.embedder.round.embed_round`, which keeps the trained weights beside the store
until the round commits), selects on the store round (as ``aloe-select`` does) and asks the oracle.

The evaluation set is the config's ``test:`` dataset, or without one the stratified 20% of the
config's dataset carved out before anything is labeled (those images never enter the pool). Every
step is checked on a rerun, so a kill at any point resumes: a killed fine-tune trains again (seeded,
the same weights on a CPU), a killed pool pass continues from its last chunk, the evaluation logits
(``eval/NNNN.npz``) are saved before the pool pass starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aloe.data.npz import save_npz_atomic
from aloe.data.sources import ImageSource
from aloe.data.subset import SubsetSource
from aloe.embedder.backbones import Backbone
from aloe.embedder.config import EmbedConfig
from aloe.embedder.poolpass import BlocksInMemory, model_encoder, run_pool_pass
from aloe.embedder.round import embed_round
from aloe.errors import AloeError
from aloe.labels import LabeledSet
from aloe.loop.embedded import check_test_classes, config_test_source, describe_test_split, labeled_source
from aloe.loop.oracle import OracleLabels, carve_test_split, labels_digest
from aloe.loop.simulate import STORE_NAME, Run
from aloe.selector.config import SelectConfig
from aloe.selector.select import run_select
from aloe.store import open_store

EVAL_DIR = "eval"


@dataclass(frozen=True)
class ImagePool(OracleLabels):
    """An image dataset split into the pool and the evaluation set, with the config that embeds it."""

    ids: np.ndarray  # (N,) str, the pool
    labels: np.ndarray  # (N,) str
    test_labels: np.ndarray  # (M,) str, the evaluation set
    description: dict
    config: EmbedConfig
    source: ImageSource  # the pool's images (ids as above)
    test_source: ImageSource  # the evaluation set's images


def image_pool(cfg: EmbedConfig, config_path: str | Path) -> ImagePool:
    """The pool and evaluation set of a config: its ``test:`` dataset when it names one (the whole
    dataset is the pool), else a stratified carve-out of the dataset. :class:`AloeError` for data
    without labels, or a test split with classes the pool lacks."""
    dataset = labeled_source(cfg.data, Path(config_path), "pool")
    test_source = config_test_source(cfg, config_path)
    if test_source is not None:
        source, split = dataset, describe_test_split(test_source)
        check_test_classes(np.asarray(test_source.labels), np.asarray(dataset.labels), test_source.name,
                           Path(config_path))
    else:
        keep, test, split = carve_test_split(np.asarray(dataset.labels).astype(str), cfg.seed)
        if len(test) == 0:
            raise AloeError(f"{config_path}: the evaluation split is empty (no class has two items)")
        source, test_source = SubsetSource(dataset, keep, "pool"), SubsetSource(dataset, test, "evaluation")
    ids, labels = np.asarray(source.ids).astype(str), np.asarray(source.labels).astype(str)
    test_labels = np.asarray(test_source.labels).astype(str)
    description = {
        "config": str(config_path),
        "dataset": dataset.name,
        "mode": "finetune",
        "embed": cfg.model_dump(mode="json", include={"backbone", "finetune", "pool", "seed"}),
        "test_split": split,
        "labels_sha256_16": labels_digest(ids, labels, test_labels),
    }
    return ImagePool(ids, labels, test_labels, description, cfg, source, test_source)


class FinetuneRun(Run):
    """A run whose rounds fine-tune the backbone and embed the pool into the run's store."""

    pool: ImagePool

    @property
    def store_path(self) -> Path:
        """The run's store: one real round per simulated round."""
        return self.dir / STORE_NAME

    def eval_path(self, t: int) -> Path:
        """Where round ``t``'s evaluation logits are saved."""
        return self.dir / EVAL_DIR / f"{t:04d}.npz"

    def round_missing(self, t: int) -> bool:
        """The store lacks round ``t``."""
        return not self.store_path.exists() or t not in open_store(self.store_path).rounds()

    def prepare(self, t: int, labeled: LabeledSet, missing: bool) -> None:
        """Write store round ``t`` (fine-tune, evaluate, pool pass) when it is ``missing``."""
        if not missing:
            return
        if self.ledger.last_round() != t:
            raise AloeError(f"{self.ledger.path}: holds rounds past {t} but the store lacks round {t}; "
                            "use another --out")
        cfg = self.pool.config.model_copy(update={"seed": self.seed})
        embed_round(cfg, self.store_path, self.ledger.path, t=t, quiet=not self.settings.round_detail,
                    source=self.pool.source,
                    on_trained=lambda backbone, head, device: self._evaluate(t, backbone, head, device))

    def _evaluate(self, t: int, backbone: Backbone, head: torch.nn.Module, device: torch.device) -> None:
        """Save the trained model's logits on the evaluation set (once per round)."""
        path = self.eval_path(t)
        if path.is_file():
            return
        cfg = self.pool.config
        logits = BlocksInMemory(len(self.pool.test_labels), keep=1)
        report = run_pool_pass(model_encoder(backbone, head, device), self.pool.test_source, logits,
                               backbone=backbone, batch_size=cfg.pool.batch_size, workers=cfg.pool.workers,
                               device=device, preprocess=cfg.pool.preprocess, desc=f"round {t} evaluation",
                               quiet=not self.settings.round_detail)
        readable = np.ones(len(self.pool.test_labels), dtype=bool)
        readable[list(report.skipped)] = False
        save_npz_atomic(path, logits=logits.array(len(self.pool.class_names)), readable=readable)

    def evaluation(self, t: int, model: Any) -> tuple[np.ndarray, np.ndarray]:
        """The readable evaluation images' labels and the round's fine-tuned logits on them."""
        if not self.eval_path(t).is_file():
            raise AloeError(f"{self.eval_path(t)} is missing (round {t} was written without it); use another --out")
        with np.load(self.eval_path(t), allow_pickle=False) as data:
            logits, readable = data["logits"], data["readable"]
        return self.pool.test_labels[readable], logits[readable]

    def choose(self, t: int, labeled: LabeledSet, model: Any, config: SelectConfig,
               batch_csv: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``aloe-select`` on store round ``t`` (a selection recorded there with the same request is
        reused)."""
        outcome = run_select(open_store(self.store_path, mode="a"), config, batch_csv, round=t)
        return outcome.attrs, outcome.arrays
