"""pdae's own DPMs, an ADM UNet (pdae.nn.unet) plus its noise schedule, and the ADM checkpoint format that
the foreign ADM-style families (guided-diffusion, Diff-AE, reference PDAE) share: their config rules, the
legacy qkv layout, and `assemble`, which loads their weights strictly into pdae's UNet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from pdae.backbones.files import Flags, float_tensors
from pdae.checkpoint import WEIGHTS_NAME, load_state_strict, load_weights, resolve_weights_path
from pdae.errors import CheckpointError
from pdae.nn.unet import AttentionBlock, UNet, UNetConfig
from pdae.schedule import SCHEDULE_NAMES, NoiseSchedule

PDAE = "pdae"
# Named UNet sizes; `pdae pretrain --preset` offers exactly these keys.
PRESETS: dict[str, Callable[[int, int], UNetConfig]] = {
    "tiny": lambda size, ch: UNetConfig(size, ch, 32, ch, 1, (2,), (1, 2)),
    "small": lambda size, ch: UNetConfig(size, ch, 32, ch, 2, (4,), (1, 2, 2)),
    "base": lambda size, ch: UNetConfig(size, ch, 64, ch, 2, (4,), (1, 2, 2, 2)),
}


@dataclass(frozen=True)
class LoadedDPM:
    """A DPM in eval mode, with the family of checkpoints it came from; `unet` is a backbone (pdae.backbones):
    pdae's UNet, or for diffusers a DiffusersBackbone."""

    family: str
    unet: nn.Module
    schedule: NoiseSchedule


@dataclass(frozen=True)
class Architecture:
    """What a family's config says: our UNet config, the schedule, and the qkv layout of its weights."""

    unet: UNetConfig
    schedule: NoiseSchedule
    new_attention_order: bool = False


def build_dpm(config: dict) -> tuple[UNet, NoiseSchedule]:
    """pdae's UNet (random weights) and its schedule from `dpm_config` (pdae.nn.unet)."""
    if config.get("kind") != "dpm":
        raise CheckpointError(f"expected a DPM checkpoint, found kind {config.get('kind')!r}")
    return UNet(UNetConfig.from_dict(config["unet"])), NoiseSchedule(**config["schedule"])


def is_pdae_checkpoint(path: str | Path) -> bool:
    """pdae's own format (pdae.checkpoint): a .safetensors file, or a run folder holding ema.safetensors."""
    path = Path(path)
    return path.suffix == ".safetensors" or (path / WEIGHTS_NAME).exists()


def load_pdae_dpm(path: str | Path, config: str | Path | None = None) -> LoadedDPM:
    """pdae's own DPM (a run folder or its .safetensors file) in eval mode; it carries its own config."""
    if config is not None:
        raise CheckpointError(f"{path} is a pdae checkpoint and carries its own config: drop the config file")
    weights_path = resolve_weights_path(Path(path))
    state, saved_config = load_weights(weights_path)
    unet, schedule = build_dpm(saved_config)
    load_state_strict(unet, state, str(weights_path))
    return LoadedDPM(PDAE, unet.eval(), schedule)


# ---------------------------------------------------------------- the ADM format of the foreign families


def assemble(family: str, arch: Architecture, state: object, source: str) -> LoadedDPM:
    """Build our UNet and load every weight into it, or fail listing the missing/extra/mis-shaped ones."""
    unet = UNet(arch.unet)
    state = float_tensors(state, source)
    if arch.new_attention_order:
        state = legacy_qkv_layout(unet, state)
    load_state_strict(unet, state, source)
    return LoadedDPM(family, unet.eval(), arch.schedule)


def legacy_qkv_layout(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Reorder qkv rows from QKVAttention's layout (q|k|v, then heads) to QKVAttentionLegacy's (heads, then
    q|k|v), which pdae's AttentionBlock computes (guided_diffusion/unet.py, use_new_attention_order)."""
    state = dict(state)
    for name, block in model.named_modules():
        if isinstance(block, AttentionBlock):
            for key in (f"{name}.qkv.weight", f"{name}.qkv.bias"):
                if key in state and state[key].shape[0] % (3 * block.num_heads) == 0:
                    state[key] = _heads_first(state[key], block.num_heads)
    return state


def _heads_first(rows: Tensor, heads: int) -> Tensor:
    """Rows indexed [part, head, channel] -> [head, part, channel]."""
    return rows.reshape(3, heads, -1, *rows.shape[1:]).transpose(0, 1).reshape(rows.shape)


# ---------------------------------------------------------------- rules shared by the families


def whole_channel_mult(flags: Flags, mult: tuple[float, ...]) -> tuple[int, ...]:
    """Multipliers our UNet can build: whole numbers starting at 1 (its first conv has model_channels)."""
    flags.refuse(any(m != int(m) for m in mult), f"channel_mult {mult} has fractional multipliers (like "
                 "guided-diffusion's 512x512 model); pdae's UNet supports whole-number multipliers only")
    flags.refuse(not mult or mult[0] != 1, f"channel_mult {mult} must start with 1: the first layer of "
                 "pdae's UNet has model_channels channels")
    return tuple(int(m) for m in mult)


def named_schedule(flags: Flags, name_key: str, steps_key: str) -> NoiseSchedule:
    name = flags.as_str(name_key)
    flags.refuse(name not in SCHEDULE_NAMES, f"{name_key}={name!r}: pdae has the "
                 f"{' and '.join(SCHEDULE_NAMES)} schedules only")
    return NoiseSchedule(name, flags.as_int(steps_key))


def refuse_rescaled_time(flags: Flags, flag: str, steps_key: str) -> None:
    """A network fed t * 1000 / T (rescale_timesteps) matches pdae (integer t) only at T = 1000."""
    steps = flags.as_int(steps_key)
    flags.refuse(flags.as_bool(flag) and steps != 1000, f"{flag}: true with {steps_key}={steps} means the "
                 f"network was fed t * 1000 / {steps}, while pdae feeds integer t in 0..T-1, so it cannot be "
                 "used as it is (improved-diffusion defaults to rescale_timesteps: true, guided-diffusion "
                 "to false)")


def refuse_upsample_heads(flags: Flags) -> None:
    heads, up = flags.as_int("num_heads"), flags.as_int("num_heads_upsample")
    flags.refuse(up not in (-1, heads) and flags.as_int("num_head_channels") == -1,
                 f"num_heads_upsample={up} differs from num_heads={heads}: pdae's UNet uses one head count "
                 "in every attention layer")

