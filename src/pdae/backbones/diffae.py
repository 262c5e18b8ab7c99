"""Diff-AE DDIM baselines (github phizaz/diffae, BeatGANsUNetModel): a Lightning checkpoint whose
`state_dict` (or a bare state dict) holds the EMA weights under `ema_model.`, with a YAML of its config,
read into pdae's ADM UNet. Diff-AE's autoencoders, whose UNet is conditioned on a code, are refused.
"""

from __future__ import annotations

from pathlib import Path

from pdae.backbones.adm import (Architecture, LoadedDPM, assemble, named_schedule, refuse_rescaled_time,
                                refuse_upsample_heads, whole_channel_mult)
from pdae.backbones.files import Flags, find_yaml, missing_yaml, read_yaml, without_nones
from pdae.errors import CheckpointError
from pdae.nn.unet import UNetConfig

DIFFAE = "diff-ae"
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


def _diffae_state(data: dict) -> dict:
    """The Lightning checkpoint's state_dict, or the dict itself when it is a bare state dict."""
    state = data.get("state_dict", data)
    return state if isinstance(state, dict) else {}


def is_diffae(data: dict) -> bool:
    return any(isinstance(k, str) and k.startswith(DIFFAE_PREFIX) for k in _diffae_state(data))


def load_diffae(path: Path, data: dict, config: Path | None) -> LoadedDPM:
    state = diffae_weights(_diffae_state(data), path)
    yaml_path = find_yaml(path, config)
    if yaml_path is None:
        raise missing_yaml(path, "a Diff-AE checkpoint", "its config (img_size, net_ch, net_ch_mult, ...)")
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
    merged = without_nones(values)
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

