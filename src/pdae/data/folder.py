"""Image folders: files found recursively and decoded with PIL on access; labels from class sub-folders
or from a file,label CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import torch
from PIL import Image

from pdae.data.convert import PIL_ERRORS, load_pil
from pdae.data.source import ACCEPTED, IMAGE_EXTS, Spec
from pdae.errors import DataError
from pdae.progress import console


class FolderSource:
    """Image files under a folder (recursive, sorted), decoded with PIL on access."""

    kind = "folder"

    def __init__(self, root: Path, source_root: Path, spec: Spec) -> None:
        files = _list_images(root)
        self.files = _drop_unreadable(files, root) if spec.skip_bad else files
        if not self.files:
            raise DataError(f"no readable images in {root}: all {len(files)} files failed to verify")
        self.labels, self.num_classes = _folder_labels(self.files, (root, source_root), spec.labels)
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
