"""Reconstruction metrics on [0, 1] images, per image (DESIGN.md §4); FID is in pdae.fid."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure


def mse_per_image(a: Tensor, b: Tensor) -> Tensor:
    return (a.float() - b.float()).square().flatten(1).mean(1)


def psnr_per_image(a: Tensor, b: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB for data range 1 (inf for identical images)."""
    return 10 * torch.log10(1 / mse_per_image(a, b))


def ssim_per_image(a: Tensor, b: Tensor) -> Tensor:
    """SSIM with an 11x11 Gaussian window, sigma 1.5, data range 1 (the papers' definition)."""
    return structural_similarity_index_measure(a.float(), b.float(), gaussian_kernel=True, kernel_size=11,
                                               sigma=1.5, data_range=1.0, reduction="none")
