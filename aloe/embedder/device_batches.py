"""Preprocessing on the model's device: loader workers only read, the device decodes, crops and resizes.

The loader-side path (:mod:`aloe.embedder.transforms`) resizes every image on the CPU before it
travels; on a GPU that caps a ViT-B/32 pool pass at what the CPU workers can resize. Here workers
hand over what is stored, at native resolution:

- an array pool's uint8 pixels (all one size: the batch is stacked, pinned and copied once, without
  waiting);
- a file pool's JPEG bytes, decoded on the device (``torchvision.io.decode_jpeg(..., device="cuda")``,
  nvJPEG) or on the CPU when the device is one; other formats are decoded by PIL in the worker.

On the device every image becomes the backbone's ``S x S`` input through one ``roi_align`` per batch
(per image when sizes differ): eval takes the centred square of side ``min(H, W)`` (the region that
resize-short-side + centre-crop keeps); training takes a random-resized-crop box (scale 0.7-1,
aspect 3/4-4/3, torchvision's sampling) and flips half the images. ``roi_align`` with adaptive
sampling averages several samples per output pixel when it shrinks (antialiasing) and interpolates
bilinearly when it enlarges; the loader path uses PIL's bicubic filter, so the two agree closely,
not bit for bit. The output is float on the 0-255 scale; the backbone normalises it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.ops import roi_align

from aloe.data.images import UNREADABLE
from aloe.data.sources import ArrayImageSource, FileImageSource, ImageSource
from aloe.embedder.transforms import CROP_SCALE

JPEG_MAGIC = b"\xff\xd8"
RATIO = (3 / 4, 4 / 3)


def _pixels(image: np.ndarray | Image.Image) -> torch.Tensor:
    """A ``(3, H, W)`` uint8 tensor of an RGB/grayscale array or a PIL image."""
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def read_raw(source: ImageSource, index: int) -> tuple[torch.Tensor, str]:
    """What a worker hands over for item ``index``: ``(tensor, kind)``.

    ``kind`` is ``"jpeg"`` (the file's bytes, 1-D uint8) or ``"pixels"`` (``(3, H, W)`` uint8 at native
    size). Raises like :meth:`ImageSource.load` when the item cannot be read.
    """
    if isinstance(source, ArrayImageSource):
        return _pixels(source.images[index]), "pixels"
    if isinstance(source, FileImageSource):
        data = source.paths[index].read_bytes()
        if data[:2] == JPEG_MAGIC:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), "jpeg"
    return _pixels(source.load(index)), "pixels"


@dataclass
class RawBatch:
    """A collated batch of native items; ``stacked`` holds them as one tensor when all are same-size pixels."""

    positions: torch.Tensor
    items: list[torch.Tensor]
    kinds: list[str]
    errors: list[str]
    stacked: torch.Tensor | None = None

    def pin_memory(self) -> RawBatch:
        """Page-locked copies (the DataLoader calls this with ``pin_memory=True``)."""
        if self.stacked is not None:
            return RawBatch(self.positions, [], self.kinds, self.errors, self.stacked.pin_memory())
        items = [item if kind == "jpeg" else item.pin_memory() for item, kind in zip(self.items, self.kinds,
                                                                                     strict=True)]
        return RawBatch(self.positions, items, self.kinds, self.errors)

    def __len__(self) -> int:
        return len(self.kinds)


class RawImages(torch.utils.data.Dataset):
    """Items ``positions`` of ``source`` as ``(position, tensor, kind, error)``; unread: empty pixels."""

    def __init__(self, source: ImageSource, positions) -> None:
        self.source, self.positions = source, positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, k: int) -> tuple[int, torch.Tensor, str, str]:
        position = int(self.positions[k])
        try:
            tensor, kind = read_raw(self.source, position)
            return position, tensor, kind, ""
        except UNREADABLE as exc:
            return position, torch.zeros(3, 0, 0, dtype=torch.uint8), "pixels", f"{type(exc).__name__}: {exc}"


def collate_raw(items: list[tuple[int, torch.Tensor, str, str]]) -> RawBatch:
    """Keep native sizes; stack when every item is readable pixels of one shape (array pools)."""
    positions = torch.tensor([item[0] for item in items], dtype=torch.int64)
    tensors, kinds, errors = [item[1] for item in items], [item[2] for item in items], [item[3] for item in items]
    same = all(k == "pixels" for k in kinds) and not any(errors) and len({t.shape for t in tensors}) == 1
    if same:
        return RawBatch(positions, [], kinds, errors, torch.stack(tensors))
    return RawBatch(positions, tensors, kinds, errors)


def centre_boxes(heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """``(B, 4)`` boxes ``x1, y1, x2, y2`` of each image's centred square of side ``min(H, W)``."""
    side = np.minimum(heights, widths).astype(np.float64)
    x1, y1 = (widths - side) / 2, (heights - side) / 2
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def random_resized_boxes(heights: np.ndarray, widths: np.ndarray, rng: np.random.Generator,
                         scale: tuple[float, float] = CROP_SCALE, ratio: tuple[float, float] = RATIO,
                         attempts: int = 10) -> np.ndarray:
    """``(B, 4)`` random-resized-crop boxes, sampled as torchvision's ``RandomResizedCrop`` does.

    Up to ``attempts`` draws of area share in ``scale`` and log-uniform aspect in ``ratio``; the first
    that fits is placed uniformly; when none fits, the centred crop of the aspect clamped to ``ratio``.
    """
    n = len(heights)
    area = (heights * widths).astype(np.float64)[:, None]
    target = area * rng.uniform(*scale, size=(n, attempts))
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=(n, attempts)))
    w = np.round(np.sqrt(target * aspect))
    h = np.round(np.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= widths[:, None]) & (h <= heights[:, None])
    u = rng.uniform(size=(n, 2))
    boxes = np.empty((n, 4), dtype=np.float64)
    for i in range(n):
        found = np.flatnonzero(fits[i])
        if len(found):
            a = found[0]
            bw, bh = w[i, a], h[i, a]
            x1 = np.floor(u[i, 0] * (widths[i] - bw + 1))
            y1 = np.floor(u[i, 1] * (heights[i] - bh + 1))
        else:
            in_ratio = widths[i] / heights[i]
            bw, bh = float(widths[i]), float(heights[i])
            if in_ratio < ratio[0]:
                bh = round(bw / ratio[0])
            elif in_ratio > ratio[1]:
                bw = round(bh * ratio[1])
            x1, y1 = (widths[i] - bw) // 2, (heights[i] - bh) // 2
        boxes[i] = (x1, y1, x1 + bw, y1 + bh)
    return boxes


def crop_resize(images: torch.Tensor | list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box resized to ``size x size``: float ``(B, 3, size, size)`` on the images' device.

    ``images`` is one ``(B, 3, H, W)`` tensor (one ``roi_align`` call) or a list of ``(3, H_i, W_i)``.
    """
    if isinstance(images, torch.Tensor):
        index = torch.arange(len(images), device=images.device, dtype=boxes.dtype)[:, None]
        return roi_align(images.float(), torch.cat([index, boxes], dim=1), size, 1.0, -1, True)
    origin = boxes.new_zeros((1, 1))
    return torch.cat([roi_align(image[None].float(), torch.cat([origin, box[None]], dim=1), size, 1.0, -1, True)
                      for image, box in zip(images, boxes, strict=True)])


def decode_on(device: torch.device, data: list[torch.Tensor]) -> list[torch.Tensor | str]:
    """Decode JPEG byte tensors to ``(3, H, W)`` uint8 on ``device`` (nvJPEG on CUDA); a failed item
    becomes its error message. A batch that fails as a whole is decoded item by item."""
    if not data:
        return []
    try:
        decoded = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        return [image.to(device) for image in decoded]
    except (RuntimeError, ValueError):
        if len(data) == 1:
            try:
                return [decode_jpeg(data[0], mode=ImageReadMode.RGB).to(device)]
            except (RuntimeError, ValueError) as exc:
                return [f"{type(exc).__name__}: {exc}".splitlines()[0]]
        return [result for item in data for result in decode_on(device, [item])]


class DevicePreprocess:
    """Turns :class:`RawBatch` es into the backbone's input on ``device``.

    ``train``: random-resized crops (``augment`` ``crop``/``crop_flip``) and flips (``crop_flip``),
    drawn from ``seed`` batch after batch; otherwise the centred square. Unreadable items come back
    black, with their error.
    """

    def __init__(self, image_size: int, device: torch.device, *, train: bool = False, augment: str = "none",
                 seed: int = 0) -> None:
        self.size, self.device = image_size, device
        self.crop = train and augment in ("crop", "crop_flip")
        self.flip = train and augment == "crop_flip"
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: RawBatch) -> tuple[torch.Tensor, list[str]]:
        errors = list(batch.errors)
        if batch.stacked is not None:
            images: torch.Tensor | list[torch.Tensor] = batch.stacked.to(self.device, non_blocking=True)
            heights = np.full(len(batch), images.shape[2])
            widths = np.full(len(batch), images.shape[3])
        else:
            images = self._gather(batch, errors)
            heights = np.array([image.shape[1] for image in images])
            widths = np.array([image.shape[2] for image in images])
        boxes = random_resized_boxes(heights, widths, self.rng) if self.crop else centre_boxes(heights, widths)
        out = crop_resize(images, torch.as_tensor(boxes, dtype=torch.float32).to(self.device), self.size)
        if self.flip:
            flips = torch.from_numpy(self.rng.random(len(batch)) < 0.5).to(self.device)
            out = torch.where(flips[:, None, None, None], out.flip(-1), out)
        broken = [i for i, error in enumerate(errors) if error]
        if broken:
            out[broken] = 0.0
        return out, errors

    def _gather(self, batch: RawBatch, errors: list[str]) -> list[torch.Tensor]:
        """Every item as ``(3, H, W)`` uint8 on the device (JPEGs decoded together); a black square for
        an unreadable one, whose error is filled in."""
        jpegs = [i for i, kind in enumerate(batch.kinds) if kind == "jpeg"]
        decoded = dict(zip(jpegs, decode_on(self.device, [batch.items[i] for i in jpegs]), strict=True))
        blank = torch.zeros(3, self.size, self.size, dtype=torch.uint8, device=self.device)
        images = []
        for i, item in enumerate(batch.items):
            item = decoded.get(i, item)
            if isinstance(item, str):
                errors[i] = item
            if errors[i]:
                images.append(blank)
            else:
                images.append(item.to(self.device, non_blocking=True))
        return images
