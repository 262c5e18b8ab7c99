"""Pixels to model tensors: value ranges, resizing with a center crop, channel counts, PIL decoding."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pdae.data.source import Spec
from pdae.errors import DataError

_LUMA_601 = (0.299, 0.587, 0.114)
PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map model-range images [-1, 1] to [0, 1] for saving or metrics, clamping overshoot."""
    return ((x + 1) / 2).clamp(0, 1)


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] images to the [-1, 1] range the diffusion model works in."""
    return x * 2 - 1


def uint8_to_model(a: np.ndarray) -> torch.Tensor:
    """Map a uint8 (C, H, W) array to float32 in [-1, 1], with 0 -> -1 and 255 -> 1 exactly."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).div_(127.5).sub_(1.0)


def _cover_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) after scaling so that the shorter side equals `size`."""
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def resize_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) so the shorter side is `size` (antialiased bilinear), then center-crop a square."""
    h, w = x.shape[-2:]
    nh, nw = _cover_size(h, w, size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size]


def match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Give (C, H, W) the wanted channel count: alpha dropped, gray->RGB by repeat, RGB->gray by 601 luma."""
    x = x[:3]
    if x.shape[0] == channels:
        return x
    if channels == 3:
        return x.repeat(3, 1, 1)
    return (x * torch.tensor(_LUMA_601, dtype=x.dtype).view(3, 1, 1)).sum(0, keepdim=True)


def _pil_to_model(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Convert mode, resize the shorter side (bicubic) and center-crop a PIL image to a model tensor."""
    if img.mode.startswith("I;16"):  # 16-bit grayscale: PIL's own conversion would clip it at 255
        img = Image.fromarray(np.round(np.asarray(img, dtype=np.float64) / 257).astype(np.uint8))
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    nh, nw = _cover_size(h, w, size)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    a = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return uint8_to_model(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


def load_pil(src: Path | io.BytesIO, name: str, spec: Spec) -> torch.Tensor:
    """Decode one image file or buffer; any decoding failure becomes a DataError naming `name`."""
    try:
        with Image.open(src) as img:
            return _pil_to_model(img, spec.image_size, spec.channels)
    except PIL_ERRORS as e:
        raise DataError(f"cannot read image {name}: {e}") from e


def load_image(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """One image file as a model tensor (channels, size, size) in [-1, 1], resized and center-cropped."""
    if not path.is_file():
        raise DataError(f"no image file at {path}")
    return load_pil(path, str(path), Spec(image_size, channels, "test", None, False))
