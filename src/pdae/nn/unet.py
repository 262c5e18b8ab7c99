"""The ADM UNet (Dhariwal & Nichol 2021), with guided-diffusion's parameter names.

Parameter names match guided-diffusion (time_embed, input_blocks, middle_block, output_blocks, out;
in_layers, emb_layers, out_layers, skip_connection; norm, qkv, proj_out) so that its checkpoints,
and Diff-AE's and the reference PDAE's, load into it. The network is split at its bottleneck:
`time_embedding`, `encode` (input blocks: bottleneck and skips) and `decode` (middle block, output
blocks, output conv), which is the backbone interface (pdae.backbones) PDAE's gradient estimator reuses.
With `latent_dim`, every ResBlock is also modulated by a code z: the stand-alone gradient estimator that
PDAE pairs with a black-box DPM, and (z scale only, `z_modulation="scale"`) Diff-AE's conditional UNet.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pdae.errors import PdaeError
from pdae.schedule import NoiseSchedule

Z_MODULATIONS = ("scale_shift", "scale")


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of the ADM UNet; `attention_resolutions` are downsample factors (1, 2, 4, ...)."""

    image_size: int = 28
    in_channels: int = 1
    model_channels: int = 32
    out_channels: int = 1
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (4,)
    channel_mult: tuple[int, ...] = (1, 2, 2)
    dropout: float = 0.0
    num_heads: int = 1
    num_head_channels: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    learn_sigma: bool = False
    num_classes: int | None = None
    conv_resample: bool = True

    @classmethod
    def from_dict(cls, values: dict) -> "UNetConfig":
        values = dict(values)
        for key in ("attention_resolutions", "channel_mult"):
            values[key] = tuple(values.get(key, getattr(cls, key, ())))
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def dpm_config(unet: UNetConfig, schedule: NoiseSchedule) -> dict:
    """The JSON that rebuilds a DPM: stored in its weights file's metadata."""
    return {"kind": "dpm", "unet": unet.to_dict(), "schedule": schedule.to_config()}


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos, sin] of (possibly fractional) timesteps, as in guided-diffusion."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


def normalization(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer so that a residual branch (or a whole output) starts as zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class TimestepBlock(nn.Module):
    """A block whose forward also takes the time embedding (and, in PDAE's decoder, the code z)."""

    def forward(self, x: Tensor, emb: Tensor, z: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """nn.Sequential that passes the time embedding and z to the children that take them."""

    def forward(self, x: Tensor, emb: Tensor, z: Tensor | None = None) -> Tensor:
        for layer in self:
            x = layer(x, emb, z) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block; with scale-shift norm the time embedding modulates the second group norm.

    With `latent_dim`, a code z then modulates it too: group norm, the time scale/shift, then the z
    scale/shift from a linear projection of z (PDAE's gradient estimator), or with
    `z_modulation="scale"` a z scale alone from SiLU + Linear of z (Diff-AE's conditioning).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = True, up: bool = False, down: bool = False,
                 latent_dim: int | None = None, z_modulation: str = "scale_shift"):
        super().__init__()
        if z_modulation not in Z_MODULATIONS:
            raise PdaeError(f"z modulation must be one of {Z_MODULATIONS}, got {z_modulation!r}")
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            normalization(out_channels), nn.SiLU(), nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))
        self.z_shift = z_modulation == "scale_shift"
        if latent_dim is not None:
            self.z_layers = (nn.Linear(latent_dim, 2 * out_channels) if self.z_shift
                             else nn.Sequential(nn.SiLU(), nn.Linear(latent_dim, out_channels)))

    def forward(self, x: Tensor, emb: Tensor, z: Tensor | None = None) -> Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h, x = self.h_upd(h), self.x_upd(x)
            h = self.in_layers[-1](h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb)[..., None, None].to(h.dtype)  # B x C' x 1 x 1
        norm, rest = self.out_layers[0], self.out_layers[1:]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = norm(h) * (1 + scale) + shift
        else:
            h = norm(h + emb_out)
        if hasattr(self, "z_layers"):
            z_out = self.z_layers(z)[..., None, None].to(h.dtype)
            if self.z_shift:
                z_scale, z_shift = z_out.chunk(2, dim=1)
                h = h * (1 + z_scale) + z_shift
            else:
                h = h * (1 + z_out)
        return self.skip_connection(x) + rest(h)


class AttentionBlock(nn.Module):
    """Spatial self-attention; qkv in guided-diffusion's legacy head layout, computed by SDPA."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, -1))  # B x 3C x L
        head_dim = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * head_dim, -1).transpose(1, 2).split(head_dim, dim=2)
        h = F.scaled_dot_product_attention(q, k, v)  # (B*heads) x L x head_dim
        h = h.transpose(1, 2).reshape(b, c, -1)
        return x + self.proj_out(h).reshape(b, c, *spatial)


class UNet(nn.Module):
    """ADM UNet predicting eps (and, with learn_sigma, the variance interpolation in 2C channels)."""

    def __init__(self, config: UNetConfig, latent_dim: int | None = None, z_modulation: str = "scale_shift"):
        super().__init__()
        self.config = cfg = config
        if cfg.image_size % 2 ** (len(cfg.channel_mult) - 1):
            raise PdaeError(f"image size {cfg.image_size} is not divisible by 2^{len(cfg.channel_mult) - 1}")
        ch = cfg.model_channels
        emb_dim = self.embedding_dim
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if cfg.num_classes is not None:
            self.label_emb = nn.Embedding(cfg.num_classes, emb_dim)
        z = dict(latent_dim=latent_dim, z_modulation=z_modulation)
        self.input_blocks, self.skip_channels, self.bottleneck_channels = self._build_encoder(cfg, emb_dim, **z)
        self.middle_block = self.build_middle(cfg, self.bottleneck_channels, emb_dim, **z)
        self.output_blocks = self.build_decoder(cfg, self.bottleneck_channels, emb_dim, self.skip_channels,
                                                **z)
        self.out = self.build_out(cfg, self.out_channels)

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def embedding_dim(self) -> int:
        return self.config.model_channels * 4

    @staticmethod
    def build_out(cfg: UNetConfig, channels: int) -> nn.Sequential:
        """Group norm, SiLU and a zero-initialised conv to the output channels."""
        return nn.Sequential(normalization(cfg.model_channels), nn.SiLU(),
                             zero_module(nn.Conv2d(cfg.model_channels, channels, 3, padding=1)))

    @property
    def out_channels(self) -> int:
        return self.config.out_channels * (2 if self.config.learn_sigma else 1)

    @staticmethod
    def _resblock(cfg: UNetConfig, ch: int, emb_dim: int, out: int | None = None,
                  latent_dim: int | None = None, z_modulation: str = "scale_shift", **updown: bool) -> ResBlock:
        return ResBlock(ch, emb_dim, cfg.dropout, out, cfg.use_scale_shift_norm, latent_dim=latent_dim,
                        z_modulation=z_modulation, **updown)

    @staticmethod
    def _attention(cfg: UNetConfig, ch: int) -> AttentionBlock:
        return AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels)

    @classmethod
    def _build_encoder(cls, cfg: UNetConfig, emb_dim: int, latent_dim: int | None = None,
                       z_modulation: str = "scale_shift") -> tuple[nn.ModuleList, list[int], int]:
        ch = cfg.model_channels
        blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skip_channels, ds = [ch], 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [cls._resblock(cfg, ch, emb_dim, mult * cfg.model_channels,
                                                         latent_dim, z_modulation)]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(cls._attention(cfg, ch))
                blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = (cls._resblock(cfg, ch, emb_dim, ch, latent_dim, z_modulation, down=True)
                        if cfg.resblock_updown
                        else Downsample(ch, cfg.conv_resample))
                blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2
        return blocks, skip_channels, ch

    @classmethod
    def build_middle(cls, cfg: UNetConfig, ch: int, emb_dim: int, latent_dim: int | None = None,
                     z_modulation: str = "scale_shift") -> TimestepEmbedSequential:
        """The bottleneck: ResBlock, attention, ResBlock (z-modulated when latent_dim is given)."""
        return TimestepEmbedSequential(cls._resblock(cfg, ch, emb_dim, None, latent_dim, z_modulation),
                                       cls._attention(cfg, ch),
                                       cls._resblock(cfg, ch, emb_dim, None, latent_dim, z_modulation))

    @classmethod
    def build_decoder(cls, cfg: UNetConfig, ch: int, emb_dim: int, skip_channels: list[int],
                      latent_dim: int | None = None, z_modulation: str = "scale_shift") -> nn.ModuleList:
        """Output blocks, each concatenating one skip activation, in guided-diffusion's order."""
        skips, blocks, ds = list(skip_channels), nn.ModuleList(), 2 ** (len(cfg.channel_mult) - 1)
        for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
            for i in range(cfg.num_res_blocks + 1):
                layers: list[nn.Module] = [cls._resblock(cfg, ch + skips.pop(), emb_dim,
                                                         cfg.model_channels * mult, latent_dim,
                                                         z_modulation)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions:
                    layers.append(cls._attention(cfg, ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(cls._resblock(cfg, ch, emb_dim, ch, latent_dim, z_modulation, up=True)
                                  if cfg.resblock_updown
                                  else Upsample(ch, cfg.conv_resample))
                    ds //= 2
                blocks.append(TimestepEmbedSequential(*layers))
        return blocks

    def time_embedding(self, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The embedding every ResBlock is modulated by: MLP of the sinusoid, plus the class embedding."""
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels))
        if self.config.num_classes is not None:
            if y is None:
                raise PdaeError("this model is class-conditional: pass class labels")
            emb = emb + self.label_emb(y)
        return emb

    def encode(self, x: Tensor, emb: Tensor, z: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Input blocks: returns the bottleneck input and the skip activations."""
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, z)
            skips.append(h)
        return h, skips

    def decode(self, h: Tensor, skips: list[Tensor], emb: Tensor) -> Tensor:
        """Middle block, output blocks and output conv; returns eps (learned-variance channels dropped)."""
        return self.decode_raw(h, skips, emb)[:, : self.config.out_channels]

    def decode_raw(self, h: Tensor, skips: list[Tensor], emb: Tensor, z: Tensor | None = None) -> Tensor:
        h = self.middle_block(h, emb, z)
        skips = list(skips)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, z)
        return self.out(h)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, z: Tensor | None = None) -> Tensor:
        """Full network output (2C channels when learn_sigma), like guided-diffusion's forward."""
        emb = self.time_embedding(t, y)
        return self.decode_raw(*self.encode(x, emb, z), emb, z)

    def make_shift_decoder(self, latent_dim: int, init_from_dpm: bool = False) -> "ShiftDecoder":
        """PDAE's trainable twin of the decoder half, optionally starting from this network's own blocks."""
        if self.config.num_classes is not None:
            raise PdaeError("PDAE needs an unconditional DPM; this one is class-conditional")
        decoder = ShiftDecoder(self, latent_dim)
        if init_from_dpm:  # not the output conv, which keeps G zero at the start
            decoder.load_state_dict({k: v.clone() for k, v in self.state_dict().items()
                                     if k.startswith(("middle_block.", "output_blocks."))}, strict=False)
        return decoder

    def to_config(self, schedule: NoiseSchedule) -> dict:
        """The JSON that rebuilds this DPM with its schedule (pdae.backbones.adm.build_dpm reads it)."""
        return dpm_config(self.config, schedule)


class ShiftDecoder(nn.Module):
    """G's trainable half: middle block, output blocks and zero-initialised output conv, all z-modulated."""

    def __init__(self, dpm: UNet, latent_dim: int):
        super().__init__()
        cfg, emb_dim = dpm.config, dpm.config.model_channels * 4
        self.middle_block = UNet.build_middle(cfg, dpm.bottleneck_channels, emb_dim, latent_dim)
        self.output_blocks = UNet.build_decoder(cfg, dpm.bottleneck_channels, emb_dim, dpm.skip_channels,
                                                latent_dim)
        self.out = UNet.build_out(cfg, cfg.out_channels)

    def forward(self, h: Tensor, skips: list[Tensor], emb: Tensor, z: Tensor) -> Tensor:
        h = self.middle_block(h, emb, z)
        for block, skip in zip(self.output_blocks, reversed(skips)):
            h = block(torch.cat([h, skip], dim=1), emb, z)
        return self.out(h)
