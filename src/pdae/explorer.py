"""What the browser explorer (pdae.app) does, without the browser: one object per served model.

Every operation takes and returns images as (C, H, W) tensors in [-1, 1] on the CPU. The inversion of an
image (its z and inferred x_T) is computed once and cached by the image's bytes, so moving an attribute
slider only re-decodes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from pdae.attributes import AttributeDirections
from pdae.autoencode import StepCounts, decode, decode_from_noise, encode, infer_x_T
from pdae.data import load_image
from pdae.diagnostics import one_step_denoise
from pdae.errors import DataError
from pdae.interpolation import interpolate
from pdae.latent import LatentDPM, sample_images
from pdae.model import PDAE

MAX_UPLOAD_BYTES = 50 * 2**20
CACHED_IMAGES = 32


class Explorer:
    """A PDAE with what the explorer offers on it: reconstructions, attribute edits, interpolation,
    latent-DPM samples and one-step denoising."""

    def __init__(self, model: PDAE, steps: StepCounts, directions: AttributeDirections | None = None,
                 latent: LatentDPM | None = None, examples: Dataset | None = None, random_decodings: int = 3):
        self.model, self.steps, self.directions, self.latent = model, steps, directions, latent
        self.examples, self.random_decodings = examples, random_decodings
        self._codes: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    @property
    def attributes(self) -> list[str]:
        return list(self.directions.names) if self.directions else []

    def image_from_file(self, path: Path) -> Tensor:
        """An uploaded file at the model's size and channels (resized and center-cropped), or a DataError
        that says what is wrong with it."""
        path = Path(path)
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise DataError(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; the explorer takes images "
                            f"up to {MAX_UPLOAD_BYTES // 2**20} MB")
        return load_image(path, self.model.image_size, self.model.in_channels)

    def example(self, index: int) -> Tensor:
        if self.examples is None or not 0 <= index < len(self.examples):
            count = 0 if self.examples is None else len(self.examples)
            raise DataError(f"there is no example {index}: the explorer holds {count} example images")
        return self.examples[index][0]

    def codes(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """(z, inferred x_T) of one image, computed once per distinct image."""
        key = hashlib.sha256(x0.float().numpy().tobytes()).hexdigest()
        if key not in self._codes:
            batch = x0[None].to(self.model.device)
            z = encode(self.model, batch)
            steps = self.steps
            self._codes[key] = z, infer_x_T(self.model, batch, z, steps.inversion, steps.clip_x0, steps.refine)
            if len(self._codes) > CACHED_IMAGES:
                self._codes.popitem(last=False)
        self._codes.move_to_end(key)
        return self._codes[key]

    def reconstructions(self, x0: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
        """The decoding of the inferred x_T, and `random_decodings` decodings of z from random x_T."""
        z, x_T = self.codes(x0)
        inferred = decode(self.model, z, x_T, self.steps)[0].cpu()
        count = self.random_decodings
        random = decode_from_noise(self.model, z.expand(count, -1), range(seed, seed + count), self.steps)
        return inferred, random.cpu()

    def edit(self, x0: Tensor, scales: dict[str, float]) -> Tensor:
        """The image decoded from its inferred x_T with z moved along each attribute's direction."""
        z, x_T = self.codes(x0)
        for name, scale in scales.items():
            if scale and self.directions is not None:
                z = self.directions.edit(z, name, scale)
        return decode(self.model, z, x_T, self.steps)[0].cpu()

    def interpolation(self, a: Tensor, b: Tensor, frames: int, mode: str) -> Tensor:
        return interpolate(self.model, a, b, frames, self.steps, mode).cpu()

    def samples(self, count: int, seed: int) -> Tensor:
        if self.latent is None:
            raise DataError("this run has no latent DPM to sample codes from: train one with pdae latent fit")
        return sample_images(self.model, self.latent, range(seed, seed + count), self.steps).cpu()

    def one_step(self, x0: Tensor, t: int, seed: int = 0) -> Tensor:
        """x_t, the DPM's one-step x0 prediction and PDAE's, as three images."""
        rows = one_step_denoise(self.model, x0[None], [t], torch.Generator().manual_seed(seed))
        return torch.cat(rows)
