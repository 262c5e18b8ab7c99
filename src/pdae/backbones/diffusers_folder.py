"""A diffusers folder recognised without importing diffusers (slow to import): the family's name, its
folder layout and detection predicate; pdae.backbones.diffusers_unet loads it.
"""

from __future__ import annotations

from pathlib import Path

from pdae.backbones.files import read_json
from pdae.errors import CheckpointError

DIFFUSERS = "diffusers"
MODEL_CONFIG, PIPELINE_INDEX = "config.json", "model_index.json"  # diffusers' folder layout


def is_diffusers_folder(path: Path) -> bool:
    """A diffusers pipeline folder, or a model folder whose config.json names its class."""
    if (path / PIPELINE_INDEX).is_file():
        return True
    try:
        return (path / MODEL_CONFIG).is_file() and "_class_name" in read_json(path / MODEL_CONFIG)
    except CheckpointError:
        return False
