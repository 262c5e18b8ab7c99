"""What a dataset source may be, what every source format receives (the requested output) and what it
gives (images by index, labels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ACCEPTED = (
    "accepted sources: a folder of images (" + ", ".join(IMAGE_EXTS) + ", searched recursively), "
    "an MNIST IDX folder (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz], ...), "
    "an LMDB folder holding data.mdb (Diff-AE/PDAE layout), an .npz file with an 'images' array, "
    "or an .npy image array"
)


@dataclass(frozen=True)
class Spec:
    """The requested output format and options, shared by every source."""

    image_size: int
    channels: int
    split: str
    labels: str | Path | None
    skip_bad: bool
    label_column: str | None = None


class Source(Protocol):
    """What a format backend gives ImageDataset: images by index, optional labels, a description."""

    kind: str
    path: Path
    split: str | None
    labels: Sequence[int] | np.ndarray | None
    num_classes: int
    columns: dict[str, np.ndarray] | None  # every column of a label CSV per image; None without one

    def __len__(self) -> int: ...

    def image(self, i: int) -> torch.Tensor: ...
