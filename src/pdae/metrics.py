"""Reconstruction metrics on [0, 1] images, per image (DESIGN.md §4); FID is in pdae.fid."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure


def mse_per_image(a: Tensor, b: Tensor) -> Tensor:
    return (a.float() - b.float()).square().flatten(1).mean(1)


def psnr_per_image(a: Tensor, b: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB for data range 1 (inf for identical images)."""
    return 10 * torch.log10(1 / mse_per_image(a, b))


PerImageMetric = Callable[[Tensor, Tensor], Tensor]  # two [0, 1] batches (N, C, H, W) -> N scores


def lpips_per_image(device: torch.device | str = "cpu") -> PerImageMetric | str:
    """LPIPS (AlexNet, v0.1) from the `lpips` package, or a sentence saying why it is not available.

    The package is optional and fetches its AlexNet backbone through torchvision, so it is missing on
    machines without them; grayscale images are repeated to the three channels AlexNet takes.
    """
    try:
        import lpips
    except ImportError:
        return "the lpips package is not installed (pip install lpips)"
    try:
        net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception as error:  # noqa: BLE001 - a download or weights failure of a third-party package
        return f"lpips could not load its AlexNet weights ({type(error).__name__}: {error})"

    @torch.no_grad()
    def distance(a: Tensor, b: Tensor) -> Tensor:
        a, b = (x.to(device, torch.float32).expand(-1, 3, -1, -1) * 2 - 1 for x in (a, b))
        return net(a, b).flatten().cpu()

    return distance


def ssim_per_image(a: Tensor, b: Tensor) -> Tensor:
    """SSIM with an 11x11 Gaussian window, sigma 1.5, data range 1 (the papers' definition)."""
    return structural_similarity_index_measure(a.float(), b.float(), gaussian_kernel=True, kernel_size=11,
                                               sigma=1.5, data_range=1.0, reduction="none")
