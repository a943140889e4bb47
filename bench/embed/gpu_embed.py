"""ViT-B-32 on a GPU in bf16: pool pass vs bare forward, and fine-tuning images/s. Prints JSON.

Random-init weights (no downloads); generated CIFAR-sized images, resized to 224 by the loader.
Needs torch, open_clip, numpy, zarr, h5py, pydantic, click, tqdm (and this repository).

    python bench/embed/gpu_embed.py --out $OUT/gpu-embed.json

Measures, on one card:
- ``pass_vs_bare``: the real pool pass (DataLoader workers, uint8 batches, on-device normalisation,
  bf16 autocast, head, every block into a Zarr store) against backbone + head on preprocessed
  batches already on the GPU, same batch size;
- ``train_step``: one AdamW step of tower + linear head in bf16 on batches already on the GPU;
- ``finetune_loop``: :func:`aloe.embedder.finetune.finetune` for one epoch, data loading included.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_embed import MODELS, sync, compare, generated_source, machine  # noqa: E402

from aloe.embedder.backbones import build_backbone  # noqa: E402
from aloe.embedder.device import autocast_for  # noqa: E402
from aloe.embedder.finetune import FinetuneConfig, finetune, new_head  # noqa: E402


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


def finetune_loop(backbone, n: int, batch_size: int, workers: int, device: torch.device) -> float:
    """Images/s of one epoch of the real fine-tuning loop (loader, augmentation, steps) on ``n`` images."""
    source = generated_source(n, seed=2)
    classes = np.arange(n) % 100
    cfg = FinetuneConfig(epochs=1, batch_size=batch_size, augment="crop_flip")
    _, stats = finetune(backbone, source, np.arange(n), classes, 100, cfg, device=device, seed=0,
                        workers=workers, quiet=True)
    return n / stats["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=65536, help="pool images for the pass")
    parser.add_argument("--batch-size", type=int, default=1024, help="pool pass batch size")
    parser.add_argument("--workers", type=int, default=max(1, min(14, (os.cpu_count() or 2) - 2)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-batch", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--finetune-n", type=int, default=16384)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke test only")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_embed.py needs a CUDA device")
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(0)
    backbone = build_backbone(MODELS["vit-b-32"])
    report = {"benchmark": "ViT-B-32 bf16 on GPU", "machine": machine(device), "settings": vars(args) | {"out": None}}
    report["pass_vs_bare"] = compare("vit-b-32", backbone, args.n, args.batch_size, args.workers, args.repeats,
                                     device)
    print(json.dumps(report["pass_vs_bare"]), flush=True)
    report["train_step"] = {f"batch_{b}": round(train_steps(backbone, b, args.steps, device), 1)
                            for b in args.train_batch}
    print(json.dumps(report["train_step"]), flush=True)
    report["finetune_loop"] = {"n": args.finetune_n, "batch_size": args.train_batch[0], "workers": args.workers,
                               "items_per_s": round(finetune_loop(backbone, args.finetune_n, args.train_batch[0],
                                                                  args.workers, device), 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
