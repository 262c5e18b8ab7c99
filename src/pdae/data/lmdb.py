"""Diff-AE / PDAE LMDB folders: encoded images under keys like ``256-00042``, opened once per process."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import lmdb
import torch

from pdae.data.convert import load_pil
from pdae.data.source import Spec
from pdae.errors import DataError

_LMDB_KEY = re.compile(rb"(?:(.+)-)?(\d+)")


class LmdbSource:
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
    columns = None

    def __init__(self, path: Path, spec: Spec, *, split: str | None) -> None:
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
        return load_pil(io.BytesIO(data), f"{self.path} key {key.decode()!r}", self.spec)


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
