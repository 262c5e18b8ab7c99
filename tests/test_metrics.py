"""Metrics by hand: the Frechet distance of Gaussian feature sets, and the classifier features it uses."""

import torch

from pdae.classifier import SmallClassifier
from pdae.metrics import frechet_distance


def gaussian(count: int, std: list[float], mean: list[float], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(count, len(std), generator=g) * torch.tensor(std) + torch.tensor(mean)


def test_frechet_distance_of_diagonal_gaussians_matches_the_closed_form():
    a = gaussian(20000, [1.0, 2.0, 0.5], [0.0, 1.0, 0.0], seed=0)
    b = gaussian(20000, [2.0, 2.0, 1.0], [0.0, 0.0, 0.0], seed=1)
    # |mu_a - mu_b|^2 + sum (s_a - s_b)^2 for diagonal covariances: 1 + (1 + 0 + 0.25)
    assert abs(frechet_distance(a, b) - 2.25) < 0.08
    assert abs(frechet_distance(a, a)) < 1e-9


def test_frechet_distance_is_invariant_to_a_common_rotation():
    a = gaussian(5000, [1.0, 3.0], [1.0, 0.0], seed=2)
    b = gaussian(5000, [2.0, 1.0], [0.0, 0.0], seed=3)
    angle = torch.tensor(0.7)
    rotation = torch.tensor([[angle.cos(), -angle.sin()], [angle.sin(), angle.cos()]])
    assert abs(frechet_distance(a @ rotation.T, b @ rotation.T) - frechet_distance(a, b)) < 1e-6


def test_classifier_embedding_feeds_its_head():
    net = SmallClassifier(widths=(8, 16)).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    features = net.embed(x)
    assert features.shape == (3, 16)
    torch.testing.assert_close(net(x), net.head(features))
