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
from pdae.errors import CheckpointError, PdaeError
from pdae.nn.unet import AttentionBlock, UNet, UNetConfig
from pdae.schedule import SCHEDULE_NAMES, NoiseSchedule

PDAE = "pdae"


@dataclass(frozen=True)
class Preset:
    """A named UNet architecture: a config factory over (image size, channels), the one resolution it is
    made for (None: any that its depth divides) and the line `pdae pretrain --help` shows."""

    name: str
    description: str
    build: Callable[[int, int], UNetConfig]
    image_size: int | None = None

    def __call__(self, image_size: int, channels: int) -> UNetConfig:
        """The config at this size; a preset made for one resolution refuses others, because its attention
        layers sit at pixel sizes and its depth is chosen for that resolution."""
        if self.image_size not in (None, image_size):
            raise PdaeError(f"preset {self.name} is made for {self.image_size}x{self.image_size} images, "
                            f"not {image_size}x{image_size}: pass --image-size {self.image_size} or choose "
                            "another preset")
        return self.build(image_size, channels)


def _adm(size: int, channels: int, res_blocks: int, mult: tuple[int, ...], attention_px: tuple[int, ...],
         **options: int | bool) -> Callable[[int, int], UNetConfig]:
    """A dropout-0.1 UNet for `size` px whose attention is given at pixel sizes, stored as the downsample
    factors UNetConfig takes (16 and 8 px are factors 4 and 8 at 64 px)."""
    factors = tuple(size // px for px in attention_px)
    return lambda image_size, ch: UNetConfig(image_size, ch, channels, ch, res_blocks, factors, mult,
                                             dropout=0.1, **options)


# `pdae pretrain --preset` offers exactly these. The RGB presets take the ADM UNet with scale-shift norm,
# and are meant for the linear T = 1000 schedule (pretrain's default) like the DPMs they follow.
# - adm-32 follows the 32 px CIFAR-10 DPMs of DDPM (Ho et al. 2020: 128 channels x (1, 2, 2, 2), 2 res
#   blocks, attention at 16 px, 1 head, dropout 0.1, linear T = 1000) and improved-diffusion (the same
#   channels, 3 res blocks, attention at 16 and 8 px with 4 heads, dropout 0.3): 128 x (1, 2, 2, 2), 2 res
#   blocks, attention at 16 and 8 px, 4 heads, dropout 0.1. Neither Diff-AE nor the reference PDAE has a
#   32 px DPM.
# - adm-64 follows Diff-AE's 64 px DDPM (phizaz/diffae templates.py ddpm() and ffhq64_ddpm, config.py
#   defaults: 64 channels x (1, 2, 4, 8), 2 res blocks, attention at 16 px plus the 8 px middle block,
#   1 head, ResBlock up/down-sampling, dropout 0.1, linear T = 1000), with attention at 8 px in the
#   levels too; its time embedding is pdae's 4 x 64 wide (Diff-AE's 512). The reference PDAE trains on
#   Diff-AE's CelebA-64 data and ships its own 64 px DPM config with the checkpoint, outside its repository.
# - The -cpu presets keep the layout (attention at 16 and 8 px, heads, resampling) with fewer channels and
#   one res block per level, so that a model trains on a few CPU cores and ships in a few MB of fp16.
PRESETS: dict[str, Preset] = {preset.name: preset for preset in (
    Preset("tiny", "any even size, 0.76M parameters: 32 channels x (1, 2), 1 res block; for tests",
           lambda size, ch: UNetConfig(size, ch, 32, ch, 1, (2,), (1, 2))),
    Preset("small", "any size divisible by 4, 1.7M: 32 channels x (1, 2, 2), 2 res blocks; the shipped "
                    "MNIST DPM", lambda size, ch: UNetConfig(size, ch, 32, ch, 2, (4,), (1, 2, 2))),
    Preset("wide", "any size divisible by 4, 6.9M: small at twice the width, 64 channels x (1, 2, 2), 2 res "
                   "blocks", lambda size, ch: UNetConfig(size, ch, 64, ch, 2, (4,), (1, 2, 2))),
    Preset("base", "any size divisible by 8, 9.6M: 64 channels x (1, 2, 2, 2), 2 res blocks",
           lambda size, ch: UNetConfig(size, ch, 64, ch, 2, (4,), (1, 2, 2, 2))),
    Preset("adm-32", "32x32, 40M: the CIFAR-10 DPM of DDPM / improved-diffusion, 128 channels x "
                     "(1, 2, 2, 2), 2 res blocks, attention at 16 and 8 px, dropout 0.1",
           _adm(32, 128, 2, (1, 2, 2, 2), (16, 8), num_heads=4), 32),
    Preset("adm-32-cpu", "32x32, 4.9M: adm-32 with 64 channels x (1, 2, 2) and 1 res block, for CPUs",
           _adm(32, 64, 1, (1, 2, 2), (16, 8), num_heads=4), 32),
    Preset("adm-64", "64x64, 69M: Diff-AE's 64 px DDPM, 64 channels x (1, 2, 4, 8), 2 res blocks, "
                     "attention at 16 and 8 px, dropout 0.1",
           _adm(64, 64, 2, (1, 2, 4, 8), (16, 8), resblock_updown=True), 64),
    Preset("adm-64-cpu", "64x64, 5.4M: adm-64 with 32 channels x (1, 2, 4, 4) and 1 res block, for CPUs",
           _adm(64, 32, 1, (1, 2, 4, 4), (16, 8), resblock_updown=True), 64),
)}


def preset_name(config: UNetConfig) -> str:
    """The preset whose architecture `config` is, or 'custom' (what `pdae inspect-dpm` reports)."""
    return next((name for name, preset in PRESETS.items() if preset.image_size in (None, config.image_size)
                 and preset(config.image_size, config.in_channels) == config), "custom")


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

