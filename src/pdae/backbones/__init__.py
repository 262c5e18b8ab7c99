"""Every DPM family PDAE builds on, one module each, behind the backbone interface (pdae.backbones.protocol).

Families: pdae's own ADM checkpoints (adm), guided-diffusion (guided_diffusion), Diff-AE (diffae) and the
reference PDAE (reference_pdae), all read into pdae's ADM UNet; diffusers UNet2DModels (diffusers_unet); and
any callable (black_box). `loading` recognises a checkpoint's family; `files` reads files safely. Here:
`build_backbone`, which rebuilds a saved backbone from its config, and the public names.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from pdae.backbones.adm import PRESETS, LoadedDPM, build_dpm
from pdae.backbones.black_box import BLACK_BOX, BlackBoxBackbone
from pdae.backbones.diffusers_folder import DIFFUSERS
from pdae.backbones.loading import describe_dpm, load_dpm, open_dpm
from pdae.backbones.protocol import Backbone
from pdae.errors import CheckpointError
from pdae.nn.unet import dpm_config
from pdae.schedule import NoiseSchedule

__all__ = ["PRESETS", "Backbone", "BlackBoxBackbone", "LoadedDPM", "build_backbone", "build_dpm",
           "describe_dpm", "dpm_config", "load_dpm", "open_dpm"]


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
    return build_dpm(config)
