"""Shared test helpers."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pdae.model import PDAE, PDAEConfig
from pdae.nn.unet import UNet, UNetConfig
from pdae.schedule import NoiseSchedule

TINY_UNET = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                       attention_resolutions=(), channel_mult=(1, 2))


def shifted_pdae(latent_dim: int = 4, **pdae_options) -> PDAE:
    """A tiny 8 x 8 PDAE whose E and G are perturbed away from their initialisation, where G's output conv
    and z maps are zero (G would otherwise ignore z), in eval mode."""
    torch.manual_seed(0)
    model = PDAE(UNet(TINY_UNET), NoiseSchedule("linear", 1000),
                 PDAEConfig(latent_dim=latent_dim, **pdae_options))
    with torch.no_grad():
        for p in [*model.decoder.parameters(), *model.encoder.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def make_shifted_pdae():
    return shifted_pdae


@pytest.fixture
def run_cli(capsys):
    """Run `pdae ARGS` in this process as the entry point does: returns (exit code, everything printed)."""
    from pdae.cli import app, run_reporting_errors

    def run(*args: str) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            run_reporting_errors(lambda: app(list(args), prog_name="pdae"))
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out + captured.err

    return run


class StandInLPIPS(torch.nn.Module):
    """The lpips package's interface (LPIPS(net=..., verbose=...), forward on [-1, 1] RGB -> N x 1 x 1 x 1)
    with a small fixed conv as its feature network and LPIPS's formula: unit-normalised features, squared
    difference, mean over space, summed over channels. Records its inputs."""

    def __init__(self, net: str, verbose: bool):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.inputs: list[torch.Tensor] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        self.inputs += [a, b]
        fa, fb = (F.normalize(self.conv(x), dim=1) for x in (a, b))
        return (fa - fb).square().sum(1, keepdim=True).mean((2, 3), keepdim=True)


@pytest.fixture
def stand_in_lpips(monkeypatch):
    """Installs a stand-in `lpips` package (its AlexNet weights cannot be downloaded here); the networks it
    makes are appended to the returned list."""
    made: list[StandInLPIPS] = []

    def make(**kwargs) -> StandInLPIPS:
        made.append(StandInLPIPS(**kwargs))
        return made[-1]

    monkeypatch.setitem(sys.modules, "lpips", types.SimpleNamespace(LPIPS=make))
    return made


@pytest.fixture(scope="session")
def make_latent_run():
    """make(root, latent=True) -> (run, data): a tiny DPM and PDAE on 24 random 8 x 8 images, each trained
    for two steps through the CLI, and (with `latent`) a latent DPM fitted on its codes by `pdae latent fit`."""
    from typer.testing import CliRunner

    from pdae.cli import app

    runner = CliRunner()

    def make(root: Path, latent: bool = True) -> tuple[Path, Path]:
        rng = np.random.default_rng(1)
        data = root / "data.npz"
        np.savez(data, images=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8), labels=np.arange(24) % 3)
        common = ["--data", str(data), "--images", "16", "--batch-size", "8", "--threads", "1"]
        for args in (["pretrain", "--out", str(root / "dpm"), "--image-size", "8", "--preset", "tiny"],
                     ["fit", "--dpm", str(root / "dpm"), "--out", str(root / "pdae"), "--latent-dim", "8"]):
            result = runner.invoke(app, [*args, *common])
            assert result.exit_code == 0, result.output
        if latent:
            result = runner.invoke(app, ["latent", "fit", str(root / "pdae"), "--data", str(data), "--images",
                                         "256", "--batch-size", "32", "--width", "16", "--depth", "2"])
            assert result.exit_code == 0, result.output
        return root / "pdae", data

    return make
