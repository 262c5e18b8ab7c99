"""Interpolation between two images through PDAE's two codes (paper §4.3).

The semantic codes z are mixed linearly. The inferred x_T's are Gaussian-like, so they are mixed by
spherical interpolation, which keeps their norm where a straight line would shrink it. The mixed z is
used in one of two ways: decode with G(x_t, lerp(z_1, z_2), t) ("lerp"), or mix G's outputs at every
step, (1 - a) G(x_t, z_1, t) + a G(x_t, z_2, t) ("trajectory"), with the frozen DPM run once per step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pdae.autoencode import StepCounts, decode, encode, infer_x_T
from pdae.model import PDAE
from pdae.sampling import mixed_shift_eps, sample_ddim

MODES = ("lerp", "trajectory")


def lerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """(1 - w) a + w b for each weight w: items a and b of any shape, one output row per weight."""
    w = weights.to(a).view(-1, *[1] * a.dim())
    return (1 - w) * a + w * b


def slerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """Spherical interpolation of items a and b, one output row per weight; lerp if they are parallel.

    sin((1 - w) theta) / sin(theta) a + sin(w theta) / sin(theta) b, theta the angle between a and b.
    """
    flat_a, flat_b = a.reshape(-1).double(), b.reshape(-1).double()
    theta = torch.arccos((flat_a @ flat_b / (flat_a.norm() * flat_b.norm())).clamp(-1, 1))
    if torch.sin(theta) < 1e-6:
        return lerp(a, b, weights)
    w = weights.double().view(-1, 1)
    rows = (torch.sin((1 - w) * theta) * flat_a + torch.sin(w * theta) * flat_b) / torch.sin(theta)
    return rows.to(a.dtype).view(len(weights), *a.shape)


@torch.no_grad()
def interpolate(model: PDAE, x_a: Tensor, x_b: Tensor, frames: int, steps: StepCounts,
                mode: str = "lerp") -> Tensor:
    """`frames` images from x_a to x_b (single images in [-1, 1]); the end frames are their reconstructions.

    Both images are encoded and inverted to x_T (inferred, so the ends reconstruct the inputs); z is
    lerped, x_T slerped; `mode` picks how the mixed z decodes (see the module's docstring).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    x0 = torch.stack([x_a, x_b]).to(model.device)
    z = encode(model, x0)
    x_T = infer_x_T(model, x0, z, steps.inversion, steps.clip_x0, steps.refine)
    weights = torch.linspace(0, 1, frames, device=model.device)
    x_T_frames = slerp(x_T[0], x_T[1], weights)
    if mode == "lerp":
        return decode(model, lerp(z[0], z[1], weights), x_T_frames, steps)
    ends = [z[i].expand(frames, -1) for i in (0, 1)]
    eps_fn = mixed_shift_eps(model, ends, [1 - weights, weights])
    return sample_ddim(eps_fn, x_T_frames, model.schedule, model.schedule.timesteps(steps.decoding),
                       eta=steps.eta, clip_x0=steps.clip_x0)


def smoothness(frames: Tensor) -> float:
    """Mean L2 distance between consecutive frames over the distance between the end frames.

    A path that moves at constant speed along a straight line scores 1 / (frames - 1); detours and jumps
    score higher.
    """
    flat = frames.flatten(1).double()
    steps = (flat[1:] - flat[:-1]).norm(dim=1)
    return float(steps.mean() / (flat[-1] - flat[0]).norm())
