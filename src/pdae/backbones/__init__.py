"""The backbone interface: a frozen pre-trained eps network split at its bottleneck (DESIGN.md §3).

PDAE calls, once per step and for both of its decoders:
    emb = backbone.time_embedding(t)          # whatever the backbone's blocks are conditioned on
    h, skips = backbone.encode(x_t, emb)      # frozen encoder half: bottleneck and skip activations
    eps = backbone.decode(h, skips, emb)      # frozen decoder half, always eps (v and x0 converted)
    G = backbone.make_shift_decoder(latent_dim, init_from_dpm)    # trainable, forward(h, skips, emb, z)
`emb` and `skips` are opaque to PDAE: it only hands them back. Implementations: pdae's ADM `UNet`
(guided-diffusion, Diff-AE, reference PDAE and pdae's own checkpoints), `DiffusersBackbone` (a diffusers
UNet2DModel) and `BlackBoxBackbone` (any callable, with a stand-alone G).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from torch import Tensor, nn

from pdae.backbones.black_box import BLACK_BOX, BlackBoxBackbone
from pdae.errors import CheckpointError
from pdae.schedule import NoiseSchedule

DIFFUSERS = "diffusers"

__all__ = ["Backbone", "BlackBoxBackbone", "build_backbone"]


class Backbone(Protocol):
    """What PDAE needs from a frozen DPM; an nn.Module, so that PDAE registers it as `dpm`."""

    image_size: int
    in_channels: int

    def time_embedding(self, t: Tensor) -> Any: ...

    def encode(self, x_t: Tensor, emb: Any) -> tuple[Tensor, list[Tensor]]: ...

    def decode(self, h: Tensor, skips: list[Tensor], emb: Any) -> Tensor: ...

    def make_shift_decoder(self, latent_dim: int, init_from_dpm: bool = False) -> nn.Module: ...

    def to_config(self, schedule: NoiseSchedule) -> dict: ...


def build_backbone(config: dict, black_box: Callable[[Tensor, Tensor], Tensor] | None = None
                   ) -> tuple[Backbone, NoiseSchedule]:
    """A backbone (random weights) and its schedule from `to_config`; a black box needs its callable again."""
    family = config.get("backbone", "adm")  # pdae's own checkpoints predate this key
    if family == DIFFUSERS:
        from pdae.backbones.diffusers_unet import DiffusersBackbone  # lazy: diffusers is slow to import

        return DiffusersBackbone.from_config(config), NoiseSchedule(**config["schedule"])
    if family == BLACK_BOX:
        return BlackBoxBackbone.from_config(config, black_box), NoiseSchedule(**config["schedule"])
    if family != "adm":
        raise CheckpointError(f"unknown backbone {family!r} in the checkpoint's config")
    from pdae.dpm import build_dpm

    return build_dpm(config)
