"""Attribute directions in z (paper §4.4): a linear classifier per attribute on standardised z, and edits
that move z along the unit normal of its hyperplane.

Labels come as columns (pdae.data's label tables): a column with two values is one attribute (positive:
the larger value, so CelebA's -1/1 and 0/1 both work); a column of a few classes gives one attribute per
class ("digit=3", one against the rest); a numeric column with many values (age) is split at its median
("age>31").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.classification import binary_auroc

from pdae.autoencode import StepCounts, decode, encode, infer_x_T
from pdae.checkpoint import load_weights, save_weights
from pdae.errors import DataError
from pdae.linear import Standardiser, fit_logistic
from pdae.model import PDAE

MAX_CLASSES = 64  # a column with more distinct values than this is numeric (split at its median) or refused


def binary_targets(train: dict[str, np.ndarray], test: dict[str, np.ndarray]
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Boolean targets per attribute for the training and the held-out images, named and defined as the
    module's docstring says from the training values; a column with one value is an error."""
    targets_train, targets_test = {}, {}
    for name, values in train.items():
        distinct = np.unique(values)
        if len(distinct) < 2:
            raise DataError(f"label column {name!r} has a single value ({distinct[0]!r}): nothing to separate")
        if len(distinct) == 2:
            rules = {name: lambda v, positive=distinct[1]: v == positive}
        elif values.dtype.kind in "OUS" or values.dtype.kind in "iu" and len(distinct) <= MAX_CLASSES:
            if len(distinct) > MAX_CLASSES:
                raise DataError(f"label column {name!r} has {len(distinct)} distinct values: too many classes")
            rules = {f"{name}={value}": lambda v, value=value: v == value for value in distinct}
        else:
            median = float(np.median(values))
            rules = {f"{name}>{median:g}": lambda v, median=median: v > median}
        for attribute, rule in rules.items():
            targets_train[attribute], targets_test[attribute] = rule(values), rule(test[name])
    return targets_train, targets_test


@dataclass
class AttributeDirections:
    """Per attribute: a logistic classifier on standardised z (weights, biases) and its held-out scores."""

    names: list[str]
    weights: Tensor  # (attributes, dim z): logit = standardised z @ weights.T + biases
    biases: Tensor
    standardiser: Standardiser
    scores: dict[str, dict]

    def index(self, name: str) -> int:
        if name not in self.names:
            raise DataError(f"no attribute {name!r}; the fitted ones: {', '.join(self.names)}")
        return self.names.index(name)

    def logits(self, z: Tensor) -> Tensor:
        """(N, attributes) classifier logits of codes z."""
        return self.standardiser(z) @ self.weights.T.to(z) + self.biases.to(z)

    def edit(self, z: Tensor, name: str, scale: float) -> Tensor:
        """Move standardised z by scale * sqrt(dim z) along the unit normal of the attribute's hyperplane."""
        normal = self.weights[self.index(name)].to(z)
        step = scale * math.sqrt(z.shape[-1]) * normal / normal.norm()
        return self.standardiser.invert(self.standardiser(z) + step)

    def save(self, path: Path, source: dict) -> None:
        config = {"kind": "attributes", "names": self.names, "scores": self.scores, **source}
        save_weights(path, {"weights": self.weights, "biases": self.biases, "mean": self.standardiser.mean,
                            "std": self.standardiser.std}, config)

    @classmethod
    def load(cls, path: Path) -> AttributeDirections:
        state, config = load_weights(path)
        if config.get("kind") != "attributes":
            raise DataError(f"{path} holds no attribute directions (kind {config.get('kind')!r}); write them "
                            "with `pdae attributes fit`")
        return cls(config["names"], state["weights"], state["biases"],
                   Standardiser(state["mean"], state["std"]), config["scores"])


def fit_directions(z_train: Tensor, train_targets: dict[str, np.ndarray], z_test: Tensor,
                   test_targets: dict[str, np.ndarray]) -> AttributeDirections:
    """One binary logistic classifier per attribute on standardised z; accuracy and AUROC on the test codes."""
    standardise = Standardiser.fit(z_train)
    x_train, x_test = standardise(z_train), standardise(z_test)
    weights, biases, scores = [], [], {}
    for name, positive in train_targets.items():
        if positive.all() or not positive.any():
            raise DataError(f"attribute {name!r} takes one value on every training image: nothing to fit")
        w, b = fit_logistic(x_train, torch.as_tensor(positive, dtype=torch.long), 2)
        weights.append(w[:, 1] - w[:, 0])
        biases.append(b[1] - b[0])
        logits = x_test @ weights[-1] + biases[-1]
        truth = torch.as_tensor(test_targets[name])
        scores[name] = {"accuracy": float(((logits > 0) == truth).float().mean()),
                        "auroc": float(binary_auroc(logits, truth.long())) if 0 < truth.sum() < len(truth)
                        else None,
                        "train_positives": int(positive.sum()), "test_positives": int(truth.sum()),
                        "test_images": len(truth)}
    return AttributeDirections(list(train_targets), torch.stack(weights), torch.stack(biases), standardise,
                               scores)


@torch.no_grad()
def manipulate(model: PDAE, x0: Tensor, directions: AttributeDirections, name: str, scales: list[float],
               steps: StepCounts) -> Tensor:
    """Edits of one image (C, H, W) per scale, decoded from its inferred x_T: (len(scales), C, H, W).

    Scale 0 is the plain reconstruction.
    """
    x0 = x0[None].to(model.device)
    z = encode(model, x0)
    x_T = infer_x_T(model, x0, z, steps.inversion, steps.clip_x0, steps.refine)
    z_edits = torch.cat([directions.edit(z, name, scale) for scale in scales])
    return decode(model, z_edits, x_T.expand(len(scales), -1, -1, -1), steps)
