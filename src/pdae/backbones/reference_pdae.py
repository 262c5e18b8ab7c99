"""The reference PDAE's pre-trained DPMs (github ckczzj/PDAE), read into pdae's ADM UNet: a folder with
`config.yml` and `checkpoint.pt`, or that checkpoint.pt itself; weights under `ema_denoise_fn`,
architecture in `denoise_fn_config` (the arguments of model/unet/unet.py UNet), schedule in
`diffusion_config`, resolution in `dataset_config.image_size`.
"""

from __future__ import annotations

import math
from pathlib import Path

from pdae.backbones.adm import Architecture, LoadedDPM, assemble, whole_channel_mult
from pdae.backbones.files import ACCEPTED, Flags, read_torch_file, read_yaml
from pdae.checkpoint import WEIGHTS_NAME
from pdae.errors import CheckpointError
from pdae.nn.unet import UNetConfig
from pdae.schedule import NoiseSchedule

REFERENCE = "reference-pdae"
# Required arguments of ckczzj/PDAE model/unet/unet.py UNet; its attention_resolutions are downsample factors.
REFERENCE_KEYS = ("input_channel", "base_channel", "channel_multiplier", "num_residual_blocks_of_a_block",
                  "attention_resolutions", "num_heads", "head_channel", "use_new_attention_order", "dropout")
# sampler/test_dpms.py samples the pre-trained DPMs with linear betas over 1000 steps.
REFERENCE_DIFFUSION = dict(timesteps=1000, betas_type="linear", linear_beta_start=1e-4,
                           linear_beta_end=0.02)


def is_reference(data: dict) -> bool:
    return isinstance(data.get("ema_denoise_fn"), dict)


def load_reference_folder(folder: Path, config: Path | None) -> LoadedDPM:
    weights = folder / "checkpoint.pt"
    if not weights.is_file() or not (config or folder / "config.yml").is_file():
        raise CheckpointError(f"no checkpoint at {folder}: it holds neither {WEIGHTS_NAME} (a pdae run) nor "
                              f"config.yml and checkpoint.pt (a reference-PDAE DPM); {ACCEPTED}")
    data = read_torch_file(weights)
    if not isinstance(data, dict) or not is_reference(data):
        raise CheckpointError(f"{weights} has no ema_denoise_fn state dict: not a reference-PDAE DPM")
    return load_reference(weights, data, config)


def load_reference(path: Path, data: dict, config: Path | None) -> LoadedDPM:
    yaml_path = config or path.parent / "config.yml"
    if not yaml_path.is_file():
        raise CheckpointError(f"{path} is a reference-PDAE checkpoint, but its config.yml is missing "
                              f"(looked for {yaml_path}; or pass --config)")
    arch = reference_architecture(read_yaml(yaml_path), str(yaml_path))
    return assemble(REFERENCE, arch, data["ema_denoise_fn"], f"{path} (ema_denoise_fn)")


def reference_architecture(config: dict, source: str) -> Architecture:
    """ckczzj/PDAE model/unet/unet.py UNet(**denoise_fn_config): ResBlock up/down, scale-shift norm always."""
    net = config.get("denoise_fn_config")
    if not isinstance(net, dict):
        raise CheckpointError(f"{source} has no denoise_fn_config section: not a reference-PDAE DPM config")
    flags = Flags({"learn_sigma": False, "dims": 2, **net}, source)
    missing = [key for key in REFERENCE_KEYS if key not in net]
    flags.refuse(bool(missing), f"denoise_fn_config lacks {', '.join(missing)}")
    flags.refuse(net.get("num_class") is not None, "num_class is set: the reference PDAE embeds class labels "
                 "with an MLP on one-hot vectors, pdae's UNet with a lookup table")
    flags.refuse(flags.as_int("dims") != 2, "dims must be 2")
    channels = flags.as_int("input_channel")
    unet = UNetConfig(
        image_size=_reference_image_size(config, source), in_channels=channels, out_channels=channels,
        model_channels=flags.as_int("base_channel"),
        num_res_blocks=flags.as_int("num_residual_blocks_of_a_block"),
        channel_mult=whole_channel_mult(flags, flags.as_numbers("channel_multiplier")),
        attention_resolutions=flags.as_ints("attention_resolutions"), dropout=flags.as_float("dropout"),
        num_heads=flags.as_int("num_heads"), num_head_channels=flags.as_int("head_channel"),
        use_scale_shift_norm=True, resblock_updown=True, learn_sigma=flags.as_bool("learn_sigma"))
    return Architecture(unet, reference_schedule(config, source), flags.as_bool("use_new_attention_order"))


def _reference_image_size(config: dict, source: str) -> int:
    """The UNet itself takes no size; the training config gives it in dataset_config (config/*.yml)."""
    for section in (config.get("dataset_config"), config, config.get("denoise_fn_config")):
        if isinstance(section, dict) and section.get("image_size") is not None:
            return Flags(section, source).as_int("image_size")
    raise CheckpointError(f"{source} gives no image size: add dataset_config: {{image_size: N}}")


def reference_schedule(config: dict, source: str) -> NoiseSchedule:
    """diffusion_config of model/diffusion/gaussian_diffusion.py: np.linspace(start, end, timesteps) betas."""
    diffusion = config.get("diffusion_config")
    flags = Flags({**REFERENCE_DIFFUSION, **(diffusion if isinstance(diffusion, dict) else {})}, source)
    flags.refuse(flags.as_str("betas_type") != "linear", f"betas_type {flags.as_str('betas_type')!r}: the "
                 "reference PDAE has linear betas only")
    schedule = NoiseSchedule("linear", flags.as_int("timesteps"))
    given = (flags.as_float("linear_beta_start"), flags.as_float("linear_beta_end"))
    ours = (float(schedule.betas[0]), float(schedule.betas[-1]))
    flags.refuse(not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(given, ours)),
                 f"linear betas {given[0]}..{given[1]} differ from pdae's linear schedule over "
                 f"{schedule.num_timesteps} steps ({ours[0]:g}..{ours[1]:g}: Ho et al.'s, scaled by "
                 "1000 / T)")
    return schedule

