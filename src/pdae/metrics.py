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


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID on whatever network made them).

    |mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2), in float64 through symmetric
    eigendecompositions, which stay real where a general matrix square root can turn complex.
    """
    a, b = features_a.double(), features_b.double()
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _psd_sqrt(cov_a)
    cross = _psd_sqrt(root_a @ cov_b @ root_a)
    return float((a.mean(0) - b.mean(0)).square().sum() + torch.trace(cov_a + cov_b - 2 * cross))


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """The square root of a symmetric positive semi-definite matrix (negative rounding clipped to 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def linear_probe_accuracy(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor,
                          l2: float = 1e-4, iterations: int = 200) -> float:
    """Multinomial logistic regression on standardised z, fit by L-BFGS on train, scored on test."""
    standardise = Standardiser.fit(z_train)
    weight, bias = fit_logistic(standardise(z_train), y_train, int(y_train.max()) + 1, l2, iterations)
    return float(((standardise(z_test) @ weight + bias).argmax(1) == y_test).float().mean())
