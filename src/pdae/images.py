"""Writing model-range images ([-1, 1]) as PNG grids and [0, 1] arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from pdae.checkpoint import atomic_write


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    unit = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return (unit * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def make_grid(images: Tensor, ncols: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile (N, C, H, W) images into one uint8 picture, `ncols` per row (default: near square)."""
    pixels = to_uint8(images)
    n, h, w, c = pixels.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + padding) + padding, ncols * (w + padding) + padding, c), 255, np.uint8)
    for i, image in enumerate(pixels):
        top, left = padding + (i // ncols) * (h + padding), padding + (i % ncols) * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_grid(images: Tensor, path: Path, ncols: int | None = None) -> Path:
    grid = make_grid(images, ncols)
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    atomic_write(Path(path), lambda tmp: picture.save(tmp, format="PNG"))
    return Path(path)


def save_npz(path: Path, **arrays: Tensor) -> Path:
    """Save model-range image tensors as float32 arrays in [0, 1], shape (N, C, H, W)."""
    unit = {k: ((v.detach().float().cpu() + 1) / 2).clamp(0, 1).numpy() for k, v in arrays.items()}
    atomic_write(Path(path), lambda tmp: np.savez(open(tmp, "wb"), **unit))
    return Path(path)
