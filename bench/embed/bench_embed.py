"""Pool pass items/s against the bare model forward pass, same device, same batch size, one run.

The bare forward runs the backbone and head on preprocessed batches already in memory on the device
(normalised floats). The pool pass is the real thing: ``run_pool_pass`` with a ``DataLoader`` over an
image source (resize, crop, uint8 tensors), on-device normalisation, the head, and every block
streamed into a fresh round of a real Zarr store (``--preprocess device``: workers only read, the
device crops and resizes). The two alternate ``--repeats`` times after a
warm-up; the figures are medians and the ratio is pass / bare (target >= 0.8).

    python bench/embed/bench_embed.py --out bench/embed/results-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aloe.data.sources import ArrayImageSource, ImageSource  # noqa: E402
from aloe.embedder.backbones import Backbone, OpenClipConfig, TimmConfig, build_backbone  # noqa: E402
from aloe.embedder.device import autocast_for, resolve_device  # noqa: E402
from aloe.embedder.finetune import new_head  # noqa: E402
from aloe.embedder.poolpass import model_encoder, run_pool_pass  # noqa: E402
from aloe.embedder.transforms import eval_transform  # noqa: E402
from aloe.store import create_store  # noqa: E402

MODELS = {
    "efficientnet-lite0": TimmConfig(kind="timm", image_size=96),
    "vit-b-32": OpenClipConfig(kind="open_clip", model="ViT-B-32", pretrained=None),
}
DEFAULT_N = {"efficientnet-lite0": 1024, "vit-b-32": 192}  # images per model
DEFAULT_BATCH = {"efficientnet-lite0": 128, "vit-b-32": 32}


def per_model(parser: argparse.ArgumentParser, option: str, given: list[int] | None, models: list[str],
              defaults: dict[str, int]) -> list[int]:
    """One value of ``option`` per model: the given ones (one value serves every model), else the defaults."""
    if given is None:
        return [defaults[name] for name in models]
    if len(given) == 1:
        return given * len(models)
    if len(given) != len(models):
        parser.error(f"{option} takes one value, or one per model ({len(models)}), not {len(given)}")
    return given


def generated_source(n: int, side: int = 32, seed: int = 0) -> ArrayImageSource:
    """``n`` random RGB images of ``side`` pixels (CIFAR-sized by default), seeded."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    return ArrayImageSource("generated", [f"img-{i:07d}" for i in range(n)], pixels, None, {})


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward(backbone: Backbone, head: torch.nn.Module, batches: list[torch.Tensor],
                 device: torch.device) -> float:
    """Images/s of backbone + head on normalised batches already on ``device``."""
    sync(device)
    started = time.perf_counter()
    with torch.inference_mode(), autocast_for(device):
        for batch in batches:
            head(backbone.module(batch).float())
    sync(device)
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def pool_pass(backbone: Backbone, head: torch.nn.Module, source: ImageSource, batch_size: int,
              workers: int, device: torch.device, folder: Path, preprocess: str = "loader") -> float:
    """Images/s of the full pool pass into a fresh store round (store creation not timed)."""
    store = create_store(folder / f"bench-{time.monotonic_ns()}.zarr", source.ids)
    writer = store.begin_round(0, feature_dim=backbone.feature_dim, class_names=[f"c{i}" for i in range(10)],
                               labeled_positions=np.zeros(0, np.int64), labeled_classes=np.zeros(0, np.int64))
    started = time.perf_counter()
    run_pool_pass(model_encoder(backbone, head, device), source, writer, backbone=backbone,
                  batch_size=batch_size, workers=workers, device=device, preprocess=preprocess, quiet=True)
    writer.commit()
    return len(source) / (time.perf_counter() - started)


def compare(name: str, backbone: Backbone, n: int, batch_size: int, workers: int, repeats: int,
            device: torch.device, distinct: int = 8192, preprocess: str = "loader") -> dict:
    """Alternate bare forward and pool pass ``repeats`` times after a warm-up; medians and ratio.

    The bare forward covers the same ``n`` images as the pass, cycling through the first
    ``distinct`` preprocessed ones (preprocessing is not what it measures).
    """
    source = generated_source(n)
    transform = eval_transform(backbone)
    backbone.module.to(device).eval()
    head = new_head(backbone.feature_dim, 10, 0).to(device)
    cached = min(n, max(distinct // batch_size, 1) * batch_size)
    images = torch.stack([transform(source.load(i)) for i in range(cached)])
    distinct_batches = [backbone.normalize(images[s : s + batch_size].to(device))
                        for s in range(0, cached, batch_size)]
    batches = [distinct_batches[k % len(distinct_batches)] for k in range(-(-n // batch_size))]
    bare, passes = [], []
    with tempfile.TemporaryDirectory() as folder:
        bare_forward(backbone, head, batches[:2], device)
        pool_pass(backbone, head, generated_source(2 * batch_size, seed=1), batch_size, workers, device,
                  Path(folder), preprocess)
        for _ in range(repeats):
            bare.append(bare_forward(backbone, head, batches, device))
            passes.append(pool_pass(backbone, head, source, batch_size, workers, device, Path(folder), preprocess))
    return {
        "model": name, "backbone": backbone.name, "image_size": backbone.image_size, "n_images": n,
        "preprocess": preprocess,
        "batch_size": batch_size, "workers": workers, "repeats": repeats,
        "bare_forward_items_per_s": round(statistics.median(bare), 1),
        "pool_pass_items_per_s": round(statistics.median(passes), 1),
        "ratio": round(statistics.median(passes) / statistics.median(bare), 3),
        "bare_runs": [round(x, 1) for x in bare], "pass_runs": [round(x, 1) for x in passes],
    }


def machine(device: torch.device) -> dict:
    """Where the figures come from."""
    info = {"device": str(device), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    if device.type == "cuda":
        info["card"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = platform.processor() or platform.machine()
        info["load_average_at_start"] = os.getloadavg()
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--n", type=int, nargs="+", help=f"images: one value, or one per model {DEFAULT_N}")
    parser.add_argument("--batch-size", type=int, nargs="+", help=f"one value, or one per model {DEFAULT_BATCH}")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--preprocess", default="loader", choices=["loader", "device"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    report = {"benchmark": "pool pass vs bare forward", "machine": machine(device), "results": []}
    sizes = per_model(parser, "--n", args.n, args.models, DEFAULT_N)
    batches = per_model(parser, "--batch-size", args.batch_size, args.models, DEFAULT_BATCH)
    for name, n, batch_size in zip(args.models, sizes, batches, strict=True):
        torch.manual_seed(0)
        result = compare(name, build_backbone(MODELS[name]), n, batch_size, args.workers, args.repeats, device,
                         preprocess=args.preprocess)
        report["results"].append(result)
        print(json.dumps(result), flush=True)
    if device.type == "cpu":
        report["machine"]["load_average_at_end"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
