"""Samplers over an eps function `(x_t, t) -> eps` and a schedule; they never know what model is inside.

Notation: a_from = alpha_bar at the current level, a_to at the next; t = -1 is the clean image
(alpha_bar = 1). DDIM (Song et al. 2021, eq. 12) with eta = 1 over all T steps is DDPM's ancestral
sampler with the posterior variance, so one transition serves decoding, DDPM and inversion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from pdae.schedule import NoiseSchedule

EpsFn = Callable[[Tensor, Tensor], Tensor]
NoiseFn = Callable[[Tensor], Tensor]
StepCallback = Callable[[int, Tensor], None]


class SeededNoise:
    """Gaussian noise where row i depends only on seeds[i], so sample i is reproducible on its own (EDM)."""

    def __init__(self, seeds: Sequence[int]):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def __call__(self, like: Tensor) -> Tensor:
        rows = torch.stack([torch.randn(like.shape[1:], generator=g) for g in self.generators])
        if like.device.type == "cuda":  # page-locked, so the copy does not wait for the GPU
            rows = rows.pin_memory()
        return rows.to(device=like.device, dtype=like.dtype, non_blocking=True)


def eps_at(eps_fn: EpsFn, x: Tensor, t: int) -> Tensor:
    """eps_fn at (x, t) for every row, in x's dtype."""
    return eps_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)).to(x.dtype)


def ddim_transition(eps_fn: EpsFn, x: Tensor, schedule: NoiseSchedule, t_from: int, t_to: int, t_eval: int,
                    eta: float = 0.0, clip_x0: bool = False, noise: NoiseFn = torch.randn_like,
                    clip_range: float = 1.0) -> Tensor:
    """Move x from level t_from to t_to via the predicted x0 (clamped to +-clip_range if clip_x0), with eps
    evaluated at (x, t_eval)."""
    return ddim_move(x, eps_at(eps_fn, x, t_eval), schedule, t_from, t_to, eta, clip_x0, noise, clip_range)


def ddim_move(x: Tensor, eps: Tensor, schedule: NoiseSchedule, t_from: int, t_to: int, eta: float = 0.0,
              clip_x0: bool = False, noise: NoiseFn = torch.randn_like, clip_range: float = 1.0) -> Tensor:
    """`ddim_transition` with eps already evaluated."""
    a_from, a_to = (float(schedule.alpha_bar_at(torch.tensor(s))) for s in (t_from, t_to))
    x0 = (x - np.sqrt(1 - a_from) * eps) / np.sqrt(a_from)
    if clip_x0 and a_from < 1:
        x0 = x0.clamp(-clip_range, clip_range)
        eps = (x - np.sqrt(a_from) * x0) / np.sqrt(1 - a_from)
    sigma = eta * np.sqrt(max((1 - a_to) / (1 - a_from) * (1 - a_from / a_to), 0.0)) if a_from < 1 else 0.0
    x_next = np.sqrt(a_to) * x0 + np.sqrt(max(1 - a_to - sigma**2, 0.0)) * eps
    return x_next + sigma * noise(x) if sigma > 0 else x_next


@torch.no_grad()
def sample_ddim(eps_fn: EpsFn, x: Tensor, schedule: NoiseSchedule, timesteps: Tensor, eta: float = 0.0, *,
                clip_x0: bool, noise: NoiseFn = torch.randn_like,
                callback: StepCallback | None = None, clip_range: float = 1.0) -> Tensor:
    """Decode x from level timesteps[-1] through every listed step to the clean image (alpha_bar = 1).

    `clip_x0` has no default: decoding an inferred x_T must clamp exactly as its inversion did. The
    clamp is to [-clip_range, clip_range] (a latent DPM's truncation uses another range than images).
    """
    levels = [-1] + timesteps.tolist()
    for i in range(len(levels) - 1, 0, -1):
        x = ddim_transition(eps_fn, x, schedule, levels[i], levels[i - 1], levels[i], eta, clip_x0, noise,
                            clip_range)
        if callback is not None:
            callback(len(levels) - 1 - i, x)
    return x


@torch.no_grad()
def invert_ddim(eps_fn: EpsFn, x0: Tensor, schedule: NoiseSchedule, timesteps: Tensor, clip_x0: bool = False,
                callback: StepCallback | None = None, refine: int = 0) -> Tensor:
    """Deterministic DDIM run upward from the clean image to level timesteps[-1]: the inferred x_T.

    Decoding's step from level t down to s evaluates eps at (x_t, t), so inverting it exactly means
    solving x_t = move(x_s, eps(x_t, t)) for x_t. With `refine` = 0 each step takes eps at (x_s, t), the
    usual one-evaluation approximation. With `refine` = k > 0 it iterates toward the solution instead:
    the first guess moves with the last eps of the previous step (eps changes little along a DDIM
    path; the first step evaluates it at the clean image), then k fixed-point iterations each evaluate eps
    at the last guess. That costs k evaluations per step and lets few-step decoding retrace the inversion
    (README: SSIM against network evaluations). x0 is not clamped unless asked, so decoding inverts
    encoding.
    """
    levels = [-1] + timesteps.tolist()
    x, eps = x0, None
    for i in range(len(levels) - 1):
        t_from, t_to = levels[i], levels[i + 1]
        if refine == 0 or eps is None:
            eps = eps_at(eps_fn, x, t_to)
        x_next = ddim_move(x, eps, schedule, t_from, t_to, clip_x0=clip_x0)
        for _ in range(refine):
            eps = eps_at(eps_fn, x_next, t_to)
            x_next = ddim_move(x, eps, schedule, t_from, t_to, clip_x0=clip_x0)
        x = x_next
        if callback is not None:
            callback(i, x)
    return x


def inversion_evaluations(steps: int, refine: int) -> int:
    """Network evaluations of `invert_ddim` over `steps` steps with `refine` fixed-point iterations."""
    return steps if refine == 0 else steps * refine + 1


def eps_of(unet: torch.nn.Module, channels: int) -> EpsFn:
    """The eps function of a plain DPM: its output with any learned-variance channels dropped."""
    return lambda x, t: unet(x, t)[:, :channels]


def sample_with_dpm(unet: torch.nn.Module, schedule: NoiseSchedule, num: int, steps: int, eta: float,
                    seeds: Sequence[int], batch_size: int = 256) -> Tensor:
    """Unconditional samples from a DPM (a backbone) on its device, in batches, with a progress bar.

    Returned on the CPU.
    """
    from pdae.progress import per_step, progress_bar

    channels, size = unet.in_channels, unet.image_size
    device = next(unet.parameters()).device
    timesteps = schedule.timesteps(steps)
    batches = []
    with progress_bar("sampling", total=num, fields=()) as bar:
        for start in range(0, num, batch_size):
            noise = SeededNoise(list(seeds)[start : start + batch_size])
            x_T = noise(torch.empty(len(noise.generators), channels, size, size, device=device))
            images = sample_ddim(eps_of(unet, channels), x_T, schedule, timesteps, eta, clip_x0=True,
                                 noise=noise, callback=per_step(bar, len(x_T), len(timesteps)))
            batches.append(images.cpu())
    return torch.cat(batches)


def shifted_eps(model: torch.nn.Module, z: Tensor, scale: float = 1.0, min_t: int = 0) -> EpsFn:
    """An autoencoder's decoding eps for code z; PDAE's is eps_theta(x_t, t) - scale * k_t * G(x_t, z, t) for
    t >= min_t (the DPM alone below: the stop fraction)."""
    return model.conditional_eps([z], [scale], min_t)


def mixed_shift_eps(model: torch.nn.Module, zs: Sequence[Tensor], weights: Sequence[Tensor | float],
                    min_t: int = 0) -> EpsFn:
    """The decoding eps of a weighted mix of codes; PDAE's is eps_theta - k_t * sum_j weights[j] * G(zs[j]),
    the frozen DPM evaluated once (trajectory interpolation mixes (1 - a) G(z_1) + a G(z_2)).

    A weight is a number or one value per row.
    """
    return model.conditional_eps(zs, weights, min_t)


def per_row(weight: Tensor | float, like: Tensor) -> Tensor | float:
    """A number as it is; one value per row shaped to broadcast over `like`'s other dimensions."""
    if isinstance(weight, Tensor):
        return weight.to(like).view(-1, *[1] * (like.dim() - 1))
    return weight
