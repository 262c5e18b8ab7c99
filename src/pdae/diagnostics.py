"""The paper's two diagnostics: the posterior-mean gap per t, and one-step denoising."""

from __future__ import annotations

import torch
from torch import Tensor

from pdae.diffae import DiffAE
from pdae.errors import PdaeError
from pdae.model import PDAE
from pdae.sampling import shifted_eps


@torch.no_grad()
def posterior_mean_gap(model: PDAE | DiffAE, x0: Tensor, timesteps: Tensor,
                       generator: torch.Generator) -> dict[str, Tensor]:
    """Mean over images and pixels of ||mu_t(x_t, x0) - mu||^2 at each t, for each of the model's
    `gap_predictions` (a PDAE's: the DPM's, and with the shift as in training; a Diff-AE's: its own).

    The noise is Gaussian (the reference code draws it uniform) and drawn from `generator` alone, so two
    models scored with equal seeds see the same x_t. Since mu = (x_t - beta_t / sqrt(1 - abar_t) eps) /
    sqrt(alpha_t), the gap is (beta_t^2 / (alpha_t (1 - abar_t))) ||eps_pred - eps||^2.
    """
    x0 = x0.to(model.device)
    schedule, z = model.schedule, model.encode(x0)
    gaps: dict[str, list[Tensor]] = {}
    for step in timesteps.tolist():
        t = torch.full((x0.shape[0],), step, dtype=torch.long, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator).to(x0.device)
        scale = (schedule.betas[step] ** 2 / (schedule.alphas[step] * (1 - schedule.alpha_bar[step]))).item()
        for name, eps_pred in model.gap_predictions(schedule.q_sample(x0, t, eps), t, z).items():
            gaps.setdefault(name, []).append(scale * (eps_pred - eps).square().mean())
    return {name: torch.stack(values).cpu() for name, values in gaps.items()}


def integrate_over_t(values: Tensor, timesteps: Tensor) -> float:
    """Trapezoid sum over the evaluated t, scaled to all T steps (a sum over t = 0 .. T-1)."""
    return float(torch.trapezoid(values.double(), timesteps.double()))


@torch.no_grad()
def one_step_denoise(model: PDAE, x0: Tensor, timesteps: list[int],
                     generator: torch.Generator) -> list[Tensor]:
    """For each t: rows of x_t, the DPM's one-step x0 prediction, and PDAE's (with the shift); on the CPU."""
    if not isinstance(model, PDAE):
        raise PdaeError("one-step denoising compares a PDAE with its frozen DPM; this run has no DPM")
    x0 = x0.to(model.device)
    schedule, z = model.schedule, model.encode(x0)
    decoder = shifted_eps(model, z)
    rows = []
    for step in timesteps:
        t = torch.full((x0.shape[0],), step, dtype=torch.long, device=x0.device)
        x_t = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=generator).to(x0.device))
        eps_theta, _ = model.eps_and_shift(x_t, t, z)
        rows += [x_t, schedule.x0_from_eps(x_t, t, eps_theta).clamp(-1, 1),
                 schedule.x0_from_eps(x_t, t, decoder(x_t, t)).clamp(-1, 1)]
    return [row.cpu() for row in rows]
