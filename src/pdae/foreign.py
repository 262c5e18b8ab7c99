"""Pre-trained DPMs from other code bases, read safely into a pdae backbone (DESIGN.md §2, §3 backbone).

Accepted forms, recognised by content (a .pt/.ckpt suffix is not required):
- pdae's own run folder or .safetensors file (pdae.dpm);
- the reference PDAE's pre-trained DPM (github ckczzj/PDAE): a folder with `config.yml` and
  `checkpoint.pt`, or that checkpoint.pt itself; weights under `ema_denoise_fn`, architecture in
  `denoise_fn_config` (the arguments of model/unet/unet.py UNet), schedule in `diffusion_config`,
  resolution in `dataset_config.image_size`;
- a Diff-AE DDIM baseline (github phizaz/diffae, BeatGANsUNetModel): a Lightning checkpoint whose
  `state_dict` (or a bare state dict) holds the EMA weights under `ema_model.`, with a YAML of its config;
- an OpenAI guided-/improved-diffusion state dict (`input_blocks.0.0.weight`), with a YAML of the flags of
  guided_diffusion/script_util.py;
- a diffusers UNet2DModel folder (config.json naming its `_class_name`) or pipeline folder (model_index.json),
  with its scheduler_config.json: pdae.backbones.diffusers_unet, the only family not loaded into pdae's UNet.
A Hugging Face hub id is refused: pdae works offline and downloads nothing.
The YAML of a Diff-AE or OpenAI file is `--config`, else `<stem>.yaml`/`<stem>.yml` beside the file, else
`config.yaml`/`config.yml` in its folder. Files are read with `torch.load(weights_only=True)` only (plus the
harmless builtins frozenset, slice and range); a file that needs other pickled code is refused.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from pdae.backbones import DIFFUSERS
from pdae.checkpoint import WEIGHTS_NAME, load_state_strict
from pdae.dpm import load_dpm
from pdae.errors import CheckpointError
from pdae.nn.unet import AttentionBlock, UNet, UNetConfig
from pdae.schedule import SCHEDULE_NAMES, NoiseSchedule

PDAE, GUIDED, DIFFAE, REFERENCE = "pdae", "guided-diffusion", "diff-ae", "reference-pdae"
ACCEPTED = ("pdae reads a pdae run folder or .safetensors file; an OpenAI guided-/improved-diffusion state "
            "dict (.pt) with a YAML of its flags; a Diff-AE Lightning checkpoint (.ckpt, weights under "
            "ema_model.) with a YAML of its config; a reference-PDAE folder with config.yml and "
            "checkpoint.pt; or a diffusers UNet2DModel folder with its scheduler_config.json")
MODEL_CONFIG, PIPELINE_INDEX = "config.json", "model_index.json"  # diffusers' folder layout
HUB_ID = re.compile(r"[\w][\w.-]*/[\w.-]+")  # owner/name

# Builtins that torch's weights-only unpickler can rebuild once allowed (it cannot rebuild defaultdict or
# deque) and that extra entries of a Lightning checkpoint may hold; building them runs no code from the file.
HARMLESS_GLOBALS = {f"builtins.{t.__qualname__}": t for t in (frozenset, slice, range)}
# guided_diffusion/script_util.py str2bool
TRUE_WORDS, FALSE_WORDS = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")

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

# Diff-AE config names: TrainConfig (diffae config.py) -> BeatGANsUNetConfig (diffae model/unet.py); either
# spelling is accepted. Both give attention resolutions in pixels.
DIFFAE_ALIASES = dict(
    img_size="image_size", net_ch="model_channels", net_ch_mult="channel_mult",
    net_num_res_blocks="num_res_blocks", net_num_input_res_blocks="num_input_res_blocks",
    net_attn="attention_resolutions", net_beatgans_attn_head="num_heads",
    net_beatgans_embed_channels="embed_channels", net_resblock_updown="resblock_updown",
    net_beatgans_resnet_two_cond="resnet_two_cond", net_beatgans_use_mid_attn="use_mid_attn")
# BeatGANsUNetConfig defaults (equal to TrainConfig's and to templates.py ddpm()), plus the diffusion's.
DIFFAE_DEFAULTS = dict(
    image_size=64, in_channels=3, out_channels=3, model_channels=64, channel_mult=(1, 2, 4, 8),
    num_res_blocks=2, num_input_res_blocks=None, input_channel_mult=None, attention_resolutions=(16,),
    num_heads=1, num_head_channels=-1, num_heads_upsample=-1, embed_channels=512, time_embed_channels=None,
    resblock_updown=True, dropout=0.1, use_new_attention_order=False, resnet_two_cond=False,
    use_mid_attn=True, model_name="beatgans_ddpm", T=1000, beta_scheduler="linear",
    beatgans_model_mean_type="eps", beatgans_rescale_timesteps=False)
DIFFAE_PREFIX = "ema_model."

# Required arguments of ckczzj/PDAE model/unet/unet.py UNet; its attention_resolutions are downsample factors.
REFERENCE_KEYS = ("input_channel", "base_channel", "channel_multiplier", "num_residual_blocks_of_a_block",
                  "attention_resolutions", "num_heads", "head_channel", "use_new_attention_order", "dropout")
# sampler/test_dpms.py samples the pre-trained DPMs with linear betas over 1000 steps.
REFERENCE_DIFFUSION = dict(timesteps=1000, betas_type="linear", linear_beta_start=1e-4,
                           linear_beta_end=0.02)


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


@dataclass(frozen=True)
class Flags:
    """Config values, converted as guided-diffusion's argparse does; errors name the config file."""

    values: dict
    source: str

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {message}")

    def refuse(self, condition: bool, message: str) -> None:
        if condition:
            raise self.error(message)

    def as_str(self, name: str) -> str:
        return str(self.values[name])

    def as_bool(self, name: str) -> bool:
        value = self.values[name]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        self.refuse(text not in TRUE_WORDS + FALSE_WORDS, f"{name}={value!r} is not true or false")
        return text in TRUE_WORDS

    def as_float(self, name: str) -> float:
        try:
            return float(self.values[name])
        except (TypeError, ValueError):
            raise self.error(f"{name}={self.values[name]!r} is not a number") from None

    def as_int(self, name: str) -> int:
        value = self.as_float(name)
        self.refuse(value != int(value), f"{name}={self.values[name]!r} is not a whole number")
        return int(value)

    def as_optional_int(self, name: str) -> int | None:
        return None if self.values.get(name) is None else self.as_int(name)

    def as_numbers(self, name: str) -> tuple[float, ...]:
        """A list, or a comma string as on guided-diffusion's command line ("16,8"); "" is empty."""
        value = self.values[name]
        items = value.split(",") if isinstance(value, str) else value
        try:
            numbers = tuple(float(item) for item in _as_list(items) if str(item).strip())
        except (TypeError, ValueError):
            raise self.error(f"{name}={value!r} is not a list of numbers") from None
        self.refuse(any(n <= 0 for n in numbers), f"{name}={value!r} must hold positive numbers")
        return numbers

    def as_ints(self, name: str) -> tuple[int, ...]:
        numbers = self.as_numbers(name)
        self.refuse(any(n != int(n) for n in numbers), f"{name}={self.values[name]!r} must hold whole "
                    "numbers")
        return tuple(int(n) for n in numbers)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------- reading files safely


def read_torch_file(path: Path) -> object:
    """torch.load(weights_only=True), admitting only the harmless builtins above: never unpickles code."""
    unsafe = _unsafe_globals(path)
    refused = sorted(set(unsafe) - set(HARMLESS_GLOBALS))
    if refused:
        raise _pickled_code(path, ", ".join(refused))
    try:
        with torch.serialization.safe_globals([HARMLESS_GLOBALS[name] for name in unsafe]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # the weights-only unpickler says what it refused
        if "global" in str(error).lower():
            raise _pickled_code(path, _unpickler_reason(error)) from error
        raise _unreadable(path, _unpickler_reason(error)) from error
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError... on files it did not write
        raise _unreadable(path, f"{type(error).__name__}: {error}") from error


def _unsafe_globals(path: Path) -> list[str]:
    """Classes/functions a zip checkpoint's pickle names outside torch's allowlist (read, not imported)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file, or no checkpoint at all: torch.load decides
        return []


def _unpickler_reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if "WeightsUnpickler error" in line]
    return lines[0] if lines else str(error).splitlines()[0]


def _pickled_code(path: Path, names: str) -> CheckpointError:
    return CheckpointError(
        f"{path} needs pickled code to load ({names}) and cannot be loaded safely: pdae reads checkpoints "
        "with torch.load(weights_only=True) only. If you trust the file, re-save just its weights (the state "
        "dict) with torch.save in the environment that wrote it.")


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable torch checkpoint ({reason}); {ACCEPTED}")


def read_yaml(path: Path) -> dict:
    """A YAML mapping, read with yaml.safe_load (plain data only)."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a YAML mapping of config names to values")
    return values


def read_json(path: Path) -> dict:
    """A JSON object (a diffusers config)."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return values


def find_yaml(path: Path, config: Path | None) -> Path | None:
    """--config, else <stem>.yaml/.yml beside the checkpoint, else config.yaml/.yml in its folder."""
    if config is not None:
        if not Path(config).is_file():
            raise CheckpointError(f"no config file at {config}")
        return Path(config)
    names = (f"{path.stem}.yaml", f"{path.stem}.yml", "config.yaml", "config.yml")
    return next((path.parent / name for name in names if (path.parent / name).is_file()), None)


def _missing_yaml(path: Path, what: str, needs: str) -> CheckpointError:
    return CheckpointError(f"{path} is {what}, which needs {needs} in a YAML file: pass --config FILE.yaml, "
                           f"or put {path.stem}.yaml or config.yaml next to it")


def _without_nones(values: dict) -> dict:
    """None means "the default" in these configs (and YAML reads an empty value as None)."""
    return {k: v for k, v in values.items() if v is not None}


# ---------------------------------------------------------------- detection and loading


def is_pdae_checkpoint(path: str | Path) -> bool:
    """pdae's own format (pdae.checkpoint): a .safetensors file, or a run folder holding ema.safetensors."""
    path = Path(path)
    return path.suffix == ".safetensors" or (path / WEIGHTS_NAME).exists()


def open_dpm(path: str | Path, config: str | Path | None = None) -> LoadedDPM:
    """Any DPM pdae accepts, with its family: what `pdae inspect-dpm` reports."""
    if is_pdae_checkpoint(path):
        unet, schedule = load_dpm(path, config)
        return LoadedDPM(PDAE, unet, schedule)
    return load_foreign_dpm(path, config)


def load_foreign_dpm(path: str | Path, config: str | Path | None = None) -> LoadedDPM:
    """Recognise a foreign checkpoint by its content and load it strictly; `config` overrides the YAML."""
    path, config = Path(path), None if config is None else Path(config)
    if is_diffusers_folder(path):
        return _load_diffusers(path, config)
    if path.is_dir():
        return _load_reference_folder(path, config)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}{_hub_hint(path)}; {ACCEPTED}")
    data = read_torch_file(path)
    if isinstance(data, dict):
        for recognises, load in ((_is_reference, _load_reference), (_is_diffae, _load_diffae),
                                 (_is_guided, _load_guided)):
            if recognises(data):
                return load(path, data, config)
    raise CheckpointError(f"{path} is not a DPM checkpoint pdae recognises; {ACCEPTED}")


def _hub_hint(path: Path) -> str:
    """For a missing path that reads like owner/name: say that hub ids are not available offline."""
    if not HUB_ID.fullmatch(str(path)):
        return ""
    return (f" (if {path} is a Hugging Face hub id: it is not available offline, pdae downloads nothing; "
            f"fetch the folder first, e.g. `huggingface-cli download {path} --local-dir DIR`, and pass DIR)")


def assemble(family: str, arch: Architecture, state: object, source: str) -> LoadedDPM:
    """Build our UNet and load every weight into it, or fail listing the missing/extra/mis-shaped ones."""
    unet = UNet(arch.unet)
    state = float_tensors(state, source)
    if arch.new_attention_order:
        state = legacy_qkv_layout(unet, state)
    load_state_strict(unet, state, source)
    return LoadedDPM(family, unet.eval(), arch.schedule)


def float_tensors(state: object, source: str) -> dict[str, Tensor]:
    """The state dict with float32 weights (checkpoints may hold fp16); anything but tensors is an error."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} is not a state dict")
    odd = sorted(str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor)))
    if odd:
        raise CheckpointError(f"{source} holds entries that are not named tensors: {', '.join(odd[:10])}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


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


# ---------------------------------------------------------------- (b) OpenAI guided- / improved-diffusion


def _is_guided(data: dict) -> bool:
    return GUIDED_PROBE in data


def _load_guided(path: Path, data: dict, config: Path | None) -> LoadedDPM:
    yaml_path = find_yaml(path, config)
    if yaml_path is None:
        raise _missing_yaml(path, "an OpenAI guided-diffusion state dict", "its flags (image_size, ...)")
    flags = Flags({**GUIDED_DEFAULTS, **_without_nones(read_yaml(yaml_path))}, str(yaml_path))
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


# ---------------------------------------------------------------- (c) Diff-AE DDIM baseline


def _diffae_state(data: dict) -> dict:
    """The Lightning checkpoint's state_dict, or the dict itself when it is a bare state dict."""
    state = data.get("state_dict", data)
    return state if isinstance(state, dict) else {}


def _is_diffae(data: dict) -> bool:
    return any(isinstance(k, str) and k.startswith(DIFFAE_PREFIX) for k in _diffae_state(data))


def _load_diffae(path: Path, data: dict, config: Path | None) -> LoadedDPM:
    state = diffae_weights(_diffae_state(data), path)
    yaml_path = find_yaml(path, config)
    if yaml_path is None:
        raise _missing_yaml(path, "a Diff-AE checkpoint", "its config (img_size, net_ch, net_ch_mult, ...)")
    arch = diffae_architecture(diffae_flags(read_yaml(yaml_path), str(yaml_path)))
    return assemble(DIFFAE, arch, state, f"{path} (ema_model)")


def diffae_weights(state: dict, path: Path) -> dict:
    """The EMA weights, which LitModel (diffae experiment.py) keeps under `ema_model.`; below that prefix the
    names are guided-diffusion's, as BeatGANsUNetModel (model/unet.py) builds the same modules."""
    weights = {k[len(DIFFAE_PREFIX):]: v for k, v in state.items() if k.startswith(DIFFAE_PREFIX)}
    if any(k.startswith("encoder.") or ".cond_emb_layers." in k for k in weights):
        raise CheckpointError(f"{path} is a Diff-AE autoencoder: its UNet is conditioned on the semantic "
                              "code (encoder., cond_emb_layers) and is not a plain DPM; use a DDIM baseline")
    return weights


def diffae_flags(values: dict, source: str) -> Flags:
    """Diff-AE config values under BeatGANsUNetConfig's names, with its defaults for the rest."""
    merged = _without_nones(values)
    for alias, name in DIFFAE_ALIASES.items():
        if alias in merged:
            value = merged.pop(alias)
            if name in merged and merged[name] != value:
                raise CheckpointError(f"{source}: {alias}={value!r} contradicts {name}={merged[name]!r}")
            merged[name] = value
    return Flags({**DIFFAE_DEFAULTS, **merged}, source)


def diffae_architecture(flags: Flags) -> Architecture:
    """BeatGANsUNetModel (diffae model/unet.py, model/blocks.py) in pdae's terms: scale-shift norm always."""
    _refuse_diffae_variants(flags)
    size, channels = flags.as_int("image_size"), flags.as_int("in_channels")
    unet = UNetConfig(
        image_size=size, in_channels=channels, out_channels=channels,
        model_channels=flags.as_int("model_channels"), num_res_blocks=flags.as_int("num_res_blocks"),
        channel_mult=whole_channel_mult(flags, flags.as_numbers("channel_mult")),
        attention_resolutions=_pixels_to_factors(flags.as_ints("attention_resolutions"), size),
        dropout=flags.as_float("dropout"), num_heads=flags.as_int("num_heads"),
        num_head_channels=flags.as_int("num_head_channels"), use_scale_shift_norm=True,
        resblock_updown=flags.as_bool("resblock_updown"),
        learn_sigma=flags.as_int("out_channels") == 2 * channels)
    schedule = named_schedule(flags, "beta_scheduler", "T")
    return Architecture(unet, schedule, flags.as_bool("use_new_attention_order"))


def _pixels_to_factors(pixels: tuple[int, ...], size: int) -> tuple[int, ...]:
    """diffae model/unet.py compares the running resolution in pixels: sizes that never occur add nothing."""
    return tuple(size // res for res in pixels if size % res == 0)


def _refuse_diffae_variants(f: Flags) -> None:
    """Settings under which BeatGANsUNetModel computes something pdae's UNet cannot."""
    ch, blocks, channels = f.as_int("model_channels"), f.as_int("num_res_blocks"), f.as_int("in_channels")
    name = f.as_str("model_name")
    f.refuse("autoenc" in name, f"model_name {name} is a Diff-AE autoencoder, whose UNet is conditioned on "
             "the semantic code; use a DDIM baseline (beatgans_ddpm)")
    f.refuse(name != "beatgans_ddpm", f"model_name {name!r}: only Diff-AE's beatgans_ddpm is a plain DPM")
    f.refuse(f.as_str("beatgans_model_mean_type") not in ("eps", "epsilon"), "beatgans_model_mean_type must "
             "be eps")
    f.refuse(f.as_int("embed_channels") != 4 * ch, f"embed_channels must be 4 x model_channels = {4 * ch}")
    f.refuse(f.as_optional_int("time_embed_channels") not in (None, ch), "time_embed_channels must be unset "
             "or model_channels")
    f.refuse(f.as_optional_int("num_input_res_blocks") not in (None, blocks), "num_input_res_blocks must be "
             "unset or num_res_blocks")
    f.refuse(f.values.get("input_channel_mult") is not None, "input_channel_mult must be unset")
    f.refuse(f.as_bool("resnet_two_cond"), "resnet_two_cond: true conditions every ResBlock on a second code")
    f.refuse(not f.as_bool("use_mid_attn"), "use_mid_attn: false; pdae's UNet has middle-block attention")
    f.refuse(f.as_int("out_channels") not in (channels, 2 * channels), "out_channels must be in_channels "
             "(eps) or twice that (eps and learned variance)")
    refuse_rescaled_time(f, "beatgans_rescale_timesteps", "T")
    refuse_upsample_heads(f)


# ---------------------------------------------------------------- (d) the reference PDAE's pre-trained DPMs


def _is_reference(data: dict) -> bool:
    return isinstance(data.get("ema_denoise_fn"), dict)


def _load_reference_folder(folder: Path, config: Path | None) -> LoadedDPM:
    weights = folder / "checkpoint.pt"
    if not weights.is_file() or not (config or folder / "config.yml").is_file():
        raise CheckpointError(f"no checkpoint at {folder}: it holds neither {WEIGHTS_NAME} (a pdae run) nor "
                              f"config.yml and checkpoint.pt (a reference-PDAE DPM); {ACCEPTED}")
    data = read_torch_file(weights)
    if not isinstance(data, dict) or not _is_reference(data):
        raise CheckpointError(f"{weights} has no ema_denoise_fn state dict: not a reference-PDAE DPM")
    return _load_reference(weights, data, config)


def _load_reference(path: Path, data: dict, config: Path | None) -> LoadedDPM:
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


# ---------------------------------------------------------------- (e) diffusers


def is_diffusers_folder(path: Path) -> bool:
    """A diffusers pipeline folder, or a model folder whose config.json names its class."""
    if (path / PIPELINE_INDEX).is_file():
        return True
    try:
        return (path / MODEL_CONFIG).is_file() and "_class_name" in read_json(path / MODEL_CONFIG)
    except CheckpointError:
        return False


def _load_diffusers(path: Path, config: Path | None) -> LoadedDPM:
    from pdae.backbones.diffusers_unet import load_diffusers_dpm  # lazy: diffusers is slow to import

    if config is not None:
        raise CheckpointError(f"{path} is a diffusers folder and carries its own config: drop --config")
    backbone = load_diffusers_dpm(path)
    return LoadedDPM(DIFFUSERS, backbone, backbone.schedule)


# ---------------------------------------------------------------- inspection


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
        "parameters": f"{count:,} ({count / 1e6:.2f}M)",
    }
