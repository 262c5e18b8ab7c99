"""Diff-AE (Preechakul et al., CVPR 2022) as a baseline for PDAE in the same codebase.

The same encoder E as PDAE, and a UNet of the DPM's architecture conditioned on z in every ResBlock (the
time scale/shift, then a z scale, as Diff-AE does), both trained jointly from scratch with the simple eps
loss. It offers PDAE's interface (encode, the conditional eps the samplers decode with, the eps the
posterior-mean gap scores), so the samplers, training loop, latent DPM and `pdae eval` serve both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from pdae.errors import PdaeError
from pdae.losses import DiffAELoss
from pdae.nn.encoder import Encoder, EncoderConfig
from pdae.nn.unet import UNet, UNetConfig
from pdae.sampling import EpsFn, per_row
from pdae.schedule import NoiseSchedule


@dataclass(frozen=True)
class DiffAEConfig:
    latent_dim: int = 64
    encoder_channels: int = 32


class DiffAE(nn.Module):
    """E and a z-conditioned UNet. `forward(x_t, t, x0)` returns eps_theta(x_t, t, E(x0))."""

    class_conditional = False

    def __init__(self, unet: UNetConfig, schedule: NoiseSchedule, cfg: DiffAEConfig):
        super().__init__()
        self.unet_config = replace(unet, learn_sigma=False, num_classes=None)
        self.cfg, self.schedule = cfg, schedule
        self.encoder = Encoder(EncoderConfig(unet.image_size, unet.in_channels, cfg.latent_dim,
                                             cfg.encoder_channels))
        self.unet = UNet(self.unet_config, cfg.latent_dim, z_modulation="scale")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def image_size(self) -> int:
        return self.unet_config.image_size

    @property
    def in_channels(self) -> int:
        return self.unet_config.in_channels

    def encode(self, x0: Tensor) -> Tensor:
        return self.encoder(x0)

    def forward(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        return self.unet(x_t, t, z=self.encode(x0))

    def conditional_eps(self, zs: Sequence[Tensor], weights: Sequence[Tensor | float], min_t: int = 0) -> EpsFn:
        """sum_j weights[j] * eps_theta(x_t, t, zs[j]): one code, or a trajectory mix whose weights sum to 1.

        There is no unconditional model to scale away from or to finish with, so a single code's weight
        must be 1 and there is no stop fraction.
        """
        if min_t > 0 or (len(zs) == 1 and not isinstance(weights[0], Tensor) and weights[0] != 1):
            raise PdaeError("a Diff-AE run has no unconditional DPM: shift scales and stop fractions are for "
                            "PDAE runs")

        def eps_fn(x_t: Tensor, t: Tensor) -> Tensor:
            return sum(per_row(w, x_t) * self.unet(x_t, t, z=z) for z, w in zip(zs, weights))

        return eps_fn

    def gap_predictions(self, x_t: Tensor, t: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The eps prediction the posterior-mean gap scores: the conditional UNet's."""
        return {"diffae": self.unet(x_t, t, z=z)}

    def training_loss(self) -> DiffAELoss:
        return DiffAELoss(self.schedule)

    def to_config(self) -> dict:
        return {"kind": "diffae", "unet": self.unet_config.to_dict(), "schedule": self.schedule.to_config(),
                "diffae": asdict(self.cfg)}


def build_diffae(config: dict) -> DiffAE:
    """DiffAE (random weights) from `to_config`."""
    return DiffAE(UNetConfig.from_dict(config["unet"]), NoiseSchedule(**config["schedule"]),
                  DiffAEConfig(**config["diffae"]))
