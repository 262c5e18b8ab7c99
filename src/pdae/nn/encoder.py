"""PDAE's semantic encoder E: stride-2 convolutions down to <= 4 px, then a linear map to z."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from pdae.nn.unet import AttentionBlock, normalization


@dataclass(frozen=True)
class EncoderConfig:
    image_size: int = 28
    in_channels: int = 1
    latent_dim: int = 64
    base_channels: int = 32
    max_mult: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """Conv stem; stride-2 conv + group norm + SiLU stages (attention at 16x16); flatten; linear to z."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, cfg.base_channels, 3, padding=1)]
        size, ch, stage = cfg.image_size, cfg.base_channels, 0
        while size > 4:
            out = cfg.base_channels * min(2 ** (stage + 1), cfg.max_mult)
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), normalization(out), nn.SiLU()]
            size, ch, stage = (size + 1) // 2, out, stage + 1
            if size == 16:
                layers.append(AttentionBlock(ch))
        self.features = nn.Sequential(*layers)
        self.to_latent = nn.Linear(ch * size * size, cfg.latent_dim)

    def forward(self, x0: Tensor) -> Tensor:
        return self.to_latent(self.features(x0).flatten(1))  # B x latent_dim
