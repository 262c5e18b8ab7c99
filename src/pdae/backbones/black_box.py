"""A black-box DPM: any callable `(x_t, t) -> eps` with its noise schedule (DESIGN.md §3).

There is no encoder half to reuse, so G is a stand-alone ADM UNet on (x_t, t) with every ResBlock
z-modulated and a zero output conv (PDAE equals the black box at the start). The callable is not part of
PDAE's state dict: a saved black-box PDAE holds E and G only, and `load_pdae(path, black_box=eps_fn)`
needs the callable again.
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from pdae.backbones.adm import PRESETS
from pdae.errors import CheckpointError, PdaeError
from pdae.nn.unet import UNet, UNetConfig
from pdae.sampling import EpsFn
from pdae.schedule import NoiseSchedule

BLACK_BOX = "black-box"


class _Shared:
    """Keeps the callable out of PDAE's module tree: not in its state dict, and shared (not copied) by the
    EMA copy that training makes with deepcopy."""

    def __init__(self, eps_fn: EpsFn):
        self.eps_fn = eps_fn

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


class BlackBoxBackbone(nn.Module):
    """Any eps function with its schedule as a backbone; `shift_unet` sizes G (default: the "small" preset).

    The callable runs under no_grad and is never trained: pass it in eval mode and on the data's device.
    """

    def __init__(self, eps_fn: EpsFn, schedule: NoiseSchedule, image_size: int, in_channels: int,
                 shift_unet: UNetConfig | None = None):
        super().__init__()
        self._black_box, self.schedule = _Shared(eps_fn), schedule
        self.image_size, self.in_channels = image_size, in_channels
        self.shift_unet = shift_unet or PRESETS["small"](image_size, in_channels)

    @property
    def embedding_dim(self) -> int:
        return self.shift_unet.model_channels * 4  # G's own time embedding

    def time_embedding(self, t: Tensor) -> Tensor:
        return t  # the black box embeds t itself

    def encode(self, x_t: Tensor, emb: Tensor) -> tuple[Tensor, list[Tensor]]:
        return x_t, []

    def decode(self, h: Tensor, skips: list[Tensor], emb: Tensor) -> Tensor:
        return self._black_box.eps_fn(h, emb)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self._black_box.eps_fn(x_t, t)

    def make_shift_decoder(self, latent_dim: int, init_from_dpm: bool = False) -> StandaloneShiftDecoder:
        if init_from_dpm:
            raise PdaeError("a black-box DPM has no decoder half to start G from: drop init_from_dpm")
        return StandaloneShiftDecoder(self.shift_unet, latent_dim)

    def to_config(self, schedule: NoiseSchedule) -> dict:
        """Everything but the callable, which no checkpoint can hold."""
        return {"kind": "dpm", "backbone": BLACK_BOX, "image_size": self.image_size,
                "in_channels": self.in_channels, "shift_unet": self.shift_unet.to_dict(),
                "schedule": schedule.to_config()}

    @classmethod
    def from_config(cls, config: dict, eps_fn: EpsFn | None) -> BlackBoxBackbone:
        if eps_fn is None:
            raise CheckpointError("this PDAE was trained on a black-box DPM, which its checkpoint cannot "
                                  "hold: pass the callable again, e.g. load_pdae(path, black_box=eps_fn)")
        return cls(eps_fn, NoiseSchedule(**config["schedule"]), config["image_size"], config["in_channels"],
                   UNetConfig.from_dict(config["shift_unet"]))


class StandaloneShiftDecoder(nn.Module):
    """G(x_t, z, t) for a black box: a whole ADM UNet whose every ResBlock z modulates; zero at the start."""

    def __init__(self, cfg: UNetConfig, latent_dim: int):
        super().__init__()
        self.unet = UNet(replace(cfg, learn_sigma=False, num_classes=None), latent_dim)

    def forward(self, h: Tensor, skips: list[Tensor], emb: Tensor, z: Tensor) -> Tensor:
        """h is x_t and emb is t, as BlackBoxBackbone's encode and time_embedding pass them."""
        return self.unet(h, emb, z=z)
