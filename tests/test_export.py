"""Hub-style folders: `pdae export` writes a PDAE as diffusers lays models out, and everything reads it back."""

import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from typer.testing import CliRunner

from pdae.backbones import load_dpm
from pdae.cli import app
from pdae.export import export_pdae, is_exported
from pdae.model import PDAE, PDAEConfig, load_pdae

runner = CliRunner()
torch.set_num_threads(1)


def same_decoding(a: PDAE, b: PDAE) -> None:
    torch.manual_seed(2)
    x0, x_t, t = torch.rand(3, 1, 8, 8) * 2 - 1, torch.randn(3, 1, 8, 8), torch.tensor([3, 300, 900])
    with torch.no_grad():
        for (eps_a, shift_a), (eps_b, shift_b) in [(a(x_t, t, x0), b(x_t, t, x0))]:
            torch.testing.assert_close(eps_a, eps_b)
            torch.testing.assert_close(shift_a, shift_b)


def test_an_adm_pdae_round_trips_with_its_schedule_as_a_ddim_scheduler(make_shifted_pdae, tmp_path):
    model = make_shifted_pdae()
    export_pdae(model, tmp_path / "hub", "# card\n")
    assert is_exported(tmp_path / "hub")
    index = json.loads((tmp_path / "hub" / "model_index.json").read_text())
    assert index["dpm"] == ["pdae", "ADM UNet"] and index["scheduler"] == ["diffusers", "DDIMScheduler"]
    loaded = load_pdae(tmp_path / "hub")
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)
    same_decoding(model, loaded)
    scheduler = DDIMScheduler.from_pretrained(tmp_path / "hub" / "scheduler")
    torch.testing.assert_close(scheduler.betas.double(), model.schedule.betas.double(), rtol=1e-6, atol=0)
    assert scheduler.config.timestep_spacing == "trailing" and scheduler.config.set_alpha_to_one
    with pytest.raises(Exception, match="not empty"):
        export_pdae(model, tmp_path / "hub", "")


def test_a_diffusers_dpm_travels_as_a_unet2dmodel_folder(tmp_path):
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    unet.save_pretrained(tmp_path / "dpm")
    DDPMScheduler(num_train_timesteps=100).save_config(tmp_path / "dpm")
    model = PDAE(*load_dpm(tmp_path / "dpm"), PDAEConfig(latent_dim=4)).eval()
    with torch.no_grad():
        for p in [*model.encoder.parameters(), *model.decoder.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    export_pdae(model, tmp_path / "hub", "# card\n")

    reloaded_unet = UNet2DModel.from_pretrained(tmp_path / "hub" / "unet")  # diffusers reads it as it is
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 60])
    with torch.no_grad():
        torch.testing.assert_close(reloaded_unet(x, t).sample, unet(x, t).sample)
    same_decoding(model, load_pdae(tmp_path / "hub"))


def test_pdae_export_writes_a_model_card_and_every_command_reads_the_folder(tmp_path, make_latent_run, run_cli):
    run, data = make_latent_run(tmp_path)
    report = tmp_path / "eval.json"
    result = runner.invoke(app, ["eval", str(run), str(data), "-o", str(report), "--limit", "2",
                                 "--inversion-steps", "2", "--decoding-steps", "2", "--probe-train", "24",
                                 "--gap-images", "2", "--fid-samples", "0"])
    assert result.exit_code == 0, result.output
    hub = tmp_path / "hub"
    result = runner.invoke(app, ["export", str(run), str(hub), "--data", "24 random 8 x 8 images",
                                 "--eval", str(report)])
    assert result.exit_code == 0, result.output
    card = (hub / "README.md").read_text()
    assert "24 random 8 x 8 images" in card and "images seen: 16" in card
    assert f"| {json.loads(report.read_text())['inferred_xT_ssim']:.4f} |" in card

    npz = tmp_path / "r.npz"
    result = runner.invoke(app, ["reconstruct", str(hub), str(data), "--limit", "2", "--inversion-steps", "3",
                                 "--decoding-steps", "3", "-o", str(tmp_path / "r.png"), "--npz", str(npz)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["reconstruct", str(run), str(data), "--limit", "2", "--inversion-steps", "3",
                                 "--decoding-steps", "3", "-o", str(tmp_path / "r0.png"), "--npz",
                                 str(tmp_path / "r0.npz")])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(npz)["inferred_xT"], np.load(tmp_path / "r0.npz")["inferred_xT"],
                               atol=1e-6)
    result = runner.invoke(app, ["sample", str(hub), "-n", "2", "--steps", "3", "--latent-steps", "3",
                                 "-o", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output  # the latent DPM travelled with it

    code, output = run_cli("export", str(run), str(hub))
    assert code == 2 and "not empty" in output
    code, output = run_cli("export", str(run), str(tmp_path / "hub2"), "--eval", str(tmp_path / "none.json"))
    assert code == 2 and "does not exist" in output
