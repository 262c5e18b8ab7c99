"""Image datasets: MNIST IDX folders, image folders, Diff-AE/PDAE LMDB folders and .npz arrays.

Every dataset yields ``(image, label)``: a float32 tensor (channels, size, size) in [-1, 1] and an int
label (-1 when the dataset has no labels). ``open_dataset`` detects the format from the source path.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import operator
import os
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import lmdb
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from pdae.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
ACCEPTED = (
    "accepted sources: a folder of images (" + ", ".join(IMAGE_EXTS) + ", searched recursively), "
    "an MNIST IDX folder (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz], ...), "
    "an LMDB folder holding data.mdb (Diff-AE/PDAE layout), or an .npz file with an 'images' array"
)
_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 0x00000803
_IDX_LABELS_MAGIC = 0x00000801
_LUMA_601 = (0.299, 0.587, 0.114)
_ARRAY_CHANNELS = (1, 3, 4)
_PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
_LMDB_KEY = re.compile(rb"(?:(.+)-)?(\d+)")


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map model-range images [-1, 1] to [0, 1] for saving or metrics, clamping overshoot."""
    return ((x + 1) / 2).clamp(0, 1)


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] images to the [-1, 1] range the diffusion model works in."""
    return x * 2 - 1


@dataclass(frozen=True)
class _Spec:
    """The requested output format and options, shared by every source."""

    image_size: int
    channels: int
    split: str
    labels: str | Path | None
    skip_bad: bool


class _Source(Protocol):
    """What a format backend gives ImageDataset: images by index, optional labels, a description."""

    kind: str
    path: Path
    split: str | None
    labels: Sequence[int] | np.ndarray | None
    num_classes: int

    def __len__(self) -> int: ...

    def image(self, i: int) -> torch.Tensor: ...


class ImageDataset(Dataset):
    """(image, label) items from one source, with an optional length limit and random horizontal flips."""

    def __init__(self, source: _Source, *, limit: int | None = None, hflip: bool = False) -> None:
        self.source = source
        self.hflip = hflip
        self.length = len(source) if limit is None else min(limit, len(source))
        self.num_classes = source.num_classes

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = operator.index(i)
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for a dataset of {self.length} items")
        x = self.source.image(i)
        if self.hflip and torch.rand(()).item() < 0.5:
            x = x.flip(-1)
        labels = self.source.labels
        return x, -1 if labels is None else int(labels[i])

    def describe(self) -> str:
        """One line for logs: kind, path, item count, split and classes."""
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        split = self.source.split or "n/a"
        return f"{self.source.kind} dataset {self.source.path}: {self.length} images, split {split}{classes}"


def open_dataset(source: str | Path, *, image_size: int, channels: int, split: str = "train",
                 limit: int | None = None, hflip: bool = False, labels: str | Path | None = None,
                 skip_bad: bool = False) -> ImageDataset:
    """Open `source` in whichever supported format it is, as (image, label) items in [-1, 1]."""
    _check_options(image_size, channels, limit)
    spec = _Spec(image_size, channels, split, labels, skip_bad)
    return ImageDataset(_open_source(Path(source), spec), limit=limit, hflip=hflip)


def _check_options(image_size: int, channels: int, limit: int | None) -> None:
    """Reject option values no format can honour, before touching the disk."""
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels}")
    if image_size < 1:
        raise DataError(f"image_size must be positive, got {image_size}")
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")


def _open_source(path: Path, spec: _Spec) -> _Source:
    """Detect the format of `path` and build the matching source."""
    if not path.exists():
        raise DataError(f"dataset source {path} does not exist")
    if path.is_file():
        return _open_file(path, spec)
    if _is_idx_dir(path):
        return _IdxSource(_no_labels_option(path, spec), spec)
    root = _split_root(path, spec.split)
    if (root / "data.mdb").is_file():
        return _LmdbSource(_no_labels_option(root, spec), spec, split=spec.split if root != path else None)
    return _FolderSource(root, path, spec)


def _open_file(path: Path, spec: _Spec) -> _Source:
    """Open a single-file source: an .npz array file, or the data.mdb inside an LMDB folder."""
    if path.suffix.lower() == ".npz":
        return _NpzSource(_no_labels_option(path, spec), spec)
    if path.name == "data.mdb":
        return _LmdbSource(_no_labels_option(path.parent, spec), spec, split=None)
    raise DataError(f"{path} is not a supported dataset; {ACCEPTED}")


def _no_labels_option(path: Path, spec: _Spec) -> Path:
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


# ---------------------------------------------------------------- tensor conversion


def _uint8_to_model(a: np.ndarray) -> torch.Tensor:
    """Map a uint8 (C, H, W) array to float32 in [-1, 1], with 0 -> -1 and 255 -> 1 exactly."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).div_(127.5).sub_(1.0)


def _cover_size(h: int, w: int, size: int) -> tuple[int, int]:
    """(height, width) after scaling so that the shorter side equals `size`."""
    scale = size / min(h, w)
    return max(size, round(h * scale)), max(size, round(w * scale))


def _resize_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) so the shorter side is `size` (antialiased bilinear), then center-crop a square."""
    h, w = x.shape[-2:]
    nh, nw = _cover_size(h, w, size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[:, top:top + size, left:left + size]


def _match_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Give (C, H, W) the wanted channel count: alpha dropped, gray->RGB by repeat, RGB->gray by 601 luma."""
    x = x[:3]
    if x.shape[0] == channels:
        return x
    if channels == 3:
        return x.repeat(3, 1, 1)
    return (x * torch.tensor(_LUMA_601, dtype=x.dtype).view(3, 1, 1)).sum(0, keepdim=True)


def _pil_to_model(img: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Convert mode, resize the shorter side (bicubic) and center-crop a PIL image to a model tensor."""
    img = img.convert("L" if channels == 1 else "RGB")
    w, h = img.size
    nh, nw = _cover_size(h, w, size)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    a = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return _uint8_to_model(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))


def _load_pil(src: Path | io.BytesIO, name: str, spec: _Spec) -> torch.Tensor:
    """Decode one image file or buffer; any decoding failure becomes a DataError naming `name`."""
    try:
        with Image.open(src) as img:
            return _pil_to_model(img, spec.image_size, spec.channels)
    except _PIL_ERRORS as e:
        raise DataError(f"cannot read image {name}: {e}") from e


# ---------------------------------------------------------------- (a) MNIST IDX


class _IdxSource:
    """MNIST-format IDX files: uint8 images (N, H, W) held in memory; labels always present."""

    kind = "idx"

    def __init__(self, root: Path, spec: _Spec) -> None:
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
        x = _uint8_to_model(self.images[i][None])
        return _match_channels(_resize_tensor(x, self.spec.image_size), self.spec.channels)


def _is_idx_dir(path: Path) -> bool:
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


# ---------------------------------------------------------------- (b) image folders


class _FolderSource:
    """Image files under a folder (recursive, sorted), decoded with PIL on access."""

    kind = "folder"

    def __init__(self, root: Path, source_root: Path, spec: _Spec) -> None:
        files = _list_images(root)
        self.files = _drop_unreadable(files) if spec.skip_bad else files
        if not self.files:
            raise DataError(f"no readable images in {root}: all {len(files)} files failed to verify")
        self.labels, self.num_classes = _folder_labels(self.files, (root, source_root), spec.labels)
        self.path, self.spec = root, spec
        self.split = spec.split if root != source_root else None

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        return _load_pil(self.files[i], str(self.files[i]), self.spec)


def _list_images(root: Path) -> list[Path]:
    """All image files under `root`, recursively, sorted so that indices are deterministic."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not files:
        raise DataError(f"no images found in {root} (looked for {', '.join(IMAGE_EXTS)}); {ACCEPTED}")
    return files


def _verify_error(path: Path) -> str | None:
    """Why PIL cannot verify `path`, or None when it looks like a valid image."""
    try:
        with Image.open(path) as img:
            img.verify()
    except _PIL_ERRORS as e:
        return str(e) or type(e).__name__
    return None


def _drop_unreadable(files: list[Path]) -> list[Path]:
    """Keep the files PIL can verify, warning about each one dropped."""
    kept = []
    for path in files:
        error = _verify_error(path)
        if error is None:
            kept.append(path)
        else:
            warnings.warn(f"skipping unreadable image {path}: {error}", stacklevel=2)
    return kept


def _folder_labels(files: list[Path], roots: tuple[Path, Path],
                   labels: str | Path | None) -> tuple[list[int] | None, int]:
    """Labels for folder images: none, the class sub-folder names, or a `file,label` CSV."""
    if labels is None:
        return None, 0
    if labels == "folders":
        return _labels_from_folders(files, roots[0])
    csv_path = Path(labels)
    if not csv_path.is_file():
        raise DataError(f"labels must be 'folders' or a file,label CSV file; {csv_path} does not exist")
    return _labels_from_csv(files, roots, csv_path)


def _labels_from_folders(files: list[Path], root: Path) -> tuple[list[int], int]:
    """Class of each file = its sub-folder directly under `root`; classes are indexed in sorted order."""
    names = []
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            raise DataError(f"labels='folders' but {path} is not inside a class sub-folder of {root}")
        names.append(parts[0])
    return _class_indices(names, names)


def _class_indices(values: list[str], vocabulary: list[str]) -> tuple[list[int], int]:
    """Index each value by its position among the sorted distinct vocabulary entries."""
    index = {name: i for i, name in enumerate(sorted(set(vocabulary)))}
    return [index[v] for v in values], len(index)


def _read_label_csv(path: Path) -> dict[str, str]:
    """Read a CSV with header columns file,label into {relative posix path: label}."""
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"file", "label"} <= set(reader.fieldnames or ()):
                raise DataError(f"{path} must start with a header line with columns file,label")
            return {Path((row["file"] or "").strip()).as_posix(): (row["label"] or "").strip()
                    for row in reader}
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read labels CSV {path}: {e}") from e


def _labels_from_csv(files: list[Path], roots: tuple[Path, Path], path: Path) -> tuple[list[int], int]:
    """Labels from a CSV (file paths relative to the split or source root): ints kept, else class indices."""
    table = _read_label_csv(path)
    values, missing = [], []
    for file in files:
        keys = [file.relative_to(root).as_posix() for root in roots]
        value = next((table[k] for k in keys if k in table), None)
        values.append(value)
        if value is None:
            missing.append(file)
    if missing:
        raise DataError(f"{len(missing)} images have no row in {path}, e.g. {missing[0]}")
    if all(re.fullmatch(r"\d+", v) for v in table.values()):
        return [int(v) for v in values], max(int(v) for v in table.values()) + 1
    return _class_indices(values, list(table.values()))


# ---------------------------------------------------------------- (c) LMDB (Diff-AE / PDAE)


class _LmdbSource:
    """Encoded images in an LMDB folder (`data.mdb`), as written by Diff-AE and read by PDAE.

    Supported key layouts; the layout is detected from the keys, never assumed:

    * ``f"{resolution}-{str(index).zfill(width)}"``: Diff-AE ``dataset.py`` ``BaseLMDB`` and its
      ``data_resize_*.py`` writers; PDAE ``dataset/*.py`` reads the same keys. Examples: ``256-00042``
      (FFHQ, CelebA-HQ; width 5), ``256-0000042`` (LSUN bedroom/horse; width 7), ``None-0000042``
      (CelebA 64, written with resolution None). When several resolutions share one database, the
      smallest one >= image_size is read, else the largest.
    * ``str(index).zfill(width)``: Diff-AE ``LMDBImageWriter`` (``lmdb_writer.py``), e.g. ``0000042``.

    The item count is the integer stored under the ``length`` key (Diff-AE writes it; PDAE hard-codes
    it instead); without that key the keys of the chosen group are counted. Labels are not stored.
    The environment is opened lazily once per process and path, so DataLoader workers (fork or spawn)
    each get their own handle.
    """

    kind = "lmdb"
    labels = None
    num_classes = 0

    def __init__(self, path: Path, spec: _Spec, *, split: str | None) -> None:
        self.path, self.spec, self.split = path.resolve(), spec, split
        self.head, self.width, self.length = _scan_lmdb(self.path, spec.image_size)

    def __len__(self) -> int:
        return self.length

    def image(self, i: int) -> torch.Tensor:
        key = self.head + str(i).zfill(self.width).encode()
        with _process_env(self.path).begin(write=False) as txn:
            data = txn.get(key)
        if data is None:
            raise DataError(f"{self.path}: key {key.decode()!r} is missing ({self.length} items expected)")
        return _load_pil(io.BytesIO(data), f"{self.path} key {key.decode()!r}", self.spec)


_LMDB_ENVS: dict[Path, tuple[int, lmdb.Environment]] = {}


def _process_env(path: Path) -> lmdb.Environment:
    """This process's environment for `path`, opened on first use and shared, as lmdb allows one per path."""
    pid, env = _LMDB_ENVS.get(path, (None, None))
    if pid != os.getpid():
        if env is not None:
            env.close()  # inherited through fork: unusable here, and it blocks a fresh open of the path
        env = _open_env(path)
        _LMDB_ENVS[path] = (os.getpid(), env)
    return env


def _open_env(path: Path) -> lmdb.Environment:
    """Open an LMDB folder read-only and lock-free, as is safe for many reader processes."""
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False,
                         max_readers=126)
    except lmdb.Error as e:
        raise DataError(f"cannot open LMDB database {path}: {e}") from e


def _scan_lmdb(path: Path, image_size: int) -> tuple[bytes, int, int]:
    """Find the key group to read (key head, zero-fill width) and the item count of an LMDB folder."""
    with _process_env(path).begin(write=False) as txn:
        groups = _key_groups(txn)
        if not groups:
            raise DataError(f"{path}: no image keys like '256-00000' or '0000000' in the LMDB database")
        head = _pick_group(groups, image_size)
        return head, groups[head], _lmdb_length(txn, head, path)


def _key_groups(txn: lmdb.Transaction) -> dict[bytes, int]:
    """Map each key head (b"256-", b"None-", b"" if bare digits) to its zero-fill width, one seek a group."""
    groups: dict[bytes, int] = {}
    cursor = txn.cursor()
    found = cursor.first()
    while found:
        match = _LMDB_KEY.fullmatch(cursor.key())
        if match is None:
            found = cursor.next()
            continue
        head = b"" if match.group(1) is None else match.group(1) + b"-"
        groups.setdefault(head, len(match.group(2)))
        found = cursor.set_range(head[:-1] + b"." if head else b":")
    return groups


def _pick_group(groups: dict[bytes, int], image_size: int) -> bytes:
    """Choose the key group to read: the smallest stored resolution >= image_size, else the largest."""
    def rank(head: bytes) -> tuple[bool, int]:
        res = int(head[:-1]) if head[:-1].isdigit() else 0
        return res < image_size, res if res >= image_size else -res
    return min(groups, key=rank)


def _lmdb_length(txn: lmdb.Transaction, head: bytes, path: Path) -> int:
    """The item count from the `length` key, or the number of keys in the group when it is absent."""
    raw = txn.get(b"length")
    if raw is None:
        return _count_group(txn, head)
    try:
        return int(raw.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: the 'length' key holds {raw[:32]!r}, not an integer") from e


def _count_group(txn: lmdb.Transaction, head: bytes) -> int:
    """Count the keys `<head><digits>`, walking them in key order from the first one."""
    pattern = re.compile(re.escape(head) + rb"\d+")
    cursor = txn.cursor()
    if not cursor.set_range(head):
        return 0
    count = 0
    for key in cursor.iternext(keys=True, values=False):
        if not pattern.fullmatch(key):
            break
        count += 1
    return count


# ---------------------------------------------------------------- (d) .npz arrays


class _NpzSource:
    """Images from an .npz array file, (N,H,W), (N,H,W,C) or (N,C,H,W), uint8 or float in [0, 1]."""

    kind = "npz"
    split = None

    def __init__(self, path: Path, spec: _Spec) -> None:
        images, labels = _load_npz(path)
        self.images = _as_nchw(images, path)
        _check_pixels(self.images, path)
        self.labels = None if labels is None else _check_npz_labels(labels, len(self.images), path)
        self.num_classes = 0 if self.labels is None or not len(self.labels) else int(self.labels.max()) + 1
        self.path, self.spec = path, spec

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        a = self.images[i]
        x = _uint8_to_model(a) if a.dtype == np.uint8 else torch.from_numpy(np.array(a, np.float32)) * 2 - 1
        return _match_channels(_resize_tensor(x, self.spec.image_size), self.spec.channels)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The `images` array (else the first non-label array) and the optional `labels` array of an .npz."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = [n for n in npz.files if n != "labels"]
            if not names:
                raise DataError(f"{path} holds no image array")
            images = npz["images" if "images" in names else names[0]]
            return images, npz["labels"] if "labels" in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from e


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
    """Require uint8 pixels, or floats within [0, 1], so the [-1, 1] mapping is right."""
    if a.dtype == np.uint8:
        return
    if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"{path}: images must be uint8 in [0, 255] or float in [0, 1], got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 1):
        raise DataError(f"{path}: float images must lie in [0, 1], found [{a.min():.3g}, {a.max():.3g}]")


def _check_npz_labels(labels: np.ndarray, count: int, path: Path) -> np.ndarray:
    """Require one non-negative integer label per image."""
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels must be {count} integers, got {labels.dtype} {labels.shape}")
    if count and labels.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, found {labels.min()}")
    return labels


def collate(dataset: Dataset, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the items at `indices` into (images, labels), loading them in this process."""
    images, labels = zip(*(dataset[i] for i in indices))
    return torch.stack(images), torch.as_tensor(labels)


def iterate_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches in dataset order, for encoding and evaluation."""
    for start in range(0, len(dataset), batch_size):
        yield collate(dataset, range(start, min(start + batch_size, len(dataset))))
