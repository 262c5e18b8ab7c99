"""Any DPM pdae accepts, recognised by its content (a .pt/.ckpt suffix is not required) in one place:
pdae's own run folder or .safetensors file (adm), else a diffusers folder (diffusers_unet, the only family
not loaded into pdae's UNet), a reference-PDAE folder or checkpoint (reference_pdae), a Diff-AE (diffae) or
an OpenAI guided-/improved-diffusion (guided_diffusion) file. A Hugging Face hub id is refused: pdae works
offline and downloads nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

from pdae.backbones.adm import LoadedDPM, is_pdae_checkpoint, load_pdae_dpm, preset_name
from pdae.backbones.diffae import is_diffae, load_diffae
from pdae.backbones.diffusers_folder import DIFFUSERS, is_diffusers_folder
from pdae.backbones.files import ACCEPTED, read_torch_file
from pdae.backbones.guided_diffusion import is_guided, load_guided
from pdae.backbones.protocol import Backbone
from pdae.backbones.reference_pdae import is_reference, load_reference, load_reference_folder
from pdae.errors import CheckpointError
from pdae.nn.unet import UNet
from pdae.schedule import NoiseSchedule

HUB_ID = re.compile(r"[\w][\w.-]*/[\w.-]+")  # owner/name


def load_dpm(path: str | Path, config: str | Path | None = None) -> tuple[Backbone, NoiseSchedule]:
    """Load a DPM in eval mode: pdae's own (a run folder or its .safetensors file), else a foreign
    checkpoint that `open_dpm` recognises; `config` names its model YAML when that is not beside the file.
    The backbone is pdae's UNet, or for a diffusers folder a DiffusersBackbone."""
    loaded = open_dpm(path, config)
    return loaded.unet, loaded.schedule


def open_dpm(path: str | Path, config: str | Path | None = None) -> LoadedDPM:
    """Any DPM pdae accepts, with its family (what `pdae inspect-dpm` reports), loaded strictly; `config`
    overrides the YAML."""
    if is_pdae_checkpoint(path):
        return load_pdae_dpm(path, config)
    path, config = Path(path), None if config is None else Path(config)
    if is_diffusers_folder(path):
        return _load_diffusers(path, config)
    if path.is_dir():
        return load_reference_folder(path, config)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}{_hub_hint(path)}; {ACCEPTED}")
    data = read_torch_file(path)
    if isinstance(data, dict):
        for recognises, load in ((is_reference, load_reference), (is_diffae, load_diffae),
                                 (is_guided, load_guided)):
            if recognises(data):
                return load(path, data, config)
    raise CheckpointError(f"{path} is not a DPM checkpoint pdae recognises; {ACCEPTED}")


def _hub_hint(path: Path) -> str:
    """For a missing path that reads like owner/name: say that hub ids are not available offline."""
    if not HUB_ID.fullmatch(str(path)):
        return ""
    return (f" (if {path} is a Hugging Face hub id: it is not available offline, pdae downloads nothing; "
            f"fetch the folder first, e.g. `huggingface-cli download {path} --local-dir DIR`, and pass DIR)")


def _load_diffusers(path: Path, config: Path | None) -> LoadedDPM:
    from pdae.backbones.diffusers_unet import load_diffusers_dpm  # lazy: diffusers is slow to import

    if config is not None:
        raise CheckpointError(f"{path} is a diffusers folder and carries its own config: drop --config")
    backbone = load_diffusers_dpm(path)
    return LoadedDPM(DIFFUSERS, backbone, backbone.schedule)


def describe_dpm(loaded: LoadedDPM) -> dict[str, str]:
    """What `pdae inspect-dpm` prints; pdae's UNet families predict eps (others are refused)."""
    if not isinstance(loaded.unet, UNet):
        return loaded.unet.describe()
    cfg, count = loaded.unet.config, sum(p.numel() for p in loaded.unet.parameters())
    return {
        "family": loaded.family,
        "resolution": f"{cfg.image_size}x{cfg.image_size}",
        "channels": str(cfg.in_channels),
        "schedule": f"{loaded.schedule.name}, T={loaded.schedule.num_timesteps}",
        "prediction": "eps",
        "learned variance": "yes (2C outputs; pdae uses the eps half)" if cfg.learn_sigma else "no",
        "class-conditional": f"yes ({cfg.num_classes} classes)" if cfg.num_classes is not None else "no",
        "unet": f"{cfg.model_channels} channels x {cfg.channel_mult}, {cfg.num_res_blocks} res blocks per "
                f"level, attention at downsampling {cfg.attention_resolutions}",
        "preset": preset_name(cfg),
        "parameters": f"{count:,} ({count / 1e6:.2f}M)",
    }
