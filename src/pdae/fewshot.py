"""Few-shot conditional generation (D2C's protocol, paper §4.5): a linear classifier fitted on the codes
of a few labelled support images keeps the latent-DPM samples it assigns to the requested class."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from pdae.data import ImageDataset
from pdae.errors import DataError, PdaeError
from pdae.latent import LatentDPM, sample_codes
from pdae.linear import Standardiser, fit_logistic


@dataclass(frozen=True)
class CodeClassifier:
    """Multinomial logistic regression on codes standardised by the latent DPM's statistics."""

    standardise: Standardiser
    weight: Tensor
    bias: Tensor

    def predict(self, z: Tensor) -> Tensor:
        return (self.standardise(z) @ self.weight.to(z) + self.bias.to(z)).argmax(1)


def support_classifier(latent: LatentDPM, codes: Tensor, labels: Tensor) -> CodeClassifier:
    """Fit on the support codes; the latent DPM's standardisation, since k images cannot estimate one."""
    if len(labels.unique()) < 2:
        raise PdaeError("the support set needs images of at least two classes to fit a classifier")
    standardise = Standardiser(latent.z_mean.cpu(), latent.z_std.cpu())
    weight, bias = fit_logistic(standardise(codes.cpu()), labels.long(), int(labels.max()) + 1)
    return CodeClassifier(standardise, weight, bias)


def accepted_codes(latent: LatentDPM, classifier: CodeClassifier, label: int, num: int, seeds: Iterator[int],
                   latent_steps: int = 100, batch_size: int = 256, max_draws: int = 100_000
                   ) -> tuple[Tensor, int, int]:
    """`num` latent-DPM codes that the classifier assigns to `label`, how many of the drawn codes it
    accepted, and how many were drawn (whole batches)."""
    kept, draws = [], 0
    while sum(len(k) for k in kept) < num:
        if draws >= max_draws:
            raise PdaeError(f"only {sum(len(k) for k in kept)} of {draws} sampled codes were classified as "
                            f"class {label}; the support classifier may never predict it")
        batch_seeds = [next(seeds) for _ in range(batch_size)]
        codes = sample_codes(latent, batch_seeds, latent_steps).cpu()
        kept.append(codes[classifier.predict(codes) == label])
        draws += batch_size
    accepted = torch.cat(kept)
    return accepted[:num], len(accepted), draws


def first_of_each_class(dataset: ImageDataset, shots: int | None) -> list[int]:
    """Indices of the first `shots` items of every class (all labelled items when shots is None)."""
    class_labels = dataset.class_labels()
    if class_labels is None:
        raise DataError(f"the support set {dataset.describe()} has no labels: pass --labels")
    labels = [int(label) for label in class_labels]
    taken: dict[int, int] = {}
    picked = []
    for index, label in enumerate(labels):
        if taken.get(label, 0) < (shots or len(labels)):
            taken[label] = taken.get(label, 0) + 1
            picked.append(index)
    return picked
