"""A pre-trained diffusion model as pdae stores it: an ADM UNet plus its noise schedule; and `load_dpm`,
which also reads the foreign families of pdae.foreign."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pdae.checkpoint import load_state_strict, load_weights, resolve_weights_path
from pdae.errors import CheckpointError
from pdae.nn.unet import UNet, UNetConfig
from pdae.schedule import NoiseSchedule

if TYPE_CHECKING:
    from pdae.backbones import Backbone

# Named UNet sizes; `pdae pretrain --preset` offers exactly these keys.
PRESETS: dict[str, Callable[[int, int], UNetConfig]] = {
    "tiny": lambda size, ch: UNetConfig(size, ch, 32, ch, 1, (2,), (1, 2)),
    "small": lambda size, ch: UNetConfig(size, ch, 32, ch, 2, (4,), (1, 2, 2)),
    "base": lambda size, ch: UNetConfig(size, ch, 64, ch, 2, (4,), (1, 2, 2, 2)),
}


def dpm_config(unet: UNetConfig, schedule: NoiseSchedule) -> dict:
    """The JSON that rebuilds a DPM: stored in its weights file's metadata."""
    return {"kind": "dpm", "unet": unet.to_dict(), "schedule": schedule.to_config()}


def build_dpm(config: dict) -> tuple[UNet, NoiseSchedule]:
    if config.get("kind") != "dpm":
        raise CheckpointError(f"expected a DPM checkpoint, found kind {config.get('kind')!r}")
    return UNet(UNetConfig.from_dict(config["unet"])), NoiseSchedule(**config["schedule"])


def load_dpm(path: str | Path, config: str | Path | None = None) -> tuple[Backbone, NoiseSchedule]:
    """Load a DPM in eval mode: pdae's own (a run folder or its .safetensors file), else a foreign
    checkpoint recognised by pdae.foreign; `config` names its model YAML when that is not beside the file.
    The backbone is pdae's UNet, or for a diffusers folder a DiffusersBackbone."""
    from pdae.foreign import is_pdae_checkpoint, load_foreign_dpm  # lazy: pdae.foreign imports this module

    if not is_pdae_checkpoint(path):
        loaded = load_foreign_dpm(path, config)
        return loaded.unet, loaded.schedule
    if config is not None:
        raise CheckpointError(f"{path} is a pdae checkpoint and carries its own config: drop the config file")
    weights_path = resolve_weights_path(Path(path))
    state, saved_config = load_weights(weights_path)
    unet, schedule = build_dpm(saved_config)
    load_state_strict(unet, state, str(weights_path))
    return unet.eval(), schedule
