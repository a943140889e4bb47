"""ViT-B-32 on a GPU in bf16: the pool pass and a fine-tune epoch against the bare model, in one run.

Random-init weights (no downloads); generated images. Needs torch, torchvision, open_clip, numpy,
zarr, h5py, pydantic, click, tqdm, pillow (and this repository); ``bench/gpu.sh`` installs
the ones a bare GPU machine lacks from carried wheels and runs this.

    python bench/embed/gpu_embed.py --out $OUT/gpu-embed.json

Measures, on one card, each ratio from figures taken in the same run:
- ``pass_vs_bare_device`` / ``_loader``: the real pool pass (DataLoader workers, bf16 autocast, head,
  every block into a Zarr store) over CIFAR-sized (32 px) images, preprocessed on the device
  (workers only read; the GPU resizes to 224) or in the loader workers, against backbone + head on
  preprocessed batches already on the GPU, same batch size (target: ratio >= 0.8);
- ``finetune_vs_step``: one epoch of :func:`aloe.embedder.finetune.finetune` (the recipe: mixup,
  label smoothing, clipping, schedule; data loading and augmentation included) against bare AdamW
  steps of tower + head on a batch already on the GPU, at the same batch size (LabelBench's 400);
- ``jpeg_pool_pass``: the frozen pool pass over a generated pool of ImageNet-LT's size (116,000 JPEGs
  of about 500 x 375), decoded on the GPU (target: under 10 s).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_embed import MODELS, sync, compare, generated_source, machine  # noqa: E402

from aloe.data.sources import manifest_source  # noqa: E402
from aloe.embedder.backbones import OpenClipConfig, build_backbone  # noqa: E402
from aloe.embedder.device import autocast_for  # noqa: E402
from aloe.embedder.finetune import FinetuneConfig, finetune, new_head  # noqa: E402
from aloe.embedder.poolpass import model_encoder, run_pool_pass  # noqa: E402
from aloe.store import create_store  # noqa: E402


SMOKE = OpenClipConfig(kind="open_clip", model="ViT-B-32", pretrained=None, architecture={
    "embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}})


def train_steps(backbone, batch_size: int, steps: int, device: torch.device, n_classes: int = 100) -> float:
    """Images/s of AdamW steps (tower + head, bf16 autocast) on uint8 batches already on the GPU."""
    backbone.reset()
    module = backbone.module.to(device).train()
    head = new_head(backbone.feature_dim, n_classes, 0).to(device)
    optimizer = torch.optim.AdamW([*module.parameters(), *head.parameters()], lr=1e-5, weight_decay=0.01)
    generator = torch.Generator(device=device).manual_seed(0)
    size = backbone.image_size
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, device=device,
                           generator=generator)
    targets = torch.randint(0, n_classes, (batch_size,), device=device, generator=generator)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(device):
            logits = head(backbone(images).float())
        loss_fn(logits.float(), targets).backward()
        optimizer.step()

    for _ in range(3):
        step()
    sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch_size / (time.perf_counter() - started)


def finetune_loop(backbone, n: int, batch_size: int, workers: int, device: torch.device, preprocess: str) -> float:
    """Images/s of one epoch of the real fine-tuning loop (loader, augmentation, mixup, clipping, steps) on
    ``n`` CIFAR-sized images, preprocessing in the loader or on the device."""
    source = generated_source(n, seed=2)
    classes = np.arange(n) % 100
    cfg = FinetuneConfig(epochs=1, batch_size=batch_size, warmup_steps=0, early_stop_patience=0)
    _, stats = finetune(backbone, source, np.arange(n), classes, 100, cfg, device=device, seed=0,
                        workers=workers, preprocess=preprocess, quiet=True)
    return n / stats["seconds"]


def _write_jpeg(task: tuple[Path, int]) -> int:
    """One smooth JPEG of an ImageNet-like size (about 500 x 375); returns its bytes."""
    from PIL import Image

    path, seed = task
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(300, 501)), int(rng.integers(350, 501))
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    image.save(path, quality=90)
    return path.stat().st_size


def jpeg_pool(folder: Path, n: int, workers: int) -> tuple[Path, int]:
    """``n`` generated JPEGs under ``folder`` and their manifest; returns the manifest and total bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.jpg" for i in range(n)]
    with multiprocessing.Pool(max(workers, 1)) as pool:
        sizes = pool.map(_write_jpeg, [(p, i) for i, p in enumerate(paths)], chunksize=256)
    manifest = folder / "manifest.csv"
    manifest.write_text("id,path\n" + "".join(f"{p.stem},{p.name}\n" for p in paths))
    return manifest, int(sum(sizes))


def jpeg_pass(backbone, n: int, batch_size: int, workers: int, device: torch.device, folder: Path) -> dict:
    """The frozen pool pass (features only, as linear mode's cache) over ``n`` generated JPEGs, decoded on
    the device, into a Zarr store; seconds and images/s, the second of two passes (page cache warm)."""
    started = time.perf_counter()
    manifest, total_bytes = jpeg_pool(folder / "jpegs", n, workers)
    generated = time.perf_counter() - started
    source = manifest_source(manifest)
    backbone.reset()
    backbone.module.to(device)
    runs = []
    for _ in range(2):
        store = create_store(folder / f"jpeg-{time.monotonic_ns()}.zarr", source.ids)
        writer = store.begin_cache("bench", feature_dim=backbone.feature_dim)
        report = run_pool_pass(model_encoder(backbone, None, device), source, writer, backbone=backbone,
                               batch_size=batch_size, workers=workers, device=device, preprocess="device", quiet=True)
        writer.commit({})
        runs.append({"seconds": round(report.seconds, 2), "items_per_s": round(report.items_per_s, 1),
                     "unreadable": len(report.skipped)})
    return {"n": n, "mean_jpeg_kb": round(total_bytes / n / 1024, 1), "generate_seconds": round(generated, 1),
            "batch_size": batch_size, "workers": workers, "runs": runs, "seconds": runs[-1]["seconds"],
            "target_seconds": 10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32768, help="pool images for the pass")
    parser.add_argument("--batch-size", type=int, default=1024, help="pool pass batch size")
    parser.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=400, help="LabelBench's batch size")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--finetune-n", type=int, default=24000)
    parser.add_argument("--jpeg-n", type=int, default=116_000, help="JPEG pool size (0: skip)")
    parser.add_argument("--work", type=Path, default=None, help="where the JPEG pool is generated (temporary)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke test only")
    parser.add_argument("--smoke", action="store_true", help="a tiny ViT at 32 px instead of ViT-B-32 (checks the "
                                                             "script on a CPU in seconds; figures meaningless)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_embed.py needs a CUDA device")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    backbone = build_backbone(SMOKE if args.smoke else MODELS["vit-b-32"])
    report = {"benchmark": "ViT-B-32 bf16 on GPU", "machine": machine(device),
              "settings": {k: str(v) for k, v in vars(args).items()}}

    def emit(key: str, value) -> None:
        report[key] = value
        print(json.dumps({key: value}), flush=True)
        if args.out:
            args.out.write_text(json.dumps(report, indent=2) + "\n")

    for preprocess in ("device", "loader"):
        emit(f"pass_vs_bare_{preprocess}", compare("vit-b-32", backbone, args.n, args.batch_size, args.workers,
                                                   args.repeats, device, preprocess=preprocess))
    bare_step = train_steps(backbone, args.train_batch, args.steps, device)
    loops = {p: finetune_loop(backbone, args.finetune_n, args.train_batch, args.workers, device, p)
             for p in ("device", "loader")}
    emit("finetune_vs_step", {
        "batch_size": args.train_batch, "n": args.finetune_n, "workers": args.workers,
        "bare_step_items_per_s": round(bare_step, 1),
        **{f"epoch_{p}_items_per_s": round(v, 1) for p, v in loops.items()},
        **{f"ratio_{p}": round(v / bare_step, 3) for p, v in loops.items()},
    })
    if args.jpeg_n:
        with tempfile.TemporaryDirectory(dir=args.work) as folder:
            emit("jpeg_pool_pass", jpeg_pass(backbone, args.jpeg_n, args.batch_size, max(args.workers, 1), device,
                                             Path(folder)))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
