"""Linear models on codes z: standardisation and multinomial logistic regression.

A dozen lines of torch instead of scikit-learn, which would add scipy for these fits. The linear probe,
the attribute classifiers and the few-shot filter all use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Standardiser:
    """z -> (z - mean) / std per dimension, with the statistics of the codes it was fitted on."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, z: Tensor) -> Standardiser:
        return cls(z.mean(0), z.std(0) + 1e-6)

    def __call__(self, z: Tensor) -> Tensor:
        return (z - self.mean.to(z)) / self.std.to(z)

    def invert(self, z_normalised: Tensor) -> Tensor:
        return z_normalised * self.std.to(z_normalised) + self.mean.to(z_normalised)


def fit_logistic(x: Tensor, y: Tensor, num_classes: int, l2: float = 1e-4,
                 iterations: int = 200) -> tuple[Tensor, Tensor]:
    """Weight (dim, classes) and bias (classes) of a multinomial logistic regression, fitted by L-BFGS."""
    x = x.float()
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ weight + bias, y) + l2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()
