"""Package versions recorded as provenance."""

from __future__ import annotations

import platform
from importlib import metadata

from aloe.internal.versions import package_versions

ABSENT = "surely-not-an-installed-package-aloe"


def test_installed_packages_give_their_versions_in_order_after_python():
    found = package_versions(["numpy", ABSENT], absent="absent")
    assert list(found.items()) == [("python", platform.python_version()), ("numpy", metadata.version("numpy")),
                                   (ABSENT, "absent")]


def test_packages_not_installed_are_left_out_without_a_marker():
    assert package_versions([ABSENT, "numpy"]) == {"python": platform.python_version(),
                                                   "numpy": metadata.version("numpy")}
