"""Reconstruction metrics on [0, 1] images (DESIGN.md §4) and a linear probe on codes."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure


def mse_per_image(a: Tensor, b: Tensor) -> Tensor:
    return (a.float() - b.float()).square().flatten(1).mean(1)


def ssim_per_image(a: Tensor, b: Tensor) -> Tensor:
    """SSIM with an 11x11 Gaussian window, sigma 1.5, data range 1 (the papers' definition)."""
    return structural_similarity_index_measure(a.float(), b.float(), gaussian_kernel=True, kernel_size=11,
                                               sigma=1.5, data_range=1.0, reduction="none")


def linear_probe_accuracy(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor,
                          l2: float = 1e-4, iterations: int = 200) -> float:
    """Multinomial logistic regression on standardised z, fit by L-BFGS on train, scored on test.

    A dozen lines of torch instead of scikit-learn, which would add scipy for this one fit.
    """
    mean, std = z_train.mean(0), z_train.std(0) + 1e-6
    x_train, x_test = (z_train - mean) / std, (z_test - mean) / std
    num_classes = int(y_train.max()) + 1
    weight = torch.zeros(x_train.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = (torch.nn.functional.cross_entropy(x_train @ weight + bias, y_train)
                + l2 * weight.square().sum())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x_test @ weight + bias).argmax(1) == y_test).float().mean())
