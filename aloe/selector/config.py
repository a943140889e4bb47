"""Selection settings: strict pydantic models shared by the YAML config, the CLI and the Python API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aloe.config import StrictModel


class SelectParams(StrictModel):
    """Tuning knobs the strategies read (each strategy ignores those it does not use)."""

    score: Literal["gradnorm", "energy", "msp", "maxlogit", "knn"] = "gradnorm"
    tpr: float = Field(0.95, gt=0.0, le=1.0, description="share of labeled items kept in-distribution")
    multiplier: int = Field(2, ge=1, description="k = multiplier * max(B, C)")
    backend: Literal["auto", "faiss", "torch"] = "auto"
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

    def params(self) -> SelectParams:
        """The knobs alone, as :class:`SelectParams`."""
        return SelectParams(**self.model_dump(include=set(SelectParams.model_fields)))
