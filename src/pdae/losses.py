"""Training losses as small callables: each owns its t-distribution and weighting; the loop only reduces."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pdae.schedule import NoiseSchedule


class EpsLoss:
    """DDPM's simple loss: the mean of (eps - eps_theta(x_t, t))^2 per sample, t ~ U{0..T-1}.

    `l1` takes |eps - eps_theta| instead (the latent DPM's loss, as in Diff-AE). `min_snr` weights each
    sample's loss by NoiseSchedule.min_snr_weight(min_snr) at its t. Works for images and for flat codes alike.
    """

    def __init__(self, schedule: NoiseSchedule, class_conditional: bool = False, l1: bool = False,
                 min_snr: float | None = None):
        self.schedule = schedule
        self.class_conditional = class_conditional
        self.l1 = l1
        self.weight = None if min_snr is None else schedule.min_snr_weight(min_snr)

    def __call__(self, net: nn.Module, x0: Tensor, labels: Tensor) -> Tensor:
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.schedule.q_sample(x0, t, eps)
        error = net(x_t, t, self.condition(x0, labels))[:, : x0.shape[1]].float() - eps
        loss = (error.abs() if self.l1 else error.square()).flatten(1).mean(dim=1)
        return loss if self.weight is None else self.schedule.at(self.weight, t, loss) * loss

    def condition(self, x0: Tensor, labels: Tensor) -> Tensor | None:
        """What the network is conditioned on besides (x_t, t)."""
        return labels if self.class_conditional else None


class DiffAELoss(EpsLoss):
    """Diff-AE's loss: the simple loss of a UNet conditioned on the images' codes, net(x_t, t, x0) =
    eps_theta(x_t, t, E(x0)), with E trained through it."""

    def __init__(self, schedule: NoiseSchedule):
        super().__init__(schedule)

    def condition(self, x0: Tensor, labels: Tensor) -> Tensor:
        return x0


class PDAELoss:
    """PDAE's weighted loss (DESIGN.md §1): lambda_t || eps - (eps_theta + c_t G(x_t, E(x0), t)) ||^2.

    `class_conditional`: G is conditioned on the labels instead of E(x0).
    """

    def __init__(self, schedule: NoiseSchedule, gamma: float = 0.1, class_conditional: bool = False):
        self.schedule = schedule
        self.weight = schedule.loss_weight(gamma)
        self.class_conditional = class_conditional

    def __call__(self, net: nn.Module, x0: Tensor, labels: Tensor) -> Tensor:
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        eps_theta, shift = net(self.schedule.q_sample(x0, t, eps), t, labels if self.class_conditional else x0)
        eps_hat = eps_theta.float() + self.schedule.at(self.schedule.shift_coef, t, eps) * shift.float()
        return self.schedule.at(self.weight, t, eps).flatten() * (eps - eps_hat).square().mean(dim=(1, 2, 3))
