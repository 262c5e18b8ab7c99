"""Shared test helpers."""

import pytest
import torch

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
