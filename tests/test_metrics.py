"""Metrics by hand: the Frechet distance, the Inception input pipeline on a stand-in network, the cache of
reference statistics, the classifier features FID on digits uses, and LPIPS through a stand-in package."""

import importlib.util
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from pdae.classifier import SmallClassifier
from pdae.errors import PdaeError
from pdae.fid import (frechet_distance, inception_features, inception_file, reference_statistics,
                      resize_like_tf1)
from pdae.metrics import lpips_per_image


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


def test_corner_aligned_resize_by_hand_and_against_grid_sample():
    a, b = 2.0, 6.0
    x = torch.tensor([a, b]).view(1, 1, 1, 2)
    torch.testing.assert_close(resize_like_tf1(x, 4)[0, 0, 0], torch.tensor([a, 4.0, b, b]))
    # the same resize through torch's sampler: affine grid shifted so pixel centres align at the top left
    image = torch.rand(2, 3, 28, 20, generator=torch.Generator().manual_seed(0))
    theta = torch.tensor([[1.0, 0.0, 1 / 20 - 1 / 299], [0.0, 1.0, 1 / 28 - 1 / 299]]).expand(2, 2, 3)
    grid = F.affine_grid(theta, [2, 3, 299, 299], align_corners=False)
    expected = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(resize_like_tf1(image, 299), expected, atol=1e-5, rtol=1e-5)


class InputRange(torch.nn.Module):
    """A stand-in feature network: per image, the smallest and largest input value and the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = torch.full((x.shape[0],), float(x.shape[-1]))
        return torch.stack([x.amin(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3)), size], dim=1)


def test_inception_input_is_quantised_resized_and_in_the_tf_range(tmp_path):
    path = tmp_path / "stand_in.pt"
    torch.jit.script(InputRange()).save(str(path))
    features = inception_features(path)
    images = torch.stack([torch.zeros(1, 32, 32), torch.ones(1, 32, 32), torch.full((1, 32, 32), 0.5)])
    out = features(images)  # grayscale: repeated to RGB
    assert out.shape == (3, 3) and (out[:, 2] == 299).all()
    torch.testing.assert_close(out[0, :2], torch.tensor([-1.0, -1.0], dtype=torch.float64))
    torch.testing.assert_close(out[1, :2], torch.tensor([0.9921875] * 2, dtype=torch.float64))
    half = round(0.5 * 255) / 255 * 1.9921875 - 1  # 0.5 quantised to 128/255 first
    torch.testing.assert_close(out[2, :2], torch.tensor([half, half], dtype=torch.float64))


def test_missing_inception_file_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(PdaeError, match=r"pdae\[fid\]"):
        inception_file()


def test_reference_statistics_are_cached_until_the_folder_changes(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"1")
    calls = []

    def features(batch: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return batch.flatten(1)

    batches = lambda: [torch.rand(8, 1, 2, 2)]  # noqa: E731
    first = reference_statistics(folder, batches, features, "stand-in", cache_dir=tmp_path / "cache")
    again = reference_statistics(folder, batches, features, "stand-in", cache_dir=tmp_path / "cache")
    assert len(calls) == 1 and (first["mu"] == again["mu"]).all()
    (folder / "b.png").write_bytes(b"2")
    reference_statistics(folder, batches, features, "stand-in", cache_dir=tmp_path / "cache")
    assert len(calls) == 2
    reference_statistics(folder, batches, features, "stand-in", "test split", cache_dir=tmp_path / "cache")
    assert len(calls) == 3  # other images of the same folder: another entry


def test_lpips_wraps_the_package_on_grayscale_images_in_its_input_range(stand_in_lpips):
    distance = lpips_per_image()
    a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    scores = distance(a, b)
    net = stand_in_lpips[0]
    torch.testing.assert_close(net.inputs[0], (a * 2 - 1).expand(-1, 3, -1, -1))
    assert scores.shape == (3,) and (scores > 0).all()
    assert distance(a, a).abs().max() < 1e-12


def test_lpips_says_why_it_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips raises ImportError
    assert "not installed" in lpips_per_image()

    def no_weights(**kwargs):
        raise RuntimeError("could not download alexnet")

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=no_weights))
    assert "could not download alexnet" in lpips_per_image()
