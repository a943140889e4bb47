"""Versions of Python and of installed packages, for the provenance a run or a built pool records."""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata


def package_versions(names: Iterable[str], absent: str | None = None) -> dict[str, str]:
    """``{"python": ..., name: version, ...}`` in the order of ``names``; a package that is not
    installed gets ``absent``, or is left out when ``absent`` is ``None``."""
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if absent is not None:
                found[name] = absent
    return found
