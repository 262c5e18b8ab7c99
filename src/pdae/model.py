"""The PDAE model: a frozen pre-trained DPM, a trainable encoder E and a trainable shift decoder G.

G reuses the DPM's time embedding and encoder half (input blocks), which run once per step and feed
both the frozen decoder (eps_theta) and G's own z-modulated middle block, output blocks and output
conv. The output conv starts at zero, so at step 0 PDAE is exactly the DPM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from pdae.checkpoint import load_state_strict, load_weights, resolve_weights_path
from pdae.dpm import build_dpm, dpm_config
from pdae.errors import PdaeError
from pdae.nn.encoder import Encoder, EncoderConfig
from pdae.nn.unet import UNet
from pdae.schedule import NoiseSchedule

SAMPLING_COEFS = ("trained", "reference")


@dataclass(frozen=True)
class PDAEConfig:
    """What PDAE adds to a DPM. sampling_coef: 'trained' uses -c_t at sampling, 'reference' sqrt(1-abar_t)."""

    latent_dim: int = 64
    encoder_channels: int = 32
    gamma: float = 0.1
    init_from_dpm: bool = False
    sampling_coef: str = "trained"

    def __post_init__(self) -> None:
        if self.sampling_coef not in SAMPLING_COEFS:
            raise PdaeError(f"sampling coefficient must be one of {SAMPLING_COEFS}, got {self.sampling_coef!r}")


class ShiftDecoder(nn.Module):
    """G's trainable half: middle block, output blocks and zero-initialised output conv, all z-modulated."""

    def __init__(self, dpm: UNet, latent_dim: int):
        super().__init__()
        cfg, emb_dim = dpm.config, dpm.config.model_channels * 4
        self.middle_block = UNet.build_middle(cfg, dpm.bottleneck_channels, emb_dim, latent_dim)
        self.output_blocks = UNet.build_decoder(cfg, dpm.bottleneck_channels, emb_dim, dpm.skip_channels, latent_dim)
        self.out = UNet.build_out(cfg, cfg.out_channels)

    def forward(self, h: Tensor, skips: list[Tensor], emb: Tensor, z: Tensor) -> Tensor:
        h = self.middle_block(h, emb, z)
        for block, skip in zip(self.output_blocks, reversed(skips)):
            h = block(torch.cat([h, skip], dim=1), emb, z)
        return self.out(h)


class PDAE(nn.Module):
    """E and G around a frozen DPM. `forward(x_t, t, x0)` returns (eps_theta, G(x_t, E(x0), t))."""

    def __init__(self, dpm: UNet, schedule: NoiseSchedule, cfg: PDAEConfig):
        super().__init__()
        if dpm.config.num_classes is not None:
            raise PdaeError("PDAE needs an unconditional DPM; this one is class-conditional")
        self.cfg, self.schedule = cfg, schedule
        self.dpm = dpm.eval().requires_grad_(False)
        unet = dpm.config
        self.encoder = Encoder(EncoderConfig(unet.image_size, unet.in_channels, cfg.latent_dim, cfg.encoder_channels))
        self.decoder = ShiftDecoder(dpm, cfg.latent_dim)
        if cfg.init_from_dpm:
            self.decoder.load_state_dict(self._dpm_decoder_weights(), strict=False)

    def _dpm_decoder_weights(self) -> dict[str, Tensor]:
        """The DPM's own middle and output blocks (not its output conv, which keeps G zero at the start)."""
        return {k: v.clone() for k, v in self.dpm.state_dict().items()
                if k.startswith(("middle_block.", "output_blocks."))}

    def train(self, mode: bool = True) -> "PDAE":
        super().train(mode)
        self.dpm.eval()  # the frozen DPM never uses dropout
        return self

    def encode(self, x0: Tensor) -> Tensor:
        return self.encoder(x0)

    def eps_and_shift(self, x_t: Tensor, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """The frozen eps_theta(x_t, t) and G(x_t, z, t); the DPM's encoder half runs once for both."""
        with torch.no_grad():
            emb = self.dpm.time_embedding(t)
            h, skips = self.dpm.encode(x_t, emb)
            eps = self.dpm.decode(h, skips, emb)
        # Frozen features feed a trainable branch: contiguous copies avoid a CPU GroupNorm backward crash.
        shift = self.decoder(h.contiguous(), [s.contiguous() for s in skips], emb, z)
        return eps, shift

    def forward(self, x_t: Tensor, t: Tensor, x0: Tensor) -> tuple[Tensor, Tensor]:
        return self.eps_and_shift(x_t, t, self.encode(x0))

    def sampling_coef(self) -> Tensor:
        """k_t in eps_hat = eps_theta - k_t G: the trained -c_t, or the reference code's sqrt(1 - abar_t)."""
        if self.cfg.sampling_coef == "trained":
            return -self.schedule.shift_coef
        return (1 - self.schedule.alpha_bar).sqrt()

    def to_config(self) -> dict:
        return {"kind": "pdae", "dpm": dpm_config(self.dpm.config, self.schedule), "pdae": asdict(self.cfg)}


def build_pdae(config: dict) -> PDAE:
    if config.get("kind") != "pdae":
        raise PdaeError(f"expected a PDAE checkpoint, found kind {config.get('kind')!r}")
    dpm, schedule = build_dpm(config["dpm"])
    return PDAE(dpm, schedule, PDAEConfig(**config["pdae"]))


def load_pdae(path: str | Path, sampling_coef: str | None = None) -> PDAE:
    """Load a PDAE run folder or its .safetensors file (the frozen DPM travels inside it), in eval mode.

    `sampling_coef` overrides the decoding coefficient the run was saved with.
    """
    weights_path = resolve_weights_path(Path(path))
    state, config = load_weights(weights_path)
    if sampling_coef is not None:
        config = {**config, "pdae": {**config["pdae"], "sampling_coef": sampling_coef}}
    model = build_pdae(config)
    load_state_strict(model, state, str(weights_path))
    return model.eval()
