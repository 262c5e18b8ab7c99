"""OpenAI guided-/improved-diffusion DPMs: a state dict (`input_blocks.0.0.weight`, a .pt suffix is not
required) with a YAML of the flags of guided_diffusion/script_util.py, read into pdae's ADM UNet.
"""

from __future__ import annotations

from pathlib import Path

from pdae.backbones.adm import (Architecture, LoadedDPM, assemble, named_schedule, refuse_rescaled_time,
                                refuse_upsample_heads, whole_channel_mult)
from pdae.backbones.files import Flags, find_yaml, missing_yaml, read_yaml, without_nones
from pdae.nn.unet import UNetConfig

GUIDED = "guided-diffusion"
# guided_diffusion/script_util.py model_and_diffusion_defaults(); create_model fixes in_channels to 3.
GUIDED_DEFAULTS = dict(
    image_size=64, num_channels=128, num_res_blocks=2, num_heads=4, num_heads_upsample=-1,
    num_head_channels=-1, attention_resolutions="16,8", channel_mult="", dropout=0.0, class_cond=False,
    use_scale_shift_norm=True, resblock_updown=False, use_new_attention_order=False, learn_sigma=False,
    diffusion_steps=1000, noise_schedule="linear", predict_xstart=False, rescale_timesteps=False,
    in_channels=3)
# channel_mult "" in guided_diffusion/script_util.py create_model; 32 from improved_diffusion/script_util.py.
GUIDED_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4),
                       64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}
GUIDED_NUM_CLASSES = 1000  # script_util.NUM_CLASSES
GUIDED_PROBE = "input_blocks.0.0.weight"


def is_guided(data: dict) -> bool:
    return GUIDED_PROBE in data


def load_guided(path: Path, data: dict, config: Path | None) -> LoadedDPM:
    yaml_path = find_yaml(path, config)
    if yaml_path is None:
        raise missing_yaml(path, "an OpenAI guided-diffusion state dict", "its flags (image_size, ...)")
    flags = Flags({**GUIDED_DEFAULTS, **without_nones(read_yaml(yaml_path))}, str(yaml_path))
    return assemble(GUIDED, guided_architecture(flags), data, str(path))


def guided_architecture(flags: Flags) -> Architecture:
    """guided_diffusion/script_util.py create_model_and_diffusion, in pdae's terms."""
    flags.refuse(flags.as_bool("predict_xstart"), "predict_xstart: true is x_0-prediction; pdae needs eps")
    refuse_rescaled_time(flags, "rescale_timesteps", "diffusion_steps")
    refuse_upsample_heads(flags)
    size, channels = flags.as_int("image_size"), flags.as_int("in_channels")
    unet = UNetConfig(
        image_size=size, in_channels=channels, out_channels=channels,
        model_channels=flags.as_int("num_channels"), num_res_blocks=flags.as_int("num_res_blocks"),
        channel_mult=_guided_channel_mult(flags, size),
        attention_resolutions=tuple(size // res for res in flags.as_ints("attention_resolutions")),  # px
        dropout=flags.as_float("dropout"), num_heads=flags.as_int("num_heads"),
        num_head_channels=flags.as_int("num_head_channels"), learn_sigma=flags.as_bool("learn_sigma"),
        use_scale_shift_norm=flags.as_bool("use_scale_shift_norm"),
        resblock_updown=flags.as_bool("resblock_updown"),
        num_classes=GUIDED_NUM_CLASSES if flags.as_bool("class_cond") else None)
    schedule = named_schedule(flags, "noise_schedule", "diffusion_steps")
    return Architecture(unet, schedule, flags.as_bool("use_new_attention_order"))


def _guided_channel_mult(flags: Flags, size: int) -> tuple[int, ...]:
    if flags.values["channel_mult"] not in ("", []):
        return whole_channel_mult(flags, flags.as_numbers("channel_mult"))
    flags.refuse(size not in GUIDED_CHANNEL_MULT, f"guided-diffusion has no default channel_mult for "
                 f"image_size {size}; give channel_mult")
    return whole_channel_mult(flags, GUIDED_CHANNEL_MULT[size])

