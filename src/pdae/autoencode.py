"""Autoencoding with PDAE: z = E(x0); x_T by shifted DDIM inversion; decoding by the shifted sampler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pdae.model import PDAE
from pdae.sampling import SeededNoise, invert_ddim, sample_ddim, shifted_eps


@dataclass(frozen=True)
class StepCounts:
    """How many DDIM steps inversion and decoding use; eta 0 decodes with DDIM, eta 1 with DDPM.

    Inversion clamps its predicted x0 to [-1, 1] only with clip_inversion (the reference code always does,
    which keeps decoding from inverting encoding).
    """

    inversion: int = 100
    decoding: int = 100
    eta: float = 0.0
    clip_inversion: bool = False


@torch.no_grad()
def encode(model: PDAE, x0: Tensor) -> Tensor:
    return model.encode(x0)


@torch.no_grad()
def infer_x_T(model: PDAE, x0: Tensor, z: Tensor, steps: int, clip_x0: bool = False) -> Tensor:
    """The stochastic code: run the shifted DDIM upward from x0 (unclamped by default, so decoding inverts it)."""  # noqa: E501
    return invert_ddim(shifted_eps(model, z), x0, model.schedule, model.schedule.timesteps(steps), clip_x0)


@torch.no_grad()
def decode(model: PDAE, z: Tensor, x_T: Tensor, steps: StepCounts,
           noise_seeds: Sequence[int] | None = None) -> Tensor:
    noise = SeededNoise(noise_seeds) if noise_seeds is not None else torch.randn_like
    return sample_ddim(shifted_eps(model, z), x_T, model.schedule, model.schedule.timesteps(steps.decoding),
                       eta=steps.eta, noise=noise)


@torch.no_grad()
def reconstruct(model: PDAE, x0: Tensor, steps: StepCounts, seeds: Sequence[int]) -> dict[str, Tensor]:
    """Decode each image from its z twice: from a random x_T (seeded per image) and from its inferred x_T."""
    z = encode(model, x0)
    noise = SeededNoise(seeds)
    x_T_random = noise(x0)
    x_T_inferred = infer_x_T(model, x0, z, steps.inversion, steps.clip_inversion)
    return {"random_xT": decode(model, z, x_T_random, steps, [s + 1 for s in seeds]),
            "inferred_xT": decode(model, z, x_T_inferred, steps, [s + 1 for s in seeds])}
