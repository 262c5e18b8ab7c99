"""Image folders: files found recursively and decoded with PIL on access; labels from class sub-folders
or from a CSV with a file column and any number of label columns."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pdae.data.convert import PIL_ERRORS, load_pil
from pdae.data.source import ACCEPTED, IMAGE_EXTS, Spec
from pdae.errors import DataError
from pdae.progress import console

# (class label per image or None, number of classes, every label CSV column per image or None)
Labels = tuple[list[int] | None, int, dict[str, np.ndarray] | None]


class FolderSource:
    """Image files under a folder (recursive, sorted), decoded with PIL on access."""

    kind = "folder"

    def __init__(self, root: Path, source_root: Path, spec: Spec) -> None:
        files = _list_images(root)
        self.files = _drop_unreadable(files, root) if spec.skip_bad else files
        if not self.files:
            raise DataError(f"no readable images in {root}: all {len(files)} files failed to verify")
        self.labels, self.num_classes, self.columns = _folder_labels(self.files, (root, source_root), spec)
        self.path, self.spec = root, spec
        self.split = spec.split if root != source_root else None

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        return load_pil(self.files[i], str(self.files[i]), self.spec)


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
    except PIL_ERRORS as e:
        return str(e) or type(e).__name__
    return None


def _drop_unreadable(files: list[Path], root: Path) -> list[Path]:
    """Keep the files PIL can verify; report each one dropped on a line of its own, then their count."""
    kept = []
    for path in files:
        error = _verify_error(path)
        if error is None:
            kept.append(path)
        else:
            _say(f"skipping unreadable image {path}: {error}")
    if len(kept) < len(files):
        _say(f"skipped {len(files) - len(kept)} of {len(files)} images in {root}")
    return kept


def _say(line: str) -> None:
    """One plain line on pdae's console (quiet on ranks > 0): no markup, highlighting or wrapping."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _folder_labels(files: list[Path], roots: tuple[Path, Path], spec: Spec) -> Labels:
    """Labels for folder images: none, the class sub-folder names, or the columns of a label CSV."""
    if spec.labels is None:
        return None, 0, None
    if spec.labels == "folders":
        if spec.label_column is not None:
            raise DataError(f"label_column={spec.label_column!r} picks a column of a label CSV; "
                            "labels='folders' has none")
        return *_labels_from_folders(files, roots[0]), None
    csv_path = Path(str(spec.labels).replace("{split}", spec.split))
    if not csv_path.is_file():
        raise DataError(f"labels must be 'folders' or a CSV file with a header line file,<columns>; "
                        f"{csv_path} does not exist")
    return _labels_from_csv(files, roots, csv_path, spec.label_column)


def _labels_from_folders(files: list[Path], root: Path) -> tuple[list[int], int]:
    """Class of each file = its sub-folder directly under `root`; classes are indexed in sorted order."""
    names = []
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            raise DataError(f"labels='folders' but {path} is not inside a class sub-folder of {root}")
        names.append(parts[0])
    index = {name: i for i, name in enumerate(sorted(set(names)))}
    return [index[name] for name in names], len(index)


def _read_label_csv(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """A CSV whose header is file,<columns> (or CelebA's attribute file): the column names and
    {relative posix path: that row's values}.

    Strict, because a shifted or repeated row would silently mislabel images: every row has one value per
    column, and no file appears twice.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not a name
            lines = [(n, [v.strip() for v in row]) for n, row in enumerate(csv.reader(fh), 1) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read labels CSV {path}: {e}") from e
    lines = _from_celeba_layout(lines)
    header = lines[0][1] if lines else []
    if "file" not in header or len(set(header)) < len(header) or len(header) < 2:
        raise DataError(f"{path} must start with a header line file,<columns> with distinct names, "
                        f"got {','.join(header)!r}")
    at = header.index("file")
    rows: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, values in lines[1:]:
        if len(values) != len(header):
            raise DataError(f"{path} line {number}: {len(values)} values for the {len(header)} columns "
                            f"{','.join(header)}")
        key = Path(values.pop(at)).as_posix()
        if key in rows:
            raise DataError(f"{path} line {number}: file {key} appears twice (first on line "
                            f"{first_line[key]})")
        rows[key], first_line[key] = values, number
    return header[:at] + header[at + 1:], rows


def label_csv_columns(labels: str | Path, split: str) -> list[str]:
    """The label columns of a labels CSV (or CelebA attribute file); '{split}' in the path becomes `split`."""
    path = Path(str(labels).replace("{split}", split))
    if not path.is_file():
        raise DataError(f"no labels file at {path}")
    return _read_label_csv(path)[0]


def _from_celeba_layout(lines: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    """CelebA's list_attr_celeba.txt and CelebAMask-HQ-attribute-anno.txt as released (a line with the
    image count, a line of attribute names, then 'file value...' rows split by spaces) as CSV lines."""
    if len(lines) < 2 or len(lines[0][1]) != 1 or not lines[0][1][0].isdigit():
        return lines
    names = " ".join(lines[1][1]).split()
    return [(lines[1][0], ["file", *names])] + [(n, " ".join(row).split()) for n, row in lines[2:]]


def _labels_from_csv(files: list[Path], roots: tuple[Path, Path], path: Path,
                     label_column: str | None) -> Labels:
    """Every column of a label CSV per image (paths relative to the split or the source root), and the
    class labels from `label_column` (may be omitted when the CSV has a single column besides file)."""
    names, rows = _read_label_csv(path)
    if label_column is None and len(names) > 1:
        raise DataError(f"{path} has several label columns ({', '.join(names)}): pass a label column to "
                        "say which one gives the class label")
    label_column = names[0] if label_column is None else label_column
    if label_column not in names:
        raise DataError(f"{path} has no column {label_column!r}; its columns: {', '.join(names)}")
    whole = {name: _typed([values[i] for values in rows.values()]) for i, name in enumerate(names)}
    picked = _row_of_each(files, roots, list(rows), path)
    columns = {name: column[picked] for name, column in whole.items()}
    return *_class_labels(columns[label_column], whole[label_column]), columns


def _row_of_each(files: list[Path], roots: tuple[Path, Path], keys: list[str], path: Path) -> np.ndarray:
    """The CSV row of each file: the row whose path is the file's, relative to the split or source root."""
    order = {key: i for i, key in enumerate(keys)}
    rows = [next((order[k] for k in (file.relative_to(root).as_posix() for root in roots) if k in order), -1)
            for file in files]
    missing = [file for file, row in zip(files, rows) if row < 0]
    if missing:
        raise DataError(f"{len(missing)} images have no row in {path}, e.g. {missing[0]}")
    return np.array(rows, dtype=np.int64)


def _typed(values: list[str]) -> np.ndarray:
    """A CSV column as int64 when every value is an integer, else float64 when every value is a number,
    else str."""
    strings = np.array(values, dtype=str)
    for dtype in (np.int64, np.float64):
        try:
            return strings.astype(dtype)
        except (ValueError, OverflowError):
            continue
    return strings


def _class_labels(values: np.ndarray, vocabulary: np.ndarray) -> tuple[list[int], int]:
    """Class indices: non-negative integers are kept; other values (-1/1 attributes, names, fractions) are
    indexed by their place among the column's sorted distinct values. `vocabulary` is the whole CSV
    column, so that the indices do not depend on which images are opened."""
    if vocabulary.dtype.kind == "i" and vocabulary.min() >= 0:
        return values.tolist(), int(vocabulary.max()) + 1
    classes = np.unique(vocabulary)
    return np.searchsorted(classes, values).tolist(), len(classes)
