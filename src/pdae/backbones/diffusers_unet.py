"""A diffusers `UNet2DModel` folder as a PDAE backbone, read offline (DESIGN.md §3).

The split follows `UNet2DModel.forward` (diffusers models/unets/unet_2d.py): time embedding (`time_proj`,
`time_embedding`); encoder half (`conv_in`, `down_blocks`, collecting the residual samples); decoder half
(`mid_block`, `up_blocks`, `conv_norm_out`, `conv_act`, `conv_out`). The scheduler's prediction type is
turned into eps here, so the rest of pdae never sees v- or x0-prediction. G is diffusers' own mid and up
blocks (freshly initialised, or copied with init_from_dpm) with every ResnetBlock2D z-modulated, and a
zero output conv. Weights are read with safetensors or `torch.load(weights_only=True)`; nothing is
downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from diffusers import UNet2DModel
from diffusers.models.resnet import ResnetBlock2D
from safetensors.torch import load_file
from torch import Tensor, nn

from pdae.backbones.diffusers_folder import DIFFUSERS, MODEL_CONFIG, PIPELINE_INDEX
from pdae.backbones.files import Flags, float_tensors, read_json, read_torch_file
from pdae.checkpoint import load_state_strict
from pdae.errors import CheckpointError
from pdae.schedule import SCHEDULE_NAMES, NoiseSchedule

SCHEDULER_CONFIG = "scheduler_config.json"
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
# Blocks whose forward passes temb to ResnetBlock2Ds only (the NCSN++ skip blocks and K-blocks are refused).
DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D", "ResnetDownsampleBlock2D")
UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D")
TIME_NORMS = ("default", "scale_shift")
# DDPMScheduler's defaults (diffusers schedulers/scheduling_ddpm.py); the training schedule is all pdae reads.
SCHEDULER_DEFAULTS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                          trained_betas=None, prediction_type="epsilon", rescale_betas_zero_snr=False)


class TimeEmbedding(NamedTuple):
    """This backbone's `emb`: diffusers' time embedding, and t, which the eps conversion needs."""

    emb: Tensor
    t: Tensor


class DiffusersBackbone(nn.Module):
    """A frozen UNet2DModel split at its bottleneck; `forward(x_t, t)` and `decode` return eps."""

    def __init__(self, unet: UNet2DModel, prediction_type: str, schedule: NoiseSchedule):
        super().__init__()
        self.unet, self.prediction_type, self.schedule = unet, prediction_type, schedule

    @property
    def image_size(self) -> int:
        return square_size(self.unet.config.sample_size)  # checked when loaded

    @property
    def in_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def embedding_dim(self) -> int:
        return self.unet.time_embedding.linear_2.out_features

    def time_embedding(self, t: Tensor) -> TimeEmbedding:
        return TimeEmbedding(self.unet.time_embedding(self.unet.time_proj(t).to(self.unet.dtype)), t)

    def encode(self, x_t: Tensor, emb: TimeEmbedding) -> tuple[Tensor, list[Tensor]]:
        """conv_in and down blocks; skips = [x_t (for the eps conversion), diffusers' residual samples...]."""
        h = self.unet.conv_in(2 * x_t - 1 if self.unet.config.center_input_sample else x_t)
        skips = [x_t, h]
        for block in self.unet.down_blocks:
            h, residuals = block(h, emb.emb)
            skips += residuals
        return h, skips

    def decode(self, h: Tensor, skips: list[Tensor], emb: TimeEmbedding) -> Tensor:
        prediction = decoder_half(self.unet, h, skips[1:], emb.emb)[:, : self.in_channels]  # no learned var
        return self.to_eps(prediction, skips[0], emb.t)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        emb = self.time_embedding(t)
        return self.decode(*self.encode(x_t, emb), emb)

    def to_eps(self, prediction: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """eps from v (eps = sqrt(abar) v + sqrt(1 - abar) x_t, Salimans & Ho 2022) or from x0."""
        if self.prediction_type == "sample":
            return self.schedule.eps_from_x0(x_t, t, prediction)
        if self.prediction_type == "v_prediction":
            alpha_bar = self.schedule.at(self.schedule.alpha_bar, t, x_t)
            return alpha_bar.sqrt() * prediction + (1 - alpha_bar).sqrt() * x_t
        return prediction

    def make_shift_decoder(self, latent_dim: int, init_from_dpm: bool = False) -> DiffusersShiftDecoder:
        return DiffusersShiftDecoder(self.unet, latent_dim, init_from_dpm)

    def to_config(self, schedule: NoiseSchedule) -> dict:
        unet = {k: v for k, v in self.unet.config.items() if not k.startswith("_")}
        return {"kind": "dpm", "backbone": DIFFUSERS, "unet": unet, "prediction_type": self.prediction_type,
                "schedule": schedule.to_config()}

    @classmethod
    def from_config(cls, config: dict) -> DiffusersBackbone:
        """Rebuild from `to_config` (random weights: the checkpoint's state dict fills them)."""
        return cls(UNet2DModel.from_config(config["unet"]), config["prediction_type"],
                   NoiseSchedule(**config["schedule"]))

    def describe(self) -> dict[str, str]:
        """What `pdae inspect-dpm` prints for a diffusers folder."""
        cfg, count = self.unet.config, sum(p.numel() for p in self.parameters())
        return {
            "family": DIFFUSERS,
            "resolution": f"{self.image_size}x{self.image_size}",
            "channels": str(self.in_channels),
            "schedule": f"{describe_schedule(self.schedule)}, T={self.schedule.num_timesteps}",
            "prediction": self.prediction_type + ("" if self.prediction_type == "epsilon"
                                                  else " (pdae converts it to eps)"),
            "learned variance": "no" if cfg.out_channels == cfg.in_channels
                                else "yes (2C outputs; pdae uses the eps half)",
            "class-conditional": "no",
            "unet": f"UNet2DModel, channels {tuple(cfg.block_out_channels)}, {cfg.layers_per_block} layers "
                    f"per block, down blocks {', '.join(cfg.down_block_types)}",
            "parameters": f"{count:,} ({count / 1e6:.2f}M)",
        }


def decoder_half(net: nn.Module, h: Tensor, skips: list[Tensor], temb: Tensor) -> Tensor:
    """Steps 4-6 of UNet2DModel.forward on `net` (the DPM or G, same names): each up block takes its skips."""
    if net.mid_block is not None:
        h = net.mid_block(h, temb)
    skips = list(skips)
    for block in net.up_blocks:
        h = block(h, tuple(skips[-len(block.resnets):]), temb)
        del skips[-len(block.resnets):]
    return net.conv_out(net.conv_act(net.conv_norm_out(h)))


class DiffusersShiftDecoder(nn.Module):
    """G's trainable half: diffusers' mid and up blocks with z-modulated ResnetBlock2Ds, zero output conv."""

    def __init__(self, unet: UNet2DModel, latent_dim: int, init_from_dpm: bool):
        super().__init__()
        twin = UNet2DModel.from_config(unet.config)  # diffusers' own initialisation
        if init_from_dpm:
            twin.load_state_dict(unet.state_dict())
        self.mid_block, self.up_blocks = twin.mid_block, twin.up_blocks
        self.conv_norm_out, self.conv_act = twin.conv_norm_out, twin.conv_act
        self.conv_out = nn.Conv2d(twin.conv_out.in_channels, unet.config.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        modulate_resnets(self, latent_dim)

    def forward(self, h: Tensor, skips: list[Tensor], emb: TimeEmbedding, z: Tensor) -> Tensor:
        """The up blocks hand temb to every ResnetBlock2D untouched, so z travels with it: temb = [emb, z]."""
        return decoder_half(self, h, skips[1:], torch.cat([emb.emb, z.to(emb.emb.dtype)], dim=1))


def modulate_resnets(module: nn.Module, latent_dim: int) -> None:
    """Wrap every ResnetBlock2D below `module`, in place, in a ZModulatedResnet."""
    for name, child in module.named_children():
        if isinstance(child, ResnetBlock2D):
            setattr(module, name, ZModulatedResnet(child, latent_dim))
        else:
            modulate_resnets(child, latent_dim)


class ZModulatedResnet(nn.Module):
    """ResnetBlock2D.forward (diffusers models/resnet.py) on temb = [emb, z], with a z scale/shift after the
    group norm and the time scale/shift, as in pdae's own ResBlock."""

    def __init__(self, block: ResnetBlock2D, latent_dim: int):
        super().__init__()
        self.block = block
        self.z_layers = nn.Linear(latent_dim, 2 * block.out_channels)

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        b, latent_dim = self.block, self.z_layers.in_features
        h = b.nonlinearity(b.norm1(x))
        for resample in (b.upsample, b.downsample):
            if resample is not None:
                x, h = resample(x), resample(h)
        h = self._time_modulated(b.conv1(h), temb[:, :-latent_dim])
        z_scale, z_shift = self.z_layers(temb[:, -latent_dim:])[:, :, None, None].chunk(2, dim=1)
        h = b.conv2(b.dropout(b.nonlinearity(h * (1 + z_scale) + z_shift)))
        x = x if b.conv_shortcut is None else b.conv_shortcut(x)
        return (x + h) / b.output_scale_factor

    def _time_modulated(self, h: Tensor, emb: Tensor) -> Tensor:
        """norm2 with the time embedding added before it (default) or as scale and shift after it."""
        b = self.block
        emb = b.time_emb_proj(emb if b.skip_time_act else b.nonlinearity(emb))[:, :, None, None]
        if b.time_embedding_norm == "default":
            return b.norm2(h + emb)
        scale, shift = emb.chunk(2, dim=1)
        return b.norm2(h) * (1 + scale) + shift


# ---------------------------------------------------------------- reading a folder


def load_diffusers_dpm(path: Path) -> DiffusersBackbone:
    """The UNet2DModel in `path` (or in a pipeline's unet/), in eval mode, with its training schedule."""
    folder = path / "unet" if (path / PIPELINE_INDEX).is_file() else path
    config = read_json(folder / MODEL_CONFIG)
    refuse_unsupported(Flags(config, str(folder / MODEL_CONFIG)))
    schedule, prediction_type = read_scheduler(find_scheduler_config(folder))
    unet = UNet2DModel.from_config(config)
    weights = _weights_file(folder)
    state = load_file(str(weights)) if weights.suffix == ".safetensors" else read_torch_file(weights)
    load_state_strict(unet, float_tensors(state, str(weights)), str(weights))
    return DiffusersBackbone(unet, prediction_type, schedule).eval()


def refuse_unsupported(f: Flags) -> None:
    """UNet2DModel settings that pdae cannot split, or that are no unconditional discrete-time DPM."""
    name = f.values.get("_class_name")
    f.refuse(name != "UNet2DModel", f"a diffusers {name}: pdae takes an unconditional UNet2DModel")
    f.refuse(f.values.get("class_embed_type") is not None or f.values.get("num_class_embeds") is not None,
             "the UNet is class-conditional (class_embed_type / num_class_embeds); PDAE needs an "
             "unconditional DPM")
    f.refuse(f.values.get("time_embedding_type") == "fourier", "time_embedding_type fourier is a continuous-"
             "time score model (NCSN++); pdae needs a discrete-time DPM")
    blocks = [*f.values.get("down_block_types", ()), *f.values.get("up_block_types", ())]
    odd = [b for b in blocks if b not in DOWN_BLOCKS + UP_BLOCKS]
    f.refuse(bool(odd), f"blocks {', '.join(odd)}: pdae splits UNet2DModels built from "
             f"{', '.join(DOWN_BLOCKS)} and {', '.join(UP_BLOCKS)}")
    f.refuse(f.values.get("mid_block_type", "UNetMidBlock2D") not in ("UNetMidBlock2D", None),
             "mid_block_type must be UNetMidBlock2D or null")
    f.refuse(f.values.get("resnet_time_scale_shift", "default") not in TIME_NORMS,
             f"resnet_time_scale_shift must be one of {', '.join(TIME_NORMS)}")
    channels = f.as_int("in_channels")
    f.refuse(f.as_int("out_channels") not in (channels, 2 * channels), "out_channels must be in_channels "
             "(eps) or twice that (eps and learned variance)")
    size = f.values.get("sample_size")
    f.refuse(square_size(size) is None, f"sample_size {size!r}: pdae needs square images of a given size")


def square_size(size: object) -> int | None:
    """sample_size as one number (it may be an int or [s, s]); None when it is not one."""
    sizes = set(size) if isinstance(size, (list, tuple)) else {size}
    value = sizes.pop() if len(sizes) == 1 else None
    return value if isinstance(value, int) else None


def find_scheduler_config(folder: Path) -> Path:
    """scheduler_config.json beside the model, or in the pipeline's scheduler/ folder next to unet/."""
    candidates = (folder / SCHEDULER_CONFIG, folder.parent / "scheduler" / SCHEDULER_CONFIG)
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        raise CheckpointError(f"{folder} is a diffusers UNet2DModel, but pdae needs its training schedule "
                              f"and prediction type: no {SCHEDULER_CONFIG} at "
                              f"{' or '.join(map(str, candidates))}")
    return found


def read_scheduler(path: Path) -> tuple[NoiseSchedule, str]:
    """The training schedule and prediction type of a scheduler config (DDPM, DDIM, ... share these keys)."""
    f = Flags({**SCHEDULER_DEFAULTS, **read_json(path)}, str(path))
    prediction_type = f.as_str("prediction_type")
    f.refuse(prediction_type not in PREDICTION_TYPES, f"prediction_type {prediction_type!r}: pdae reads "
             f"{', '.join(PREDICTION_TYPES)}")
    f.refuse(f.as_bool("rescale_betas_zero_snr"), "rescale_betas_zero_snr: true ends at alpha_bar = 0, where "
             "x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar) is undefined")
    return scheduler_schedule(f), prediction_type


def scheduler_schedule(f: Flags) -> NoiseSchedule:
    """The betas as DDPMScheduler computes them, as pdae's named schedule when they are one."""
    steps, kind = f.as_int("num_train_timesteps"), f.as_str("beta_schedule")
    if f.values["trained_betas"] is not None:
        return schedule_of(torch.tensor(f.as_numbers("trained_betas"), dtype=torch.float64))
    if kind == "squaredcos_cap_v2":  # Nichol & Dhariwal's cosine, as pdae's cosine schedule computes it
        return NoiseSchedule("cosine", steps)
    f.refuse(kind not in ("linear", "scaled_linear"), f"beta_schedule {kind!r}: pdae reads linear, "
             "scaled_linear, squaredcos_cap_v2 or trained_betas")
    start, end = f.as_float("beta_start"), f.as_float("beta_end")
    if kind == "scaled_linear":
        return schedule_of(torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2)
    return schedule_of(torch.linspace(start, end, steps, dtype=torch.float64))


def schedule_of(betas: Tensor) -> NoiseSchedule:
    """pdae's linear or cosine schedule when the betas are those, else a custom one carrying them."""
    for name in SCHEDULE_NAMES:
        named = NoiseSchedule(name, len(betas))
        if torch.allclose(named.betas, betas, rtol=1e-9, atol=0):
            return named
    return NoiseSchedule.from_betas(betas)


def describe_schedule(schedule: NoiseSchedule) -> str:
    betas = schedule.betas
    return f"{schedule.name} (betas {float(betas[0]):.6g}..{float(betas[-1]):.6g})"


def _weights_file(folder: Path) -> Path:
    found = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if found is None:
        raise CheckpointError(f"{folder} holds no {' or '.join(WEIGHT_FILES)}")
    return found
