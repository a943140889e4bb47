"""A real topic-labelled text corpus that needs no download: documentation of Python's standard library.

Each item is the first paragraph of a public function's, class's or method's docstring; its class is
the standard-library package or module the object is defined in (``asyncio``, ``email``, ``http``,
...). The text is what the installed Python ships, so the corpus is fixed for a given Python version
(record it next to anything built from it). A paragraph found under two packages is left out.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import pkgutil
import warnings
from collections.abc import Iterator
from types import ModuleType

from aloe.errors import AloeError

MIN_CHARS = 40
SKIPPED_PARTS = ("test", "tests", "testing")


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Discard what is printed meanwhile: importing a module can print (``PIL.report`` prints a whole
    report; some modules print install hints for optional extras)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _quiet_import(name: str) -> ModuleType:
    """Import ``name`` with whatever it prints while importing discarded."""
    with _silenced():
        return importlib.import_module(name)


def _submodules(package: str) -> Iterator[ModuleType]:
    """The package and its public, non-test submodules that import on this platform (sorted)."""
    root = _quiet_import(package)
    yield root
    with _silenced():  # walking imports the subpackages
        found = list(pkgutil.walk_packages(getattr(root, "__path__", []), package + "."))
    for info in found:
        parts = info.name.split(".")[1:]
        if any(part.startswith("_") or part in SKIPPED_PARTS for part in parts):
            continue
        try:
            yield _quiet_import(info.name)
        except Exception:  # noqa: BLE001 - platform-specific modules (asyncio.windows_events, ...)
            continue


def _documented(module: ModuleType) -> Iterator[object]:
    """Public functions and classes defined in ``module``, and the public methods those classes define."""
    for name, obj in inspect.getmembers(module):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield obj
        elif inspect.isclass(obj):
            yield obj
            yield from (v for k, v in vars(obj).items() if inspect.isfunction(v) and not k.startswith("_"))


def first_paragraph(obj: object) -> str | None:
    """The docstring's first paragraph on one line, or ``None`` when shorter than ``MIN_CHARS``."""
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    text = " ".join(doc.strip().split("\n\n")[0].split())
    return text if len(text) >= MIN_CHARS else None


def package_paragraphs(package: str) -> list[str]:
    """Distinct first paragraphs of the docstrings defined under ``package``, in discovery order."""
    found: dict[str, None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            modules = list(_submodules(package))
        except ImportError as exc:
            raise AloeError(f"cannot import {package!r} for the docstring corpus ({exc})") from None
        for module in modules:
            for obj in _documented(module):
                text = first_paragraph(obj)
                if text is not None:
                    found.setdefault(text)
    return list(found)


def docstring_corpus(packages: list[str] | tuple[str, ...]) -> tuple[list[str], list[int]]:
    """Texts and their class (index into ``packages``); paragraphs under two packages are dropped."""
    per_package = [package_paragraphs(p) for p in packages]
    owners: dict[str, set[int]] = {}
    for index, texts in enumerate(per_package):
        for text in texts:
            owners.setdefault(text, set()).add(index)
    texts, targets = [], []
    for index, paragraphs in enumerate(per_package):
        kept = [t for t in paragraphs if len(owners[t]) == 1]
        if not kept:
            raise AloeError(f"{packages[index]!r} has no docstrings of its own for the corpus")
        texts.extend(kept)
        targets.extend([index] * len(kept))
    return texts, targets
