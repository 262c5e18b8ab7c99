"""Representation metrics against hand-made codes whose answers are known, and PSNR against torchmetrics."""

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from pdae.metrics import psnr_per_image
from pdae.probes import average_precision_probe, linear_probe_accuracy, regression_mae


def codes(count: int, seed: int, dim: int = 6) -> torch.Tensor:
    return torch.randn(count, dim, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def test_psnr_per_image_matches_torchmetrics():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 3, 8, 8, generator=g), torch.rand(4, 3, 8, 8, generator=g)
    expected = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
    torch.testing.assert_close(psnr_per_image(a, b), expected)


def test_linear_probe_reads_a_linearly_separable_class():
    z_train, z_test = codes(300, 0), codes(100, 1)
    label = lambda z: z[:, :3].argmax(1)  # noqa: E731 - three half-spaces: linearly separable
    assert linear_probe_accuracy(z_train, label(z_train), z_test, label(z_test)) > 0.95
    shuffled = label(z_train)[torch.randperm(300, generator=torch.Generator().manual_seed(2))]
    assert linear_probe_accuracy(z_train, shuffled, z_test, label(z_test)) < 0.75


def test_regression_mae_is_exact_on_a_linear_label_and_the_noise_scale_otherwise():
    z_train, z_test = codes(2000, 0), codes(2000, 1)
    age = lambda z: 3 * z[:, 0] - 2 * z[:, 1] + 40  # noqa: E731
    assert regression_mae(z_train, age(z_train), z_test, age(z_test), l2=0) < 1e-5  # float32 labels
    noise = torch.randn(2000, generator=torch.Generator().manual_seed(3))
    mae = regression_mae(z_train, age(z_train) + noise, z_test, age(z_test) + noise.flip(0), l2=0)
    assert abs(mae - math.sqrt(2 / math.pi)) < 0.06  # E|noise| of a standard normal


def test_average_precision_probe_on_readable_and_on_random_attributes():
    z = {split: codes(600, seed) for split, seed in (("train", 0), ("val", 1), ("test", 2))}
    readable = {split: torch.stack([v[:, 0] > 1, v[:, 3] < 0], dim=1).long() for split, v in z.items()}
    result = average_precision_probe(z["train"], readable["train"], z["val"], readable["val"], z["test"],
                                     readable["test"], batch_size=16)
    assert result["mean_ap"] > 0.95 and len(result["per_attribute_ap"]) == 2
    g = torch.Generator().manual_seed(4)
    random = {split: torch.randint(0, 2, (600, 2), generator=g) for split in z}
    chance = average_precision_probe(z["train"], random["train"], z["val"], random["val"], z["test"],
                                     random["test"], batch_size=16)
    assert chance["mean_ap"] < 0.65  # about the base rate, 0.5
