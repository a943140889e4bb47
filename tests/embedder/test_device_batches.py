"""Preprocessing on the device (run here on the CPU): native reads, JPEG decode, crops, flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from embed_helpers import write_pool
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from aloe.data.sources import ArrayImageSource, manifest_source
from aloe.embedder.backbones import OpenClipConfig, build_backbone
from aloe.embedder.batches import ImageBatches, resolve_preprocess
from aloe.embedder.device_batches import (
    DevicePreprocess,
    RawImages,
    centre_boxes,
    collate_raw,
    random_resized_boxes,
)

CPU = torch.device("cpu")


@pytest.fixture
def backbone(tiny_clip):
    return build_backbone(OpenClipConfig(**tiny_clip))


def _smooth(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour image (resampling filters agree on it, unlike on noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200, 3)
    return np.clip(base + 40 * np.sin(x[..., None] / 9 + y[..., None] / 13 + rng.uniform(0, 3, 3)), 0, 255)


def _jpeg_pool(folder, sizes, broken: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["id,path,label"]
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_smooth(h, w, i).astype(np.uint8)).save(folder / f"{i}.jpg", quality=95)
        rows.append(f"img-{i},{i}.jpg,c{i % 2}")
    for i in range(broken):
        (folder / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
        rows.append(f"bad-{i},bad{i}.jpg,c0")
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return manifest_source(folder / "m.csv")


def test_auto_preprocessing_is_the_loader_on_a_cpu():
    assert resolve_preprocess("auto", CPU) == "loader"
    assert resolve_preprocess("auto", torch.device("cuda")) == "device"
    assert resolve_preprocess("device", CPU) == "device"


def test_jpegs_travel_as_bytes_and_other_files_as_native_pixels(tmp_path):
    source = _jpeg_pool(tmp_path / "j", [(20, 30)])
    png = manifest_source(write_pool(tmp_path / "p", per_class=1))
    _, jpeg_bytes, kind, error = RawImages(source, [0])[0]
    assert kind == "jpeg" and not error and jpeg_bytes.ndim == 1
    _, pixels, kind, error = RawImages(png, [0])[0]
    assert kind == "pixels" and pixels.shape == (3, 24, 24) and pixels.dtype == torch.uint8


def test_array_batches_are_stacked_and_same_size_files_are_not(tmp_path):
    arrays = ArrayImageSource("a", ["x", "y"], np.zeros((2, 5, 7), np.uint8), None, {})
    batch = collate_raw([RawImages(arrays, [0, 1])[k] for k in range(2)])
    assert batch.stacked is not None and batch.stacked.shape == (2, 3, 5, 7)
    files = _jpeg_pool(tmp_path, [(20, 30), (20, 30)])
    assert collate_raw([RawImages(files, [0, 1])[k] for k in range(2)]).stacked is None


@pytest.mark.parametrize("size", [(20, 28), (40, 40), (64, 48)])
def test_eval_on_the_device_matches_the_loader_transform_closely(backbone, tmp_path, size):
    source = _jpeg_pool(tmp_path, [size, size[::-1]])
    loader = ImageBatches(source, [0, 1], backbone, device=CPU, batch_size=2, workers=0, preprocess="loader")
    device = ImageBatches(source, [0, 1], backbone, device=CPU, batch_size=2, workers=0, preprocess="device")
    (_, expected, _), = list(loader)
    (_, got, errors), = list(device)
    assert got.shape == (2, 3, 32, 32) and got.dtype == torch.float32 and errors == ["", ""]
    assert (got - expected.float()).abs().mean() < 2.0  # of 255 (about 0.4-0.7 seen; a flipped image: 23+)


def test_unreadable_files_come_back_black_with_their_error(backbone, tmp_path):
    source = _jpeg_pool(tmp_path, [(20, 30), (30, 20)], broken=1)
    (positions, images, errors), = list(ImageBatches(source, [0, 1, 2], backbone, device=CPU, batch_size=3,
                                                     workers=0, preprocess="device"))
    assert positions.tolist() == [0, 1, 2] and errors[:2] == ["", ""] and errors[2]
    assert images[2].abs().sum() == 0 and images[0].abs().sum() > 0


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 400), w=st.integers(1, 400), seed=st.integers(0, 2**16))
def test_random_resized_boxes_lie_inside_the_image(h, w, seed):
    boxes = random_resized_boxes(np.array([h]), np.array([w]), np.random.default_rng(seed))
    x1, y1, x2, y2 = boxes[0]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    area = (x2 - x1) * (y2 - y1) / (h * w)
    assert area <= 1.0 + 1e-9


def test_centre_boxes_are_the_centred_square():
    assert centre_boxes(np.array([20]), np.array([30])).tolist() == [[5.0, 0.0, 25.0, 20.0]]


def test_training_crops_and_flips_are_seeded(backbone):
    pixels = np.stack([_smooth(24, 36, i) for i in range(4)]).astype(np.uint8)
    source = ArrayImageSource("a", [f"i{i}" for i in range(4)], pixels, None, {})
    batch = collate_raw([RawImages(source, range(4))[k] for k in range(4)])
    first = DevicePreprocess(32, CPU, train=True, augment="crop_flip", seed=3)(batch)[0]
    again = DevicePreprocess(32, CPU, train=True, augment="crop_flip", seed=3)(batch)[0]
    other = DevicePreprocess(32, CPU, train=True, augment="crop_flip", seed=4)(batch)[0]
    plain = DevicePreprocess(32, CPU)(batch)[0]
    assert torch.equal(first, again) and not torch.equal(first, other) and not torch.equal(first, plain)


def test_finetune_and_pool_pass_run_with_device_preprocessing(backbone, tmp_path):
    from aloe.embedder.finetune import FinetuneConfig, finetune

    source = _jpeg_pool(tmp_path, [(20 + i, 30 - i) for i in range(6)])
    cfg = FinetuneConfig(epochs=2, batch_size=4, lr=1e-3, warmup_steps=0, early_stop_patience=0)
    head, stats = finetune(backbone, source, np.arange(6), np.arange(6) % 2, 2, cfg, device=CPU, seed=0,
                           workers=0, preprocess="device", quiet=True)
    assert stats["trained"] and stats["steps"] == 4 and head.out_features == 2


def test_pool_pass_with_device_preprocessing_writes_every_row_and_lists_the_unreadable(backbone, tmp_path):
    from aloe.embedder.poolpass import model_encoder, run_pool_pass
    from aloe.store import create_store

    source = _jpeg_pool(tmp_path / "imgs", [(20 + i, 30) for i in range(5)], broken=1)
    store = create_store(tmp_path / "s.zarr", source.ids)
    writer = store.begin_cache("k", feature_dim=backbone.feature_dim, chunk_rows=4)
    report = run_pool_pass(model_encoder(backbone, None, CPU), source, writer, backbone=backbone, batch_size=4,
                           workers=0, device=CPU, preprocess="device", quiet=True)
    writer.commit({})
    assert report.rows == 6 and list(report.skipped) == [5]
    features = store.cached_features("k").features(np.arange(6))
    assert features.shape == (6, backbone.feature_dim) and np.isfinite(features).all()
