"""The Diff-AE baseline: its z conditioning, its loss, and the commands it shares with PDAE."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from pdae.autoencode import StepCounts, reconstruct
from pdae.cli import app
from pdae.diffae import DiffAE, DiffAEConfig
from pdae.errors import PdaeError
from pdae.losses import DiffAELoss
from pdae.model import load_pdae
from pdae.nn.unet import ResBlock, UNetConfig
from pdae.sampling import invert_ddim, mixed_shift_eps, sample_ddim, shifted_eps
from pdae.schedule import NoiseSchedule

runner = CliRunner()
torch.set_num_threads(1)
TINY = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                  attention_resolutions=(2,), channel_mult=(1, 2))


def tiny_diffae(latent_dim: int = 4) -> DiffAE:
    torch.manual_seed(0)
    model = DiffAE(TINY, NoiseSchedule("linear", 1000), DiffAEConfig(latent_dim, 16))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_a_resblock_scales_by_z_after_the_time_scale_shift_as_diffae_does():
    torch.manual_seed(0)
    block = ResBlock(8, 16, 0.0, 8, latent_dim=3, z_modulation="scale")
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    x, emb, z = torch.randn(2, 8, 4, 4), torch.randn(2, 16), torch.randn(2, 3)
    h = block.in_layers(x)
    scale, shift = block.emb_layers(emb)[..., None, None].chunk(2, dim=1)
    h = block.out_layers[0](h) * (1 + scale) + shift
    h = h * (1 + F.linear(F.silu(z), block.z_layers[1].weight, block.z_layers[1].bias)[..., None, None])
    torch.testing.assert_close(block(x, emb, z), x + block.out_layers[1:](h))
    assert block.z_layers[1].out_features == 8  # a scale per channel, no shift
    with pytest.raises(PdaeError, match="z modulation"):
        ResBlock(8, 16, 0.0, latent_dim=3, z_modulation="gate")


def test_every_resblock_of_the_unet_sees_z():
    model = tiny_diffae()
    x_t, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 500])
    z = torch.randn(2, 4)
    blocks = [m for m in model.unet.modules() if isinstance(m, ResBlock)]
    assert blocks and all(hasattr(b, "z_layers") for b in blocks)
    changed = model.unet(x_t, t, z=z) - model.unet(x_t, t, z=z + 1)
    assert changed.abs().amax() > 1e-3


def test_the_loss_trains_encoder_and_unet_together():
    model = tiny_diffae()
    loss_fn = DiffAELoss(model.schedule)
    torch.manual_seed(1)
    x0 = torch.rand(16, 1, 8, 8) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(60):
        torch.manual_seed(2)  # the same t and noise every step: the loss of one fixed draw must fall
        loss = loss_fn(model, x0, torch.zeros(16)).mean()
        opt.zero_grad()
        loss.backward()
        assert model.encoder.to_latent.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_decoding_mixes_conditional_eps_and_refuses_what_needs_a_dpm():
    model = tiny_diffae()
    x_t, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 400, 900])
    z_a, z_b, w = torch.randn(3, 4), torch.randn(3, 4), torch.tensor([0.0, 0.25, 1.0])
    with torch.no_grad():
        mixed = mixed_shift_eps(model, [z_a, z_b], [1 - w, w])(x_t, t)
        eps_a, eps_b = model.unet(x_t, t, z=z_a), model.unet(x_t, t, z=z_b)
        torch.testing.assert_close(shifted_eps(model, z_a)(x_t, t), eps_a)
    torch.testing.assert_close(mixed, (1 - w.view(-1, 1, 1, 1)) * eps_a + w.view(-1, 1, 1, 1) * eps_b)
    with pytest.raises(PdaeError, match="no unconditional DPM"):
        shifted_eps(model, z_a, scale=2.0)
    with pytest.raises(PdaeError, match="no unconditional DPM"):
        shifted_eps(model, z_a, min_t=100)


def test_reconstruct_inverts_and_decodes_with_the_conditional_unet():
    model = tiny_diffae()
    torch.manual_seed(3)
    x0 = torch.rand(2, 1, 8, 8) * 2 - 1
    steps = StepCounts(5, 5)
    out = reconstruct(model, x0, steps, seeds=range(2))
    with torch.no_grad():
        z, timesteps = model.encode(x0), model.schedule.timesteps(5)
        eps_fn = lambda x_t, t: model.unet(x_t, t, z=z)  # noqa: E731
        x_T = invert_ddim(eps_fn, x0, model.schedule, timesteps, refine=steps.refine)
        expected = sample_ddim(eps_fn, x_T, model.schedule, timesteps, clip_x0=False)
    torch.testing.assert_close(out["inferred_xT"], expected)


@pytest.fixture(scope="module")
def diffae_run(tmp_path_factory):
    """A tiny DPM (for its architecture) and a Diff-AE trained by `pdae fit --method diffae`."""
    root = tmp_path_factory.mktemp("diffae")
    data = root / "data.npz"
    rng = np.random.default_rng(1)
    np.savez(data, images=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8), labels=np.arange(24) % 3)
    result = runner.invoke(app, ["pretrain", "--out", str(root / "dpm"), "--data", str(data), "--image-size",
                                 "8", "--preset", "tiny", "--images", "8", "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["fit", "--method", "diffae", "--dpm", str(root / "dpm"), "--out",
                                 str(root / "diffae"), "--data", str(data), "--latent-dim", "6", "--images", "16",
                                 "--batch-size", "8", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "Diff-AE" in result.output
    return root, data


def test_fit_method_diffae_trains_a_run_every_command_reads(diffae_run):
    root, data = diffae_run
    run = root / "diffae"
    model = load_pdae(run)
    assert isinstance(model, DiffAE) and model.cfg.latent_dim == 6
    out = root / "eval.json"
    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(out), "--limit", "4", "--inversion-steps",
                                 "3", "--decoding-steps", "3", "--probe-train", "24", "--gap-images", "4",
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["method"] == "diffae" and report["sampling_coef"] is None
    assert np.isfinite(report["inferred_xT_mse"]) and report["gap"]["integral_diffae"] > 0
    assert "share_filled" not in report["gap"]
    table = out.with_suffix(".md").read_text()
    assert table.startswith("Diff-AE on 4 held-out images") and "gap integrated over t" in table

    result = runner.invoke(app, ["reconstruct", str(run), str(data), "-o", str(root / "rec.png"), "--limit", "2",
                                 "--inversion-steps", "3", "--decoding-steps", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args,message", [
    (["gap", "{run}", "{data}", "-o", "{root}/gap.png"], "Diff-AE run"),
    (["denoise-one-step", "{run}", "{data}", "-o", "{root}/one.png"], "has no DPM"),
    (["reconstruct", "{run}", "{data}", "-o", "{root}/r.png", "--sampling-coef", "trained"], "no shift coef"),
    (["fit", "--method", "diffae", "--out", "{run}", "--data", "{data}", "--resume", "--latent-dim", "9"],
     "--latent-dim 9 (the run has 6)"),
    (["fit", "--out", "{run}", "--data", "{data}", "--resume"], "fit --method diffae --resume"),
    (["fit", "--method", "diffae", "--condition", "class", "--out", "{root}/x", "--data", "{data}"],
     "--condition class is for PDAE"),
    (["fit", "--method", "diffae", "--gradient-checkpointing", "--out", "{root}/x", "--data", "{data}"],
     "the Diff-AE baseline has none"),
    (["export", "{run}", "{root}/hub"], "is not a PDAE run"),
])
def test_what_a_diffae_run_cannot_do_ends_in_a_message(diffae_run, args, message, run_cli):
    root, data = diffae_run
    values = {"run": str(root / "diffae"), "data": str(data), "root": str(root)}
    code, output = run_cli(*(a.format(**values) for a in args))
    assert code == 2 and message in " ".join(output.split()), output
