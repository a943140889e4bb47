"""The ``aloe-embed`` config: backbone, dataset, mode and training settings, pool pass settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aloe.config import StrictModel
from aloe.data.sources import DataConfig
from aloe.embedder.backbones import BackboneConfig
from aloe.embedder.batches import Preprocess
from aloe.embedder.device import DeviceChoice
from aloe.embedder.finetune import FinetuneConfig
from aloe.embedder.head import LinearHeadConfig

Mode = Literal["finetune", "linear"]


class PoolConfig(StrictModel):
    """The pool pass: inference batch size, loader workers, where preprocessing runs, store chunking and
    feature dtype."""

    batch_size: int = Field(256, ge=1)
    workers: int = Field(2, ge=0)
    chunk_rows: int = Field(8192, ge=1)
    feature_dtype: Literal["float16", "float32"] = "float16"
    preprocess: Preprocess = Field(
        "auto", description="where images are decoded/resized/augmented: loader workers, or the device "
                            "(auto: the device on CUDA, the loader on a CPU); also used by fine-tuning")


class EmbedConfig(StrictModel):
    """Everything one ``aloe-embed`` round needs besides the store and the labels."""

    backbone: BackboneConfig
    data: DataConfig
    test: DataConfig | None = Field(
        None, description="the benchmark's own test split (simulation metrics); none: a stratified carve-out")
    mode: Mode = "finetune"
    finetune: FinetuneConfig = FinetuneConfig()
    linear: LinearHeadConfig = LinearHeadConfig()
    pool: PoolConfig = PoolConfig()
    device: DeviceChoice = "auto"
    seed: int = Field(0, ge=0)
