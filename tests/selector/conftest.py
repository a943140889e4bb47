"""Fixtures for the selector tests (builders live in ``selector_helpers``)."""

from __future__ import annotations

import warnings

import pytest
from selector_helpers import build_view

from aloe.selector.clustering import FewPointsPerClusterWarning
from aloe.selector.view import RoundView


@pytest.fixture(scope="session")
def small_view() -> RoundView:
    """About 300 items, 4 known classes of 12, 20 labels."""
    return build_view()[0]


@pytest.fixture(autouse=True)
def _quiet_small_clusters():
    """Small test pools have few points per cluster; that warning is tested on its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewPointsPerClusterWarning)
        yield
