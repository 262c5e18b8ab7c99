"""Representation metrics: how much of a label a linear model reads off frozen codes z.

Linear-probe accuracy for class labels; per-attribute AUROC for binary attributes (Diff-AE's protocol,
through pdae.attributes); average precision as DiTi and DBAE report it; mean absolute error of a linear
regression for a numeric label such as age.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import multilabel_average_precision

from pdae.linear import Standardiser, fit_logistic


def linear_probe_accuracy(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor,
                          l2: float = 1e-4, iterations: int = 200) -> float:
    """Multinomial logistic regression on standardised z, fit by L-BFGS on train, scored on test."""
    standardise = Standardiser.fit(z_train)
    weight, bias = fit_logistic(standardise(z_train), y_train, int(y_train.max()) + 1, l2, iterations)
    return float(((standardise(z_test) @ weight + bias).argmax(1) == y_test).float().mean())


def average_precision_probe(z_train: Tensor, y_train: Tensor, z_val: Tensor, y_val: Tensor, z_test: Tensor,
                            y_test: Tensor, epochs: int = 15, lr: float = 1e-3, batch_size: int = 64,
                            seed: int = 0) -> dict[str, object]:
    """DiTi's / DBAE's protocol: a linear layer on frozen z (binary targets (N, A) in {0, 1}), Adam,
    `epochs` epochs; the epoch with the best validation mean AP gives the test AP (mean and per attribute).
    """
    generator = torch.Generator().manual_seed(seed)
    standardise = Standardiser.fit(z_train)
    x_train, x_val, x_test = (standardise(z).float() for z in (z_train, z_val, z_test))
    layer = torch.nn.Linear(x_train.shape[1], y_train.shape[1])
    torch.nn.init.zeros_(layer.weight)  # no random starting direction: the result depends on the data only
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    best = (-1.0, None)
    for _ in range(epochs):
        with torch.enable_grad():
            for batch in torch.randperm(len(x_train), generator=generator).split(batch_size):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(layer(x_train[batch]),
                                                                            y_train[batch].float())
                opt.zero_grad()
                loss.backward()
                opt.step()
        with torch.no_grad():
            val_ap = float(multilabel_average_precision(layer(x_val), y_val.long(), y_val.shape[1]))
            if val_ap > best[0]:
                per_attribute = multilabel_average_precision(layer(x_test), y_test.long(), y_test.shape[1],
                                                             average="none")
                best = (val_ap, per_attribute)
    return {"mean_ap": float(best[1].mean()), "per_attribute_ap": best[1].tolist(), "best_val_mean_ap": best[0]}


def regression_mae(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor, l2: float = 1e-3) -> float:
    """Mean absolute error on test of a ridge regression of a numeric label on standardised z (closed form;
    the intercept, the training mean, is not shrunk)."""
    standardise = Standardiser.fit(z_train)
    x, mean = standardise(z_train).double(), y_train.double().mean()
    gram = x.T @ x + l2 * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(gram, x.T @ (y_train.double() - mean))
    return float((standardise(z_test).double() @ coef + mean - y_test.double()).abs().mean())
