"""The discrete noise schedule: every per-timestep coefficient, computed once in float64.

Notation (DESIGN.md §1): t = 0 .. T-1, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s,
alpha_bar_{-1} = 1, SNR_t = alpha_bar_t / (1 - alpha_bar_t). Index -1 stands for the clean image
wherever a timestep is accepted, so DDIM can end (and inversion start) at alpha_bar = 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from pdae.errors import PdaeError

SCHEDULE_NAMES = ("linear", "cosine")
DEVICE_COPIES = 16  # coefficient tensors kept per schedule on accelerators (NoiseSchedule.on_device)
CUSTOM = "custom"  # betas given explicitly (a foreign DPM's schedule that is neither of the named ones)


def linear_betas(num_timesteps: int, max_beta: float = 0.999) -> Tensor:
    """Ho et al. 2020 betas 1e-4 .. 0.02 at T = 1000, scaled by 1000 / T for other T (guided-diffusion)."""
    scale = 1000 / num_timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=torch.float64).clamp(max=max_beta)


def cosine_betas(num_timesteps: int, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alpha_bar = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


@dataclass(frozen=True)
class NoiseSchedule:
    """Per-timestep coefficients of a discrete DPM; gathers them into a batch with `at`.

    A named schedule computes its betas; the `custom` one carries them in `custom_betas` (see `from_betas`).
    """

    name: str = "linear"
    num_timesteps: int = 1000
    custom_betas: tuple[float, ...] | None = field(default=None, repr=False)
    betas: Tensor = field(init=False, repr=False, compare=False)
    _device_copies: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in (*SCHEDULE_NAMES, CUSTOM):
            raise PdaeError(f"unknown noise schedule {self.name!r}; "
                            f"choose one of {', '.join(SCHEDULE_NAMES)}")
        if self.num_timesteps < 1:
            raise PdaeError(f"the schedule needs at least one timestep, got {self.num_timesteps}")
        object.__setattr__(self, "betas", self._make_betas())

    @classmethod
    def from_betas(cls, betas: Tensor | list[float]) -> "NoiseSchedule":
        """A custom schedule with exactly these betas."""
        values = tuple(float(b) for b in torch.as_tensor(betas, dtype=torch.float64).flatten())
        return cls(CUSTOM, len(values), values)

    def _make_betas(self) -> Tensor:
        if self.name != CUSTOM:
            if self.custom_betas is not None:
                raise PdaeError(f"the {self.name} schedule computes its betas: give betas as {CUSTOM!r}")
            return (linear_betas if self.name == "linear" else cosine_betas)(self.num_timesteps)
        betas = torch.tensor(self.custom_betas or (), dtype=torch.float64)
        if len(betas) != self.num_timesteps or not bool(((betas > 0) & (betas < 1)).all()):
            raise PdaeError(f"a custom schedule needs {self.num_timesteps} betas in (0, 1), got {len(betas)}")
        object.__setattr__(self, "custom_betas", tuple(betas.tolist()))  # JSON gives a list: keep it hashable
        return betas

    @cached_property  # computed once per schedule, read on every step
    def alphas(self) -> Tensor:
        return 1 - self.betas

    @cached_property
    def alpha_bar(self) -> Tensor:
        return torch.cumprod(self.alphas, 0)

    @cached_property
    def alpha_bar_prev(self) -> Tensor:
        """alpha_bar_{t-1}, with alpha_bar_{-1} = 1."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])

    @cached_property
    def snr(self) -> Tensor:
        return self.alpha_bar / (1 - self.alpha_bar)

    @cached_property
    def posterior_variance(self) -> Tensor:
        """Sigma_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) of q(x_{t-1} | x_t, x_0)."""
        return self.betas * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar)

    @cached_property
    def shift_coef(self) -> Tensor:
        """PDAE's c_t = -sqrt(alpha_t) (1 - alpha_bar_{t-1}) / sqrt(1 - alpha_bar_t): Sigma_t G in eps-space."""  # noqa: E501
        return -self.alphas.sqrt() * (1 - self.alpha_bar_prev) / (1 - self.alpha_bar).sqrt()

    @cached_property
    def trained_sampling_coef(self) -> Tensor:
        """k_t = -c_t: decoding with the coefficient G was trained with (eps_hat = eps_theta - k_t G)."""
        return -self.shift_coef

    @cached_property
    def reference_sampling_coef(self) -> Tensor:
        """k_t = sqrt(1 - alpha_bar_t): the classifier-guidance form the reference code samples with."""
        return (1 - self.alpha_bar).sqrt()

    def loss_weight(self, gamma: float = 0.1) -> Tensor:
        """PDAE's lambda_t = SNR_t^gamma / (1 + SNR_t), the weighting of its eq. 10."""
        return self.snr**gamma / (1 + self.snr)

    def min_snr_weight(self, gamma: float) -> Tensor:
        """min(SNR_t, gamma) / SNR_t: Min-SNR-gamma weighting (Hang et al. 2023) of the eps loss. It lowers the
        weight of the nearly clean steps, whose large eps errors otherwise dominate the gradient, and leaves
        the steps where the image's shape forms (SNR_t <= gamma) at weight 1."""
        return self.snr.clamp(max=gamma) / self.snr

    def alpha_bar_at(self, t: Tensor) -> Tensor:
        """alpha_bar_t for integer t in [-1, T-1] (t = -1 is the clean image), as float64."""
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])
        return padded[t.long().cpu() + 1].to(t.device)

    def at(self, coef: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """Gather coef[t] and shape it to broadcast against `like` (batch first), in like's dtype.

        The gather happens on t's device, from a copy of `coef` made once per device: no host
        synchronisation per call on a GPU.
        """
        values = self.on_device(coef, t.device)[t.long()].to(device=like.device, dtype=like.dtype)
        return values.view(-1, *([1] * (like.dim() - 1)))

    def on_device(self, coef: Tensor, device: torch.device) -> Tensor:
        """`coef` on `device`, copied once and cached (the cache holds `coef`, so its key stays unique).

        The cache keeps the most recent few copies: enough for every coefficient a step uses, bounded
        when callers build new coefficient tensors (a new loss weight per loss object, say).
        """
        if coef.device == device:
            return coef
        key = (coef.data_ptr(), coef.numel(), str(device))
        source, copy = self._device_copies.get(key, (None, None))
        if source is not coef:
            copy = coef.to(device)
            self._device_copies[key] = (coef, copy)
            while len(self._device_copies) > DEVICE_COPIES:
                del self._device_copies[next(iter(self._device_copies))]
        return copy

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (DDPM eq. 4)."""
        alpha_bar = self.at(self.alpha_bar, t, x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        alpha_bar = self.at(self.alpha_bar, t, x_t)
        return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()

    def eps_from_x0(self, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        alpha_bar = self.at(self.alpha_bar, t, x_t)
        return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    def posterior_mean(self, x0: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """mu_t(x_t, x_0) of q(x_{t-1} | x_t, x_0) (DDPM eq. 7)."""
        return self.at(self.posterior_coef_x0, t, x_t) * x0 + self.at(self.posterior_coef_xt, t, x_t) * x_t

    @cached_property
    def posterior_coef_x0(self) -> Tensor:
        return self.betas * self.alpha_bar_prev.sqrt() / (1 - self.alpha_bar)

    @cached_property
    def posterior_coef_xt(self) -> Tensor:
        return (1 - self.alpha_bar_prev) * self.alphas.sqrt() / (1 - self.alpha_bar)

    def timesteps(self, num_steps: int) -> Tensor:
        """Exactly `num_steps` distinct timesteps, ascending, the last one T-1 (respacing for DDIM).

        A sampler walks them from T-1 down and then takes one more step to alpha_bar = 1.
        """
        if not 1 <= num_steps <= self.num_timesteps:
            raise PdaeError(f"number of steps must be in 1..{self.num_timesteps}, got {num_steps}")
        return torch.linspace(self.num_timesteps - 1, 0, num_steps,
                              dtype=torch.float64).round().long().flip(0)

    def to_config(self) -> dict:
        """Keyword arguments that rebuild this schedule (JSON: the custom betas as a list)."""
        config = {"name": self.name, "num_timesteps": self.num_timesteps}
        return config if self.custom_betas is None else {**config, "custom_betas": list(self.custom_betas)}
