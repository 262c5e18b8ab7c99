"""Checkpoints without pickle: safetensors weights with the config JSON in their metadata.

A weights file alone rebuilds its model (the config travels in the metadata). Training state
(optimizer moments, counters) is a plain tensor dict read back with `torch.load(weights_only=True)`.
Every write goes to a temporary file first and is then renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor, nn

from pdae.errors import CheckpointError

WEIGHTS_NAME = "ema.safetensors"


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) on a temporary file next to `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private, and some writers recreate the file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_weights(path: Path, state: dict[str, Tensor], config: dict,
                 dtype: torch.dtype | None = None, progress: dict | None = None) -> None:
    """Write a state dict (optionally cast, e.g. to fp16 for shipping) with `config` as JSON metadata.

    `progress` (e.g. the training step) is stored beside the config, not in it: the config only rebuilds.
    """
    tensors = {k: (v.to(dtype) if dtype and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in state.items()}
    metadata = {"config": json.dumps(config), **({"progress": json.dumps(progress)} if progress else {})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_progress(path: Path) -> dict:
    """The progress a weights file was written at ({} when absent, or when there is no readable file)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("progress", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}


def read_config(path: Path) -> dict:
    """The config JSON stored in a weights file's metadata."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if "config" not in metadata:
        raise CheckpointError(f"{path} has no pdae config in its metadata; was it written by pdae?")
    return json.loads(metadata["config"])


def load_weights(path: Path) -> tuple[dict[str, Tensor], dict]:
    """Read (state dict in float32, config) from a weights file."""
    config = read_config(path)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    return state, config


def load_state_strict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load every tensor or fail listing the missing, unexpected and mis-shaped keys: never a partial load."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                       if k in state and state[k].shape != v.shape)
    if missing or unexpected or misshaped:
        lines = [f"{source} does not match the model:"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                lines.append(f"  {label} ({len(keys)}): " + ", ".join(keys[:20])
                             + (" ..." if len(keys) > 20 else ""))
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state)


def resolve_weights_path(path: Path) -> Path:
    """A run folder means its EMA weights; a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    return path


def save_training_state(path: Path, state: dict) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path) -> dict:
    """Read optimizer/EMA/counter state safely: tensors and plain containers only, no pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or OSError here
        raise CheckpointError(f"cannot read training state {path}: {error}") from error
