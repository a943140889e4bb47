"""Selection settings: strict pydantic models shared by the YAML config, the CLI and the Python API.

The allowed scores and k-means backends are read from their registries (:data:`aloe.selector.scores.SCORES`,
:data:`aloe.selector.clustering.BACKENDS`); strategy names are checked against
:data:`aloe.selector.strategies.STRATEGIES` (imported when validating: the strategies import this module).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from aloe.config import StrictModel
from aloe.selector.clustering import BACKENDS
from aloe.selector.scores import SCORES


class SelectParams(StrictModel):
    """Tuning knobs the strategies read (each strategy ignores those it does not use)."""

    score: Literal[SCORES] = "msp+knn"
    tpr: float = Field(0.95, gt=0.0, le=1.0, description="share of labeled items kept in-distribution")
    multiplier: int = Field(2, ge=1, description="k = multiplier * max(B, C)")
    per_cluster: int = Field(
        1, ge=1, description="most members one of the top B clusters may give; 1 is the paper's rule"
    )
    backend: Literal[BACKENDS] = "auto"
    niter: int = Field(20, ge=1, description="k-means iterations")
    normalize: bool = Field(True, description="L2-normalize features before clustering / distances")
    knn_k: int = Field(1, ge=1, description="k of the knn score")
    max_points_per_centroid: int | None = Field(
        None, ge=1, description="cap on k-means training points per centroid; None uses every point"
    )
    stream: Literal["auto", "always", "never"] = Field(
        "auto",
        description="stream features from the store (out of core, torch Lloyd k-means); auto: when "
        "the in-memory path would not fit, under torchrun, or with kmeans_sample",
    )
    kmeans_sample: int | None = Field(
        None, ge=1, description="train k-means on this many seeded sample items, assign every item"
    )
    threshold: Literal["out_of_fold", "in_sample"] = Field(
        "out_of_fold",
        description="labeled scores tau is taken over: out_of_fold (each scored by the round's linear head "
        "refit without its fold; a departure from the paper) or in_sample (the paper: the head fit on them)",
    )
    folds: int = Field(5, ge=2, description="folds of the out-of-fold threshold")


class SelectConfig(SelectParams):
    """A whole selection request: which strategy, what budget, which seed, and the knobs."""

    strategy: str = "aloe"
    budget: int = Field(gt=0)
    seed: int = Field(0, ge=0, lt=2**31, description="seeds k-means (FAISS takes a C int) and sampling")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, name: str) -> str:
        return check_strategies([name])[0]

    def params(self) -> SelectParams:
        """The knobs alone, as :class:`SelectParams`."""
        return SelectParams(**self.model_dump(include=set(SelectParams.model_fields)))


def check_strategies(names: list[str]) -> list[str]:
    """``names`` without repeats; ``ValueError`` naming the registered strategies for an unknown one."""
    from aloe.selector.strategies import STRATEGIES

    unknown = [name for name in names if name not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategy {unknown[0]!r}; choose from {', '.join(STRATEGIES)}")
    return list(dict.fromkeys(names))
