"""Bring your own DPM: a diffusers UNet2DModel folder and a black-box eps function as PDAE backbones.

The diffusers tests write a tiny random UNet2DModel with `save_pretrained` and a DDPMScheduler config, and
compare pdae's split and eps conversion with diffusers' own forward, converted to eps by hand here.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from typer.testing import CliRunner

from pdae.autoencode import StepCounts, reconstruct
from pdae.backbones import BlackBoxBackbone, load_dpm
from pdae.backbones.diffusers_unet import DiffusersBackbone, ZModulatedResnet
from pdae.cli import app
from pdae.errors import CheckpointError, PdaeError
from pdae.losses import PDAELoss
from pdae.model import PDAE, PDAEConfig, build_pdae, load_pdae
from pdae.nn.unet import UNet, UNetConfig
from pdae.sampling import eps_of, shifted_eps
from pdae.schedule import NoiseSchedule
from pdae.training import TrainConfig, train

torch.set_num_threads(1)
runner = CliRunner()
T = 100
BASE = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)
# A second architecture: scale-shift norm, ResnetBlock2D down/upsampling, centred input, learned variance.
VARIANT = dict(BASE, out_channels=2, resnet_time_scale_shift="scale_shift", center_input_sample=True,
               down_block_types=("ResnetDownsampleBlock2D", "AttnDownBlock2D"),
               up_block_types=("AttnUpBlock2D", "ResnetUpsampleBlock2D"), upsample_type="resnet",
               downsample_type="resnet", layers_per_block=2)
TINY_G = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                    attention_resolutions=(2,), channel_mult=(1, 2))


def random_unet2d(config: dict = BASE, seed: int = 0) -> UNet2DModel:
    """A UNet2DModel with every weight random, so that zero-initialised layers hide nothing."""
    torch.manual_seed(seed)
    unet = UNet2DModel(**config)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return unet.eval()


def write_folder(root: Path, unet: UNet2DModel, pipeline: bool = False, bin_weights: bool = False,
                 **scheduler) -> Path:
    """The UNet as save_pretrained writes it, with a DDPMScheduler config beside it or as a pipeline's."""
    folder = root / "unet" if pipeline else root
    unet.save_pretrained(folder, safe_serialization=not bin_weights)
    scheduler = DDPMScheduler(**{"num_train_timesteps": T, **scheduler})
    scheduler.save_config(root / "scheduler" if pipeline else folder)
    if pipeline:
        (root / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    return folder


def inputs(channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(4, channels, 8, 8), torch.tensor([0, 7, 50, T - 1])


def by_hand(unet: UNet2DModel, scheduler: DDPMScheduler, prediction_type: str, x_t, t) -> torch.Tensor:
    """diffusers' output turned into eps with the scheduler's own alphas_cumprod."""
    with torch.no_grad():
        out = unet(x_t, t).sample[:, : x_t.shape[1]].double()
    alpha_bar = torch.cumprod(1 - scheduler.betas.double(), 0)[t].view(-1, 1, 1, 1)
    x_t = x_t.double()
    if prediction_type == "v_prediction":
        return (alpha_bar.sqrt() * out + (1 - alpha_bar).sqrt() * x_t).float()
    if prediction_type == "sample":
        return ((x_t - alpha_bar.sqrt() * out) / (1 - alpha_bar).sqrt()).float()
    return out.float()


@pytest.mark.parametrize("prediction_type, beta_schedule, pipeline", [
    ("epsilon", "linear", False), ("v_prediction", "scaled_linear", True),
    ("sample", "squaredcos_cap_v2", False)])
def test_eps_is_the_diffusers_output_converted_by_hand(tmp_path, prediction_type, beta_schedule, pipeline):
    unet = random_unet2d()
    scheduler_args = dict(prediction_type=prediction_type, beta_schedule=beta_schedule, beta_start=0.001,
                          beta_end=0.03)
    folder = write_folder(tmp_path, unet, pipeline, **scheduler_args)
    backbone, schedule = load_dpm(tmp_path if pipeline else folder)
    assert isinstance(backbone, DiffusersBackbone) and not backbone.training
    assert backbone.prediction_type == prediction_type and schedule.num_timesteps == T
    scheduler = DDPMScheduler(num_train_timesteps=T, **scheduler_args)
    torch.testing.assert_close(schedule.alpha_bar, scheduler.alphas_cumprod.double(), rtol=1e-5, atol=1e-9)
    x_t, t = inputs()
    with torch.no_grad():
        eps = backbone(x_t, t)
    want = by_hand(unet, scheduler, prediction_type, x_t, t)
    assert want.abs().max() > 0.1
    torch.testing.assert_close(eps, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", [BASE, VARIANT], ids=["default", "variant"])
def test_split_equals_unet2dmodel_forward(tmp_path, config):
    unet = random_unet2d(config)
    backbone, _ = load_dpm(write_folder(tmp_path, unet))
    x_t, t = inputs()
    with torch.no_grad():
        emb = backbone.time_embedding(t)
        h, skips = backbone.encode(x_t, emb)
        eps = backbone.decode(h, skips, emb)
        want = unet(x_t, t).sample
    assert eps.shape == x_t.shape and want.shape[1] == config["out_channels"]
    torch.testing.assert_close(eps, want[:, :1], atol=1e-6, rtol=0)


def test_the_schedule_is_named_when_it_is_pdaes_and_custom_otherwise(tmp_path):
    def schedule_of(**scheduler):
        write_folder(tmp_path / str(len(list(tmp_path.iterdir()))), random_unet2d(), **scheduler)
        return load_dpm(sorted(tmp_path.iterdir(), key=lambda p: int(p.name))[-1])[1]

    assert schedule_of(num_train_timesteps=1000) == NoiseSchedule("linear", 1000)  # 1e-4 .. 0.02
    assert schedule_of(beta_schedule="squaredcos_cap_v2") == NoiseSchedule("cosine", T)
    custom = schedule_of(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    assert custom.name == "custom"
    first, last = math.sqrt(0.00085), math.sqrt(0.012)
    assert custom.betas[[0, -1]].tolist() == pytest.approx([0.00085, 0.012])
    assert custom.betas[1].item() == pytest.approx((first + (last - first) / (T - 1)) ** 2)
    assert NoiseSchedule(**json.loads(json.dumps(custom.to_config()))) == custom
    with pytest.raises(PdaeError, match="custom schedule needs 3 betas"):
        NoiseSchedule("custom", 3, (0.1, 0.2))
    with pytest.raises(PdaeError, match="computes its betas"):
        NoiseSchedule("linear", 2, (0.1, 0.2))


def diffusers_pdae(tmp_path: Path, config: dict = BASE, **overrides) -> PDAE:
    folder = write_folder(tmp_path, random_unet2d(config), prediction_type="v_prediction")
    backbone, schedule = load_dpm(folder)
    return PDAE(backbone, schedule, PDAEConfig(latent_dim=8, encoder_channels=8, **overrides))


def test_pdae_on_diffusers_equals_the_dpm_at_initialisation(tmp_path):
    model = diffusers_pdae(tmp_path, VARIANT)
    x_t, t = inputs()
    z = model.encode(torch.randn(4, 1, 8, 8))
    with torch.no_grad():
        eps, shift = model.eps_and_shift(x_t, t, z)
        assert torch.count_nonzero(shift) == 0
        torch.testing.assert_close(shifted_eps(model, z)(x_t, t), eps_of(model.dpm, 1)(x_t, t))


@pytest.mark.parametrize("config", [BASE, VARIANT], ids=["default", "variant"])
def test_g_copied_from_the_dpm_reproduces_its_decoder_half_until_z_acts(tmp_path, config):
    """With the DPM's weights, zero z-projections and the DPM's output conv, G is diffusers' decoder half:
    the z-modulated ResnetBlock2D reproduces diffusers' forward."""
    model = diffusers_pdae(tmp_path, {**config, "out_channels": 1}, init_from_dpm=True)
    wrapped = [m for m in model.decoder.modules() if isinstance(m, ZModulatedResnet)]
    assert len(wrapped) == sum(1 for k in model.decoder.state_dict() if k.endswith("block.conv1.weight"))
    with torch.no_grad():
        for block in wrapped:
            block.z_layers.weight.zero_()
            block.z_layers.bias.zero_()
        model.decoder.conv_out.load_state_dict(model.dpm.unet.conv_out.state_dict())
    x_t, t = inputs()
    z = torch.randn(4, 8)
    with torch.no_grad():
        emb = model.dpm.time_embedding(t)
        h, skips = model.dpm.encode(x_t, emb)
        want = model.dpm.unet(x_t, t).sample
        torch.testing.assert_close(model.decoder(h, skips, emb, z), want, atol=1e-5, rtol=0)
        wrapped[0].z_layers.bias.normal_()
        assert not torch.allclose(model.decoder(h, skips, emb, z), want, atol=1e-3)


def assert_training_touches_only_trainable_weights(model: PDAE, frozen: dict, steps: int = 2) -> list[float]:
    """A few PDAE steps: returns the losses; frozen weights bit-identical and without gradients."""
    trainable = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("dpm.")}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss_fn, losses = PDAELoss(model.schedule), []
    model.train()
    for _ in range(steps):
        loss = loss_fn(model, torch.rand(4, 1, 8, 8) * 2 - 1, torch.zeros(4)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert all(torch.equal(v, frozen[k]) for k, v in frozen.items())
    changed = [k for k, v in model.state_dict().items()
               if k in trainable and not torch.equal(v, trainable[k])]
    assert any(k.startswith("encoder.") for k in changed) and any("z_layers" in k for k in changed)
    assert np.isfinite(losses).all()
    return losses


def test_pdae_training_on_diffusers_changes_only_trainable_weights(tmp_path):
    model = diffusers_pdae(tmp_path)
    frozen = {k: v.clone() for k, v in model.dpm.state_dict().items()}
    assert_training_touches_only_trainable_weights(model, frozen)
    assert all(p.grad is None and not p.requires_grad for p in model.dpm.parameters())
    assert all(k.startswith("dpm.unet.") for k in model.state_dict() if k.startswith("dpm."))


@pytest.fixture
def digits_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(path, images=rng.integers(0, 256, (16, 8, 8), dtype=np.uint8), labels=np.arange(16) % 4)
    return path


def test_fit_reconstruct_and_inspect_a_diffusers_folder_from_the_command_line(tmp_path, digits_npz):
    write_folder(tmp_path / "pipe", random_unet2d(), pipeline=True, prediction_type="v_prediction",
                 beta_schedule="scaled_linear")
    result = runner.invoke(app, ["inspect-dpm", str(tmp_path / "pipe")])
    assert result.exit_code == 0, result.output
    assert "diffusers" in result.output and "v_prediction" in result.output
    assert f"custom (betas 0.0001..0.02), T={T}" in result.output

    run = tmp_path / "run"
    result = runner.invoke(app, ["fit", "--dpm", str(tmp_path / "pipe" / "unet"), "--out", str(run), "--data",
                                 str(digits_npz), "--latent-dim", "8", "--images", "16", "--batch-size", "8",
                                 "--threads", "1", "--init-from-dpm"])
    assert result.exit_code == 0, result.output
    model = load_pdae(run)
    assert isinstance(model.dpm, DiffusersBackbone) and model.dpm.prediction_type == "v_prediction"
    assert model.schedule.name == "custom" and model.cfg.init_from_dpm

    out = tmp_path / "r.npz"
    result = runner.invoke(app, ["reconstruct", str(run), str(digits_npz), "-o", str(tmp_path / "r.png"),
                                 "--limit", "2", "--inversion-steps", "3", "--decoding-steps", "3",
                                 "--npz", str(out)])
    assert result.exit_code == 0, result.output
    assert np.load(out)["inferred_xT"].shape == (2, 1, 8, 8)


def test_bin_weights_load_and_pickled_code_is_refused(tmp_path):
    unet = random_unet2d()
    backbone, _ = load_dpm(write_folder(tmp_path / "bin", unet, bin_weights=True))
    x_t, t = inputs()
    with torch.no_grad():
        torch.testing.assert_close(backbone(x_t, t), unet(x_t, t).sample, atol=1e-6, rtol=0)
    torch.save({"conv_in.weight": torch.zeros(1), "extra": PdaeError("code")},
               tmp_path / "bin" / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled code"):
        load_dpm(tmp_path / "bin")


def test_what_pdae_refuses(tmp_path):
    write_folder(tmp_path / "cond", random_unet2d({**BASE, "num_class_embeds": 3}))
    with pytest.raises(CheckpointError, match="class-conditional"):
        load_dpm(tmp_path / "cond")
    folder = write_folder(tmp_path / "plain", random_unet2d())
    (folder / "scheduler_config.json").unlink()
    with pytest.raises(CheckpointError, match="scheduler_config.json"):
        load_dpm(folder)
    with pytest.raises(CheckpointError, match="not available offline"):
        load_dpm("google/ddpm-cifar10-32")
    result = runner.invoke(app, ["inspect-dpm", "google/ddpm-cifar10-32"])
    assert result.exit_code != 0 and "not available offline" in str(result.exception)


# ---------------------------------------------------------------- black box


@pytest.fixture
def black_box():
    """A plain function around a tiny random UNet: PDAE sees only (x_t, t) -> eps."""
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                          attention_resolutions=(), channel_mult=(1, 2))).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)

    def eps_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return net(x_t, t)

    eps_fn.net = net
    return eps_fn


def black_box_pdae(eps_fn) -> PDAE:
    backbone = BlackBoxBackbone(eps_fn, NoiseSchedule("linear", T), image_size=8, in_channels=1,
                                shift_unet=TINY_G)
    return PDAE(backbone, backbone.schedule, PDAEConfig(latent_dim=8, encoder_channels=8))


def test_pdae_equals_the_black_box_at_initialisation(black_box):
    model = black_box_pdae(black_box)
    x_t, t = inputs()
    z = model.encode(torch.randn(4, 1, 8, 8))
    with torch.no_grad():
        torch.testing.assert_close(shifted_eps(model, z)(x_t, t), black_box(x_t, t), atol=0, rtol=0)
    assert not any(k.startswith("dpm.") for k in model.state_dict())
    with pytest.raises(PdaeError, match="no decoder half"):
        PDAE(model.dpm, model.schedule, PDAEConfig(latent_dim=8, init_from_dpm=True))


def test_black_box_trains_saves_and_reconstructs(black_box, tmp_path, digits_npz):
    from pdae.data import open_dataset

    model = black_box_pdae(black_box)
    frozen = {k: v.clone() for k, v in black_box.net.state_dict().items()}
    assert_training_touches_only_trainable_weights(model, frozen)
    assert all(p.grad is None for p in black_box.net.parameters())

    dataset = open_dataset(digits_npz, image_size=8, channels=1)
    ema = train(model, PDAELoss(model.schedule), dataset, TrainConfig(total_images=16, batch_size=8,
                checkpoint_images=16), tmp_path / "run", model.to_config())
    assert ema.dpm._black_box.eps_fn is black_box  # shared with the EMA copy, not copied
    with pytest.raises(CheckpointError, match="pass the callable again"):
        load_pdae(tmp_path / "run")
    loaded = load_pdae(tmp_path / "run", black_box=black_box)
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(loaded.encode(x0), ema.encode(x0))
    outputs = reconstruct(loaded, x0, StepCounts(3, 3), seeds=[0, 1])
    assert outputs["inferred_xT"].shape == x0.shape and torch.isfinite(outputs["inferred_xT"]).all()
    assert build_pdae(loaded.to_config(), black_box).dpm.shift_unet == TINY_G
