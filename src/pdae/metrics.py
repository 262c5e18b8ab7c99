"""Reconstruction metrics on [0, 1] images (DESIGN.md §4) and a linear probe on codes."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from pdae.linear import Standardiser, fit_logistic


def mse_per_image(a: Tensor, b: Tensor) -> Tensor:
    return (a.float() - b.float()).square().flatten(1).mean(1)


def ssim_per_image(a: Tensor, b: Tensor) -> Tensor:
    """SSIM with an 11x11 Gaussian window, sigma 1.5, data range 1 (the papers' definition)."""
    return structural_similarity_index_measure(a.float(), b.float(), gaussian_kernel=True, kernel_size=11,
                                               sigma=1.5, data_range=1.0, reduction="none")


def linear_probe_accuracy(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor,
                          l2: float = 1e-4, iterations: int = 200) -> float:
    """Multinomial logistic regression on standardised z, fit by L-BFGS on train, scored on test."""
    standardise = Standardiser.fit(z_train)
    weight, bias = fit_logistic(standardise(z_train), y_train, int(y_train.max()) + 1, l2, iterations)
    return float(((standardise(z_test) @ weight + bias).argmax(1) == y_test).float().mean())
