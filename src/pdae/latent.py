"""The latent DPM (paper §4.5): a small diffusion model over standardised codes z, so that PDAE can draw
new images: sample z, then decode it with PDAE from a random x_T.

The reference clamps the latent x_T and every predicted z_0 to [-1, 1], which cuts off standardised codes
(about a third of their values lie outside); here nothing is clamped unless a truncation is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from pdae.autoencode import StepCounts, decode_from_noise
from pdae.checkpoint import load_state_strict, load_weights, resolve_weights_path
from pdae.errors import CheckpointError, PdaeError
from pdae.linear import Standardiser
from pdae.model import PDAE
from pdae.nn.latent_mlp import LatentMLP, LatentMLPConfig
from pdae.sampling import SeededNoise, StepCallback, sample_ddim
from pdae.schedule import NoiseSchedule

LATENT_SEED_OFFSET = 2**32  # latent noise of seed s is drawn from s + this: never the image noise of any seed


class LatentDPM(nn.Module):
    """An eps network over standardised z with its schedule and the statistics that standardise z."""

    def __init__(self, cfg: LatentMLPConfig, schedule: NoiseSchedule):
        super().__init__()
        self.schedule = schedule
        self.net = LatentMLP(cfg)
        self.register_buffer("z_mean", torch.zeros(cfg.dim))
        self.register_buffer("z_std", torch.ones(cfg.dim))

    @property
    def standardiser(self) -> Standardiser:
        return Standardiser(self.z_mean, self.z_std)

    def forward(self, z_t: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """eps of standardised codes; y is accepted (and ignored) as the shared eps loss passes one."""
        return self.net(z_t, t)

    def to_config(self) -> dict:
        return {"kind": "latent_dpm", "mlp": self.net.cfg.to_dict(), "schedule": self.schedule.to_config()}


def build_latent_dpm(config: dict) -> LatentDPM:
    if config.get("kind") != "latent_dpm":
        raise CheckpointError(f"expected a latent DPM checkpoint, found kind {config.get('kind')!r}")
    return LatentDPM(LatentMLPConfig(**config["mlp"]), NoiseSchedule(**config["schedule"]))


def default_latent_run(run: Path) -> Path:
    """Where `pdae latent fit` trains a PDAE's latent DPM: RUN/latent, or <name>_latent here for a file."""
    return run / "latent" if run.is_dir() else Path(f"{run.stem}_latent")


def latent_path(run: Path) -> Path:
    """Where a PDAE's latent DPM is looked for: `default_latent_run`, except that a weights file shipped
    beside a PDAE file (<name>_latent.safetensors, as for the shipped MNIST PDAE) comes first."""
    shipped = run.with_name(f"{run.stem}_latent.safetensors")
    return shipped if run.is_file() and shipped.is_file() else default_latent_run(run)


def check_code_size(latent: LatentDPM, model: PDAE, run: Path) -> None:
    """A latent DPM samples codes of one size: refuse a PDAE whose codes have another."""
    if latent.net.cfg.dim != model.cfg.latent_dim:
        raise PdaeError(f"the latent DPM samples codes of size {latent.net.cfg.dim}, and {run} decodes codes "
                        f"of size {model.cfg.latent_dim}: train a latent DPM on this run")


def load_latent_dpm(path: Path) -> LatentDPM:
    """A latent DPM from its run folder or weights file, in eval mode."""
    weights_path = resolve_weights_path(path)
    state, config = load_weights(weights_path)
    latent = build_latent_dpm(config)
    load_state_strict(latent, state, str(weights_path))
    return latent.eval()


def open_latent_dpm(run: Path, latent: Path | None, model: PDAE, device: torch.device) -> LatentDPM:
    """A PDAE's latent DPM (from `latent`, else `latent_path(run)`), on `device`, checked against it."""
    try:
        latent_dpm = load_latent_dpm(latent or latent_path(run)).to(device)
    except CheckpointError as error:
        raise CheckpointError(f"{error}\nsampling from a PDAE needs its latent DPM: train one with "
                              f"`pdae latent fit {run}`, or pass --latent") from None
    check_code_size(latent_dpm, model, run)
    return latent_dpm


class CodeDataset(Dataset):
    """Standardised codes as (z, -1) items, for the shared training loop."""

    def __init__(self, codes: Tensor):
        self.codes = codes.float()

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, key: int | tuple[int, int, int]) -> tuple[Tensor, int]:
        return self.codes[key[0] if isinstance(key, tuple) else key], -1


@torch.no_grad()
def sample_codes(latent: LatentDPM, seeds: Sequence[int], steps: int, truncate: float | None = None) -> Tensor:
    """Codes z (not standardised) by DDIM over the latent DPM, one seed per code, on its device.

    Code i's noise comes from seed + LATENT_SEED_OFFSET, a stream apart from the image noise of the same
    seed. `truncate` clamps the standardised latent x_T and every predicted z_0 to [-truncate, truncate].
    """
    device = latent.z_mean.device
    noise = SeededNoise([seed + LATENT_SEED_OFFSET for seed in seeds])
    z_T = noise(torch.empty(len(seeds), latent.net.cfg.dim, device=device))
    if truncate is not None:
        z_T = z_T.clamp(-truncate, truncate)
    z = sample_ddim(latent, z_T, latent.schedule, latent.schedule.timesteps(steps),
                    clip_x0=truncate is not None, clip_range=truncate or 1.0)
    return latent.standardiser.invert(z)


# The last share of decoding steps run without PDAE's shift when decoding latent-DPM codes: on 1,000 MNIST
# samples 0.3 gave the most classifier-confident samples (72.2 %, bare DPM 69.2 %, none 66.4 %) and an FID
# near the bare DPM's (README, benchmarks/pdae_sampling.py).
STOP_FRACTION = 0.3


@torch.no_grad()
def sample_images(model: PDAE, latent: LatentDPM, seeds: Sequence[int], steps: StepCounts,
                  latent_steps: int = 100, stop_fraction: float = STOP_FRACTION, truncate: float | None = None,
                  scale: float = 1.0, callback: StepCallback | None = None) -> Tensor:
    """New images: z from the latent DPM, decoded by PDAE from a random x_T (both seeded per image).

    The last `stop_fraction` of the decoding steps run without PDAE's shift (the plain DPM finishes);
    `callback` follows the decoding steps.
    """
    z = sample_codes(latent, seeds, latent_steps, truncate)
    return decode_from_noise(model, z, seeds, steps, scale, stop_fraction, callback)
