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

from typing import Any, Protocol

from torch import Tensor, nn

from pdae.schedule import NoiseSchedule


class Backbone(Protocol):
    """What PDAE needs from a frozen DPM; an nn.Module, so that PDAE registers it as `dpm`."""

    image_size: int
    in_channels: int
    embedding_dim: int  # width of the time embedding G's blocks take (a shared z projection matches it)

    def time_embedding(self, t: Tensor) -> Any: ...

    def encode(self, x_t: Tensor, emb: Any) -> tuple[Tensor, list[Tensor]]: ...

    def decode(self, h: Tensor, skips: list[Tensor], emb: Any) -> Tensor: ...

    def make_shift_decoder(self, latent_dim: int, init_from_dpm: bool = False) -> nn.Module: ...

    def to_config(self, schedule: NoiseSchedule) -> dict: ...
