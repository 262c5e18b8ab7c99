"""Array files: an .npz (its 'images' array, optional 'labels') or an .npy, memory-mapped where possible."""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from pdae.data.convert import match_channels, resize_tensor, uint8_to_model
from pdae.data.source import Spec
from pdae.errors import DataError

_ARRAY_CHANNELS = (1, 3, 4)
_CHECK_BYTES = 1 << 26  # pixel checks read at most 64 MiB of a (memory-mapped) array at a time
_ZIP_LOCAL_HEADER = 30  # fixed part of a zip local file header; the member's name and extra field follow


class NpzSource:
    """Images from an .npz or .npy array, (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or float in [0, 1].

    The array is memory-mapped when the file allows it (an .npy, or an .npz written by np.savez, whose
    members are stored uncompressed), so that a large file is read one image at a time; the members of
    a compressed .npz (np.savez_compressed) are loaded whole.
    """

    split = None
    columns = None

    def __init__(self, path: Path, spec: Spec) -> None:
        images, labels = _read_arrays(path)
        self.images = _as_nchw(images, path)
        _check_pixels(self.images, path)
        self.labels = None if labels is None else _check_npz_labels(labels, len(self.images), path)
        self.num_classes = 0 if self.labels is None or not len(self.labels) else int(self.labels.max()) + 1
        self.path, self.spec, self.kind = path, spec, path.suffix.lower().lstrip(".")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        a = self.images[i]
        x = uint8_to_model(a) if a.dtype == np.uint8 else torch.from_numpy(np.array(a, np.float32)) * 2 - 1
        return match_channels(resize_tensor(x, self.spec.image_size), self.spec.channels)

    def __getstate__(self) -> dict:
        """Pickle (for spawned DataLoader workers) without the pixels of a memory map: they map it again."""
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap):
            state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.images is None:
            self.images = _as_nchw(_read_arrays(self.path)[0], self.path)


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The images (an .npy, or the .npz's `images` array, else its first non-label one) and the labels."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False), None
        with np.load(path, allow_pickle=False) as npz:
            names = [n for n in npz.files if n != "labels"]
            if not names:
                raise DataError(f"{path} holds no image array")
            name = "images" if "images" in names else names[0]
            member = name + ".npy" if name + ".npy" in npz.zip.namelist() else name
            images = _map_member(path, npz.zip.getinfo(member))
            return npz[name] if images is None else images, npz["labels"] if "labels" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from e


def _map_member(path: Path, info: zipfile.ZipInfo) -> np.memmap | None:
    """Memory-map an uncompressed .npy member of a zip file where it lies; None when it cannot be."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(_ZIP_LOCAL_HEADER)
        if len(local) < _ZIP_LOCAL_HEADER or local[:4] != b"PK\x03\x04":
            return None
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + _ZIP_LOCAL_HEADER + name_length + extra_length)
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            return None
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(fh)
        offset = fh.tell()
    if dtype.hasobject or not math.prod(shape):
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran_order else "C")


def _as_nchw(a: np.ndarray, path: Path) -> np.ndarray:
    """View an image array as (N, C, H, W), accepting (N, H, W), (N, H, W, C) and (N, C, H, W)."""
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[1] in _ARRAY_CHANNELS and a.shape[3] not in _ARRAY_CHANNELS:
        return a
    if a.ndim == 4 and a.shape[3] in _ARRAY_CHANNELS:
        return a.transpose(0, 3, 1, 2)
    raise DataError(f"{path}: images have shape {a.shape}; expected (N,H,W), (N,H,W,C) or (N,C,H,W)")


def _check_pixels(a: np.ndarray, path: Path) -> None:
    """Require uint8 pixels, or finite floats within [0, 1], so the [-1, 1] mapping is right.

    Floats are read a chunk of images at a time, so that a memory-mapped array is never loaded whole.
    """
    if a.dtype == np.uint8:
        return
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{path}: images must be uint8 in [0, 255] or float in [0, 1], got {a.dtype}")
    if not a.size:
        return
    low, high = math.inf, -math.inf
    chunk = max(1, _CHECK_BYTES // a[0].nbytes)
    for start in range(0, len(a), chunk):
        block = np.asarray(a[start:start + chunk])
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            raise DataError(f"{path}: images must be finite; image {start + int(np.argmin(finite))} "
                            "holds NaN or inf")
        low, high = min(low, float(block.min())), max(high, float(block.max()))
    if low < 0 or high > 1:
        raise DataError(f"{path}: float images must lie in [0, 1], found [{low:.3g}, {high:.3g}]")


def _check_npz_labels(labels: np.ndarray, count: int, path: Path) -> np.ndarray:
    """Require one non-negative integer label per image."""
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be {count} integers, got {labels.dtype} {labels.shape}")
    if count and labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {labels.min()}")
    return labels
