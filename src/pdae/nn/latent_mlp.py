"""The latent DPM's eps network: an MLP over codes z with skip connections and time-scaled layers.

Its shape follows Diff-AE's latent DPM (an MLP whose every hidden layer also sees the noisy input and is
scaled by a function of t); written here for pdae's training loop and checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from pdae.nn.unet import timestep_embedding


@dataclass(frozen=True)
class LatentMLPConfig:
    dim: int
    width: int = 512
    depth: int = 6
    time_channels: int = 64
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class TimeScaledLayer(nn.Module):
    """SiLU(LayerNorm(Linear(input)) * (1 + scale(t)))."""

    def __init__(self, in_features: int, width: int, time_width: int, dropout: float):
        super().__init__()
        self.linear = nn.Linear(in_features, width)
        self.norm = nn.LayerNorm(width)
        self.time_scale = nn.Linear(time_width, width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return self.dropout(nn.functional.silu(self.norm(self.linear(h)) * (1 + self.time_scale(emb))))


class LatentMLP(nn.Module):
    """eps(z_t, t) for codes z: `depth` time-scaled layers, each after the first also given z_t (the skip)."""

    def __init__(self, cfg: LatentMLPConfig):
        super().__init__()
        self.cfg = cfg
        time_width = 4 * cfg.time_channels
        self.time_embed = nn.Sequential(nn.Linear(cfg.time_channels, time_width), nn.SiLU(),
                                        nn.Linear(time_width, time_width))
        self.layers = nn.ModuleList(
            TimeScaledLayer(cfg.dim if i == 0 else cfg.width + cfg.dim, cfg.width, time_width, cfg.dropout)
            for i in range(cfg.depth))
        self.out = nn.Linear(cfg.width, cfg.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z_t: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embed(timestep_embedding(t, self.cfg.time_channels))
        h = z_t
        for i, layer in enumerate(self.layers):
            h = layer(h if i == 0 else torch.cat([h, z_t], dim=1), emb)
        return self.out(h)
