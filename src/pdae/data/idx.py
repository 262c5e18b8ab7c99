"""MNIST IDX folders: train-/t10k- image and label files, gzipped or not, held in memory."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from pdae.data.convert import match_channels, resize_tensor, uint8_to_model
from pdae.data.source import Spec
from pdae.errors import DataError

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801


class IdxSource:
    """MNIST-format IDX files: uint8 images (N, H, W) held in memory; labels always present."""

    kind = "idx"
    columns = None

    def __init__(self, root: Path, spec: Spec) -> None:
        if spec.split not in _IDX_STEMS:
            raise DataError(f"split must be 'train' or 'test' for IDX data in {root}, got {spec.split!r}")
        image_stem, label_stem = _IDX_STEMS[spec.split]
        self.images = _read_idx(_idx_file(root, image_stem), _IDX_IMAGES_MAGIC, 3)
        self.labels = _read_idx(_idx_file(root, label_stem), _IDX_LABELS_MAGIC, 1)
        if len(self.images) != len(self.labels):
            raise DataError(f"{root}: {len(self.images)} images but {len(self.labels)} labels")
        self.path, self.split, self.spec = root, spec.split, spec
        self.num_classes = int(self.labels.max()) + 1 if len(self.labels) else 0

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        x = uint8_to_model(self.images[i][None])
        return match_channels(resize_tensor(x, self.spec.image_size), self.spec.channels)


def is_idx_dir(path: Path) -> bool:
    """True when the folder holds any MNIST-style IDX file, gzipped or not."""
    stems = [stem for pair in _IDX_STEMS.values() for stem in pair]
    return any((path / (stem + ext)).is_file() for stem in stems for ext in ("", ".gz"))


def _idx_file(root: Path, stem: str) -> Path:
    """Locate an IDX file by stem, preferring the gzipped name and accepting the plain one."""
    for candidate in (root / (stem + ".gz"), root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root / (stem + '.gz')} does not exist (nor {stem}); needed for this IDX split")


def _read_bytes(path: Path) -> bytes:
    """Read a file, gunzipping `.gz`; a broken gzip stream becomes a DataError naming the file."""
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}") from e


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse a big-endian IDX file with a uint8 payload, checking its magic number and its size."""
    raw = _read_bytes(path)
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path} has IDX magic 0x{found:08x}, expected 0x{magic:08x}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise DataError(f"{path} has {len(raw)} bytes, expected {expected} for shape {shape} (truncated?)")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)
