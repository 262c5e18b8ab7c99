"""The dataset over any source: format detection from the path, item range, labels and seeded flips."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pdae.data.folder import FolderSource
from pdae.data.idx import IdxSource, is_idx_dir
from pdae.data.lmdb import LmdbSource
from pdae.data.npz import NpzSource
from pdae.data.source import ACCEPTED, Source, Spec
from pdae.errors import DataError

ItemKey = int | tuple[int, int, int]  # an index, or (index, seed, epoch) that seeds its augmentation


class ImageDataset(Dataset):
    """(image, label) items from one source, with an optional length limit and horizontal flips; every
    label column (of a labels CSV) through `label_table`.

    A flip is drawn from (seed, epoch, index) of the item's key, never from a global RNG, so that an
    item looks the same in any process and after any resume; a plain index draws with seed 0, epoch 0.
    """

    def __init__(self, source: Source, *, limit: int | None = None, hflip: bool = False) -> None:
        self.source = source
        self.hflip = hflip
        self.length = len(source) if limit is None else min(limit, len(source))
        self.num_classes = source.num_classes
        self._items = _subset(source, self.length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, int]:
        i, seed, epoch = key if isinstance(key, tuple) else (key, 0, 0)
        i = operator.index(i)
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for a dataset of {self.length} items")
        x = self.source.image(self._items[i])
        if self.hflip and _coin(seed, epoch, i):
            x = x.flip(-1)
        labels = self.source.labels
        return x, -1 if labels is None else int(labels[self._items[i]])

    def class_labels(self) -> np.ndarray | None:
        """Every item's class label in dataset order, or None for an unlabelled source."""
        labels = self.source.labels
        return None if labels is None else np.asarray(labels)[self._items]

    def label_table(self, columns: str | Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Label columns by name, each with one value per item in dataset order, for attribute work.

        A labels CSV gives all its columns but file: int64 where every value is an integer (-1/1
        attributes stay -1/1), float64 where every value is a number, else str. A source with labels
        but no CSV gives one column, 'label'; an unlabelled one none. `columns` picks one or some, in
        that order (default: all); an unknown name is a DataError listing the known ones.
        """
        table = self.source.columns
        if table is None:
            table = {} if self.source.labels is None else {"label": np.asarray(self.source.labels)}
        names = list(table) if columns is None else [columns] if isinstance(columns, str) else list(columns)
        unknown = [name for name in names if name not in table]
        if unknown:
            raise DataError(f"no label column {unknown[0]!r} in {self.source.path}; its columns: "
                            f"{', '.join(table) or 'none (it has no labels)'}")
        return {name: np.asarray(table[name])[self._items] for name in names}

    def describe(self) -> str:
        """One line for logs: kind, path, item count, split and classes."""
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        split = self.source.split or "n/a"
        return f"{self.source.kind} dataset {self.source.path}: {self.length} images, split {split}{classes}"


def _subset(source: Source, length: int) -> np.ndarray:
    """The source indices of a dataset of `length` items: the first ones in the source's own order (an
    IDX, .npz or LMDB file keeps the order its makers gave it), but for a folder a fixed spread-out sample,
    in listing order: sorted file names can group labels (UTKFace's begin with the age, class folders
    sort by class), so its first N would be N images of one kind."""
    if source.kind != "folder" or length == len(source):
        return np.arange(length)
    return np.sort(np.random.default_rng(0).permutation(len(source))[:length])


def _coin(seed: int, epoch: int, index: int) -> bool:
    """A fair coin toss that depends on (seed, epoch, index) only."""
    return bool(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0] & 1)


def open_dataset(source: str | Path, *, image_size: int, channels: int, split: str = "train",
                 limit: int | None = None, hflip: bool = False, labels: str | Path | None = None,
                 label_column: str | None = None, skip_bad: bool = False) -> ImageDataset:
    """Open `source` in whichever supported format it is, as (image, label) items in [-1, 1].

    `labels` applies to image folders: 'folders' (class sub-folders) or a CSV whose header is
    file,<columns>, with file paths relative to the split folder or to `source`; '{split}' in its path
    becomes `split` (train.csv, test.csv). `label_column` names the CSV column that gives the item's
    class label; it may be omitted when the CSV has one column besides file. Every column stays
    available through `ImageDataset.label_table`.
    """
    spec = Spec(image_size, channels, split, labels, skip_bad, label_column)
    _check_options(spec, limit)
    return ImageDataset(_open_source(Path(source), spec), limit=limit, hflip=hflip)


def _check_options(spec: Spec, limit: int | None) -> None:
    """Reject option values no format can honour, before touching the disk."""
    if spec.channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {spec.channels}")
    if spec.image_size < 1:
        raise DataError(f"image_size must be positive, got {spec.image_size}")
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    if spec.label_column is not None and spec.labels is None:
        raise DataError(f"label column {spec.label_column!r} given without labels: it picks a column of "
                        "a labels CSV")


def _open_source(path: Path, spec: Spec) -> Source:
    """Detect the format of `path` and build the matching source."""
    if not path.exists():
        raise DataError(f"dataset source {path} does not exist")
    if path.is_file():
        return _open_file(path, spec)
    if is_idx_dir(path):
        return IdxSource(_no_labels_option(path, spec), spec)
    root = _split_root(path, spec.split)
    if (root / "data.mdb").is_file():
        return LmdbSource(_no_labels_option(root, spec), spec, split=spec.split if root != path else None)
    return FolderSource(root, path, spec)


def _open_file(path: Path, spec: Spec) -> Source:
    """Open a single-file source: an .npz or .npy array file, or the data.mdb inside an LMDB folder."""
    if path.suffix.lower() in (".npz", ".npy"):
        return NpzSource(_no_labels_option(path, spec), spec)
    if path.name == "data.mdb":
        return LmdbSource(_no_labels_option(path.parent, spec), spec, split=None)
    raise DataError(f"{path} is not a supported dataset; {ACCEPTED}")


def _no_labels_option(path: Path, spec: Spec) -> Path:
    """Refuse `labels=` for formats that carry their own labels (or none), so it is never silently ignored."""
    if spec.labels is not None:
        raise DataError(f"labels={str(spec.labels)!r} applies only to image folders, not to {path}")
    return path


def _split_root(path: Path, split: str) -> Path:
    """Use the `split` sub-folder when the folder is divided into train/ and test/, else the folder itself."""
    if not ((path / "train").is_dir() and (path / "test").is_dir()):
        return path
    if not (path / split).is_dir():
        raise DataError(f"{path} has train/ and test/ sub-folders but no {split}/ for split {split!r}")
    return path / split
