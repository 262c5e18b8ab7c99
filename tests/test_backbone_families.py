"""Foreign DPM checkpoints (guided-diffusion, Diff-AE, reference PDAE): detection, safe strict loading and
`pdae inspect-dpm`.

Each test writes a tiny random UNet in the family's own file format, with that family's names and config,
and checks that `load_dpm` gives back a network with the same eps. The expected UNet configs are written out
by hand from each project's conventions, so a wrong translation of the config shows up as a mismatch.
"""

import math
import re
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from typer.testing import CliRunner

from pdae.backbones import dpm_config, load_dpm
from pdae.backbones.adm import legacy_qkv_layout
from pdae.checkpoint import WEIGHTS_NAME, save_weights
from pdae.cli import app
from pdae.errors import CheckpointError
from pdae.nn.unet import AttentionBlock, UNet, UNetConfig
from pdae.schedule import NoiseSchedule

torch.set_num_threads(1)
runner = CliRunner()


class NotAWeight:
    """A custom class: pickling it puts code (a global) into the checkpoint."""


def random_unet(cfg: UNetConfig, seed: int = 0) -> UNet:
    """A UNet with every weight random, so that zero-initialised layers hide nothing."""
    torch.manual_seed(seed)
    unet = UNet(cfg)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return unet.eval()


def eps_and_raw(unet: UNet, cfg: UNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """eps through the backbone interface (time embedding, encode, decode) and the full output."""
    torch.manual_seed(1)
    x, t = torch.randn(2, cfg.in_channels, cfg.image_size, cfg.image_size), torch.tensor([3, 917])
    y = torch.tensor([5, 999]) if cfg.num_classes else None
    with torch.no_grad():
        emb = unet.time_embedding(t, y)
        return unet.decode(*unet.encode(x, emb), emb), unet(x, t, y)


def assert_same_network(loaded: UNet, original: UNet) -> None:
    assert not loaded.training
    assert loaded.config == original.config
    eps, raw = eps_and_raw(loaded, loaded.config)
    want_eps, want_raw = eps_and_raw(original, original.config)
    assert want_eps.abs().max() > 1e-3
    assert eps.shape[1] == original.config.in_channels
    torch.testing.assert_close(eps, want_eps, atol=1e-5, rtol=0)
    torch.testing.assert_close(raw, want_raw, atol=1e-5, rtol=0)


def write_yaml(path, values: dict):
    path.write_text(yaml.safe_dump(values))
    return path


def to_new_attention_order(unet: UNet) -> dict:
    """The state dict with qkv rows in QKVAttention's order (q|k|v, then heads): the inverse of loading."""
    state = unet.state_dict()
    for name, block in unet.named_modules():
        if isinstance(block, AttentionBlock):
            for key in (f"{name}.qkv.weight", f"{name}.qkv.bias"):
                rows = state[key]
                by_head = rows.reshape(block.num_heads, 3, -1, *rows.shape[1:])
                state[key] = by_head.transpose(0, 1).reshape(rows.shape)
    return state


# ---------------------------------------------------------------- (b) guided-diffusion


# flags, the UNetConfig guided-diffusion's create_model builds from them, and the schedule.
GUIDED_CASES = {
    # image 32: channel_mult "" -> (1, 2, 2, 2) (improved-diffusion); attention "16,8" px -> factors 2, 4
    "default-mult-learned-sigma-cosine": (
        dict(image_size=32, num_channels=32, num_res_blocks=1, num_heads=2, attention_resolutions="16,8",
             learn_sigma=True, noise_schedule="cosine", diffusion_steps=50, dropout=0.1),
        UNetConfig(image_size=32, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                   attention_resolutions=(2, 4), channel_mult=(1, 2, 2, 2), dropout=0.1, num_heads=2,
                   learn_sigma=True),
        ("cosine", 50)),
    "class-conditional-updown-head-channels": (
        dict(image_size=16, num_channels=32, num_res_blocks=2, channel_mult="1,2", attention_resolutions="8",
             num_head_channels=32, class_cond="True", resblock_updown=True, use_scale_shift_norm=False,
             in_channels=1),
        UNetConfig(image_size=16, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=2,
                   attention_resolutions=(2,), channel_mult=(1, 2), num_heads=4, num_head_channels=32,
                   use_scale_shift_norm=False, resblock_updown=True, num_classes=1000),
        ("linear", 1000)),
    "new-attention-order": (
        dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult=[1, 2],
             attention_resolutions="16,8", num_heads=4, use_new_attention_order=True),
        UNetConfig(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                   attention_resolutions=(1, 2), channel_mult=(1, 2), num_heads=4),
        ("linear", 1000)),
}


@pytest.mark.parametrize("case", list(GUIDED_CASES))
@pytest.mark.parametrize("where", ["stem", "folder", "explicit"])
def test_guided_diffusion_state_dict_with_flags(tmp_path, case, where):
    flags, cfg, (schedule_name, steps) = GUIDED_CASES[case]
    original = random_unet(cfg)
    new_order = flags.get("use_new_attention_order")
    state = to_new_attention_order(original) if new_order else original.state_dict()
    weights = tmp_path / "model.pt"
    torch.save(state, weights)
    yaml_path = {"stem": tmp_path / "model.yaml", "folder": tmp_path / "config.yaml",
                 "explicit": tmp_path / "elsewhere" / "flags.yml"}[where]
    yaml_path.parent.mkdir(exist_ok=True)
    write_yaml(yaml_path, flags)
    unet, schedule = load_dpm(weights, yaml_path if where == "explicit" else None)
    assert (schedule.name, schedule.num_timesteps) == (schedule_name, steps)
    assert torch.equal(schedule.betas, NoiseSchedule(schedule_name, steps).betas)
    assert_same_network(unet, original)


def test_new_attention_order_matches_qkv_attention():
    """Checked against an independent QKVAttention (guided_diffusion/unet.py): split q|k|v, then heads."""
    torch.manual_seed(0)
    channels, heads = 64, 4
    block = AttentionBlock(channels, num_heads=heads)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    w_new, b_new = torch.randn(3 * channels, channels, 1) * 0.2, torch.randn(3 * channels) * 0.2
    x = torch.randn(2, channels, 4, 4)
    h = block.norm(x).reshape(2, channels, -1)
    parts = F.conv1d(h, w_new, b_new).chunk(3, dim=1)
    q, k, v = (part.reshape(2 * heads, channels // heads, -1) for part in parts)
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(channels // heads), dim=-1)
    attended = torch.einsum("bts,bcs->bct", weight, v).reshape(2, channels, -1)
    expected = x + F.conv1d(attended, block.proj_out.weight, block.proj_out.bias).reshape(x.shape)

    state = legacy_qkv_layout(torch.nn.Sequential(block), {"0.qkv.weight": w_new, "0.qkv.bias": b_new})
    with torch.no_grad():
        block.qkv.weight.copy_(state["0.qkv.weight"])
        block.qkv.bias.copy_(state["0.qkv.bias"])
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=0)


SMALL_FLAGS = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                   attention_resolutions="8")
SMALL_CFG = UNetConfig(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                       attention_resolutions=(2,), channel_mult=(1, 2), num_heads=4)


@pytest.mark.parametrize("edit,key", [("drop", "out.2.bias"), ("add", "extra.weight")])
def test_missing_or_unexpected_keys_are_listed(tmp_path, edit, key):
    state = random_unet(SMALL_CFG).state_dict()
    if edit == "drop":
        state.pop(key)
    else:
        state[key] = torch.zeros(3)
    torch.save(state, tmp_path / "model.pt")
    write_yaml(tmp_path / "model.yaml", SMALL_FLAGS)
    with pytest.raises(CheckpointError, match=r"(missing|unexpected) \(1\): " + key.replace(".", r"\.")):
        load_dpm(tmp_path / "model.pt")


def test_mis_shaped_weights_are_listed(tmp_path):
    torch.save(random_unet(SMALL_CFG).state_dict(), tmp_path / "model.pt")
    write_yaml(tmp_path / "model.yaml", {**SMALL_FLAGS, "learn_sigma": True})  # the file has 3 outputs, not 6
    with pytest.raises(CheckpointError, match=r"mis-shaped \(2\): out\.2\.bias"):
        load_dpm(tmp_path / "model.pt")


@pytest.mark.parametrize("flags,message", [
    (dict(image_size=512, channel_mult=""), "fractional multipliers"),
    (dict(channel_mult="2,2"), "must start with 1"),
    (dict(predict_xstart=True), "pdae needs eps"),
    (dict(rescale_timesteps=True, diffusion_steps=4000), "t \\* 1000 / 4000"),
    (dict(num_heads_upsample=2), "num_heads_upsample=2 differs"),
    (dict(noise_schedule="sqrt"), "linear and cosine"),
    (dict(image_size=48, channel_mult=""), "no default channel_mult"),
    (dict(class_cond="maybe"), "not true or false"),
])
def test_guided_flags_pdae_cannot_express_are_refused(tmp_path, flags, message):
    torch.save({"input_blocks.0.0.weight": torch.zeros(1)}, tmp_path / "model.pt")
    write_yaml(tmp_path / "model.yaml", {**SMALL_FLAGS, **flags})
    with pytest.raises(CheckpointError, match=message):
        load_dpm(tmp_path / "model.pt")


def test_guided_without_flags_says_how_to_give_them(tmp_path):
    torch.save(random_unet(SMALL_CFG).state_dict(), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="--config"):
        load_dpm(tmp_path / "model.pt")


# ---------------------------------------------------------------- safe loading


def test_pickled_custom_object_is_refused(tmp_path):
    state = random_unet(SMALL_CFG).state_dict()
    torch.save({**state, "meta": NotAWeight()}, tmp_path / "model.pt")
    write_yaml(tmp_path / "model.yaml", SMALL_FLAGS)
    with pytest.raises(CheckpointError, match="needs pickled code.*NotAWeight"):
        load_dpm(tmp_path / "model.pt")


def test_legacy_format_pickled_object_is_refused(tmp_path):
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "meta": NotAWeight()}, tmp_path / "old.pt",
               _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="needs pickled code"):
        load_dpm(tmp_path / "old.pt")


def test_unknown_and_missing_files_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_dpm(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a DPM checkpoint pdae recognises.*guided"):
        load_dpm(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_dpm(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint at.*config.yml"):
        load_dpm(tmp_path)


# ---------------------------------------------------------------- (c) Diff-AE


# Diff-AE config (TrainConfig names, templates.py style: attention in pixels) and the UNet it means.
DIFFAE_YAML = dict(img_size=16, net_ch=32, net_ch_mult=[1, 2], net_num_res_blocks=1, net_attn=[8],
                   net_beatgans_attn_head=2, net_beatgans_embed_channels=128, net_resblock_updown=True,
                   dropout=0.1, T=1000, beta_scheduler="linear", model_name="beatgans_ddpm")
DIFFAE_CFG = UNetConfig(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
                        attention_resolutions=(2,), channel_mult=(1, 2), dropout=0.1, num_heads=2,
                        use_scale_shift_norm=True, resblock_updown=True)
# The same under BeatGANsUNetConfig's names, with learned variance and attention at a size that never occurs.
DIFFAE_NATIVE_YAML = dict(image_size=16, model_channels=32, channel_mult=[1, 2], num_res_blocks=2,
                          attention_resolutions=[16, 6], num_heads=1, embed_channels=128, out_channels=6,
                          resblock_updown=False, T=100, beta_scheduler="cosine")
DIFFAE_NATIVE_CFG = UNetConfig(image_size=16, in_channels=3, model_channels=32, out_channels=3,
                               num_res_blocks=2, attention_resolutions=(1,), channel_mult=(1, 2), dropout=0.1,
                               num_heads=1, use_scale_shift_norm=True, resblock_updown=False,
                               learn_sigma=True)


def lightning_checkpoint(ema: UNet, online: UNet, **extra) -> dict:
    """What LitModel (diffae experiment.py) saves: model., ema_model. and the x_T buffer in state_dict."""
    state = {f"model.{k}": v for k, v in online.state_dict().items()}
    state.update({f"ema_model.{k}": v for k, v in ema.state_dict().items()})
    state["x_T"] = torch.randn(2, 3, 16, 16)
    return {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.4.5", "state_dict": state,
            "hyper_parameters": {"net_ch": 32}, "optimizer_states": [], "lr_schedulers": [], **extra}


@pytest.mark.parametrize("values,cfg,schedule", [(DIFFAE_YAML, DIFFAE_CFG, ("linear", 1000)),
                                                 (DIFFAE_NATIVE_YAML, DIFFAE_NATIVE_CFG, ("cosine", 100))])
def test_diffae_lightning_checkpoint_loads_the_ema_model(tmp_path, values, cfg, schedule):
    ema, online = random_unet(cfg, seed=0), random_unet(cfg, seed=1)
    # harmless builtins beside the weights are admitted (see the next test for the rest)
    torch.save(lightning_checkpoint(ema, online, tags=frozenset({"x"}), window=slice(0, 9), steps=range(3)),
               tmp_path / "last.ckpt")
    write_yaml(tmp_path / "last.yaml", values)
    unet, noise_schedule = load_dpm(tmp_path / "last.ckpt")
    assert (noise_schedule.name, noise_schedule.num_timesteps) == schedule
    assert_same_network(unet, ema)


def test_diffae_bare_state_dict_and_new_attention_order(tmp_path):
    ema = random_unet(DIFFAE_CFG)
    state = {f"ema_model.{k}": v for k, v in to_new_attention_order(ema).items()}
    torch.save(state, tmp_path / "weights.pt")
    write_yaml(tmp_path / "config.yml", {**DIFFAE_YAML, "use_new_attention_order": True})
    assert_same_network(load_dpm(tmp_path / "weights.pt")[0], ema)


def test_diffae_lightning_checkpoint_with_pickled_objects_is_refused(tmp_path):
    ema = random_unet(DIFFAE_CFG)
    refused = (({"ModelCheckpoint": NotAWeight()}, "NotAWeight"), (defaultdict(list), "defaultdict"))
    for extra, name in refused:
        torch.save(lightning_checkpoint(ema, ema, callbacks=extra), tmp_path / "last.ckpt")
        write_yaml(tmp_path / "last.yaml", DIFFAE_YAML)
        with pytest.raises(CheckpointError, match=f"needs pickled code.*{name}"):
            load_dpm(tmp_path / "last.ckpt")


@pytest.mark.parametrize("values,message", [
    (dict(model_name="beatgans_autoenc"), "autoencoder"),
    (dict(net_beatgans_embed_channels=512), "embed_channels must be 4 x model_channels = 128"),
    (dict(beatgans_model_mean_type="start_x"), "must be eps"),
    (dict(net_beatgans_resnet_two_cond=True), "resnet_two_cond"),
    (dict(net_ch=32, model_channels=64), "contradicts"),
    (dict(beatgans_rescale_timesteps=True, T=4000), "t \\* 1000 / 4000"),
])
def test_diffae_configs_pdae_cannot_express_are_refused(tmp_path, values, message):
    torch.save({"state_dict": {"ema_model.time_embed.0.weight": torch.zeros(1)}}, tmp_path / "last.ckpt")
    write_yaml(tmp_path / "last.yaml", {**DIFFAE_YAML, **values})
    with pytest.raises(CheckpointError, match=message):
        load_dpm(tmp_path / "last.ckpt")


def test_diffae_autoencoder_weights_are_refused(tmp_path):
    state = {"ema_model.encoder.input_blocks.0.0.weight": torch.zeros(1),
             "ema_model.time_embed.0.weight": torch.zeros(1)}
    torch.save({"state_dict": state}, tmp_path / "last.ckpt")
    write_yaml(tmp_path / "last.yaml", DIFFAE_YAML)
    with pytest.raises(CheckpointError, match="Diff-AE autoencoder"):
        load_dpm(tmp_path / "last.ckpt")


# ---------------------------------------------------------------- (d) reference PDAE


# A config.yml as the reference PDAE writes it (config/mnist_regular.yml): attention at downsampling factors.
REFERENCE_YAML = {
    "dataset_config": {"name": "mnist", "image_size": 16, "image_channel": 1},
    "diffusion_config": {"timesteps": 1000, "betas_type": "linear", "linear_beta_start": 0.0001,
                         "linear_beta_end": 0.02},
    "denoise_fn_config": {"model": "MNISTDenoiseFn", "dims": 2, "input_channel": 1, "base_channel": 32,
                          "channel_multiplier": [1, 2], "num_residual_blocks_of_a_block": 2, "dropout": 0.0,
                          "attention_resolutions": [2], "use_new_attention_order": True, "num_heads": 2,
                          "head_channel": -1, "learn_sigma": True},
}
REFERENCE_CFG = UNetConfig(image_size=16, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=2,
                           attention_resolutions=(2,), channel_mult=(1, 2), num_heads=2,
                           use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True)


def reference_folder(tmp_path, config: dict = REFERENCE_YAML):
    """A pre-trained-dpms/<name>/ folder: config.yml, and checkpoint.pt as
    trainer/train_regular_diffusion.py saves it (with the EMA weights in the new attention order)."""
    folder = tmp_path / "pre-trained-dpms" / "mnist"
    folder.mkdir(parents=True)
    ema = random_unet(REFERENCE_CFG, seed=0)
    online = random_unet(REFERENCE_CFG, seed=1)
    torch.save({"step": 1000, "denoise_fn": online.state_dict(), "scaler": {"scale": 65536.0},
                "ema_denoise_fn": to_new_attention_order(ema)}, folder / "checkpoint.pt")
    write_yaml(folder / "config.yml", config)
    return folder, ema


def test_reference_pdae_folder(tmp_path):
    folder, ema = reference_folder(tmp_path)
    for source in (folder, folder / "checkpoint.pt"):
        unet, schedule = load_dpm(source)
        assert (schedule.name, schedule.num_timesteps) == ("linear", 1000)
        assert_same_network(unet, ema)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["denoise_fn_config"].update(num_class=10), "num_class"),
    (lambda c: c["diffusion_config"].update(linear_beta_end=0.03), "differ from pdae's linear schedule"),
    (lambda c: c["diffusion_config"].update(betas_type="cosine"), "linear betas only"),
    (lambda c: c.pop("dataset_config"), "no image size"),
    (lambda c: c["denoise_fn_config"].pop("base_channel"), "lacks base_channel"),
])
def test_reference_configs_pdae_cannot_express_are_refused(tmp_path, edit, message):
    config = yaml.safe_load(yaml.safe_dump(REFERENCE_YAML))
    edit(config)
    folder, _ = reference_folder(tmp_path, config)
    with pytest.raises(CheckpointError, match=message):
        load_dpm(folder)


# ---------------------------------------------------------------- pdae inspect-dpm


def test_inspect_dpm_reports_each_family(tmp_path):
    flags, cfg, _ = GUIDED_CASES["class-conditional-updown-head-channels"]
    guided = random_unet(cfg)
    torch.save(guided.state_dict(), tmp_path / "guided.pt")
    write_yaml(tmp_path / "flags.yaml", flags)
    diffae = random_unet(DIFFAE_CFG)
    torch.save(lightning_checkpoint(diffae, diffae), tmp_path / "last.ckpt")
    write_yaml(tmp_path / "last.yaml", DIFFAE_YAML)
    folder, reference = reference_folder(tmp_path)
    own = random_unet(SMALL_CFG)
    save_weights(tmp_path / "run" / WEIGHTS_NAME, own.state_dict(), dpm_config(SMALL_CFG, NoiseSchedule()))
    cases = [([tmp_path / "guided.pt", "--config", tmp_path / "flags.yaml"], guided, "guided-diffusion",
              r"class-conditional:\s+yes \(1000 classes\)"),
             ([tmp_path / "last.ckpt"], diffae, "diff-ae", r"learned variance:\s+no"),
             ([folder], reference, "reference-pdae", r"learned variance:\s+yes"),
             ([tmp_path / "run"], own, "pdae", r"schedule:\s+linear, T=1000")]
    for args, model, family, pattern in cases:
        result = runner.invoke(app, ["inspect-dpm", *map(str, args)])
        assert result.exit_code == 0, result.output
        count = sum(p.numel() for p in model.parameters())
        for expected in (rf"family:\s+{family}\n", r"resolution:\s+16x16", rf"parameters:\s+{count:,} ",
                         r"prediction:\s+eps", pattern):
            assert re.search(expected, result.output), (expected, result.output)


def test_inspect_dpm_unknown_file_fails_with_a_message(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    result = runner.invoke(app, ["inspect-dpm", str(tmp_path / "other.pt")])
    assert result.exit_code != 0
    assert isinstance(result.exception, CheckpointError) and "not a DPM checkpoint" in str(result.exception)
    done = subprocess.run([sys.executable, "-m", "pdae", "inspect-dpm", str(tmp_path / "other.pt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "not a DPM checkpoint pdae recognises" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- PDAE on each family


def saved_family(tmp_path, family: str):
    """Save a random DPM in `family`'s own format; return the path `pdae fit --dpm` takes."""
    if family == "guided-diffusion":
        flags, cfg, _ = GUIDED_CASES["new-attention-order"]
        torch.save(to_new_attention_order(random_unet(cfg)), tmp_path / "model.pt")
        write_yaml(tmp_path / "model.yaml", flags)
        return tmp_path / "model.pt"
    if family == "diff-ae":
        diffae = random_unet(DIFFAE_CFG)
        torch.save(lightning_checkpoint(diffae, diffae), tmp_path / "last.ckpt")
        write_yaml(tmp_path / "last.yaml", DIFFAE_YAML)
        return tmp_path / "last.ckpt"
    return reference_folder(tmp_path)[0]


@pytest.mark.parametrize("family", ["guided-diffusion", "diff-ae", "reference-pdae"])
def test_pdae_fits_and_reconstructs_on_each_family(tmp_path, family):
    dpm_path = saved_family(tmp_path, family)
    unet, _ = load_dpm(dpm_path)
    size, channels = unet.config.image_size, unet.config.in_channels
    data = tmp_path / "data.npz"
    images = np.random.default_rng(0).integers(0, 256, (8, channels, size, size), dtype=np.uint8)
    np.savez(data, images=images)
    result = runner.invoke(app, ["fit", "--dpm", str(dpm_path), "--out", str(tmp_path / "run"),
                                 "--data", str(data), "--latent-dim", "8", "--images", "8",
                                 "--batch-size", "4", "--threads", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["reconstruct", str(tmp_path / "run"), str(data), "--limit", "2",
                                 "--inversion-steps", "2", "--decoding-steps", "2",
                                 "-o", str(tmp_path / "r.png"), "--npz", str(tmp_path / "r.npz")])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "r.npz")["inferred_xT"].shape == (2, channels, size, size)
