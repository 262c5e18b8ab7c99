"""Safe readers of foreign checkpoint files, shared by the DPM families (DESIGN.md §2).

Torch files are read with `torch.load(weights_only=True)` only (plus the harmless builtins frozenset, slice
and range); a file that needs other pickled code is refused. YAML is read with yaml.safe_load. The YAML of a
Diff-AE or OpenAI file is `--config`, else `<stem>.yaml`/`<stem>.yml` beside the file, else
`config.yaml`/`config.yml` in its folder. `Flags` converts config values as guided-diffusion's argparse does.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor

from pdae.errors import CheckpointError

# What pdae reads: said when a file is none of it.
ACCEPTED = ("pdae reads a pdae run folder or .safetensors file; an OpenAI guided-/improved-diffusion state "
            "dict (.pt) with a YAML of its flags; a Diff-AE Lightning checkpoint (.ckpt, weights under "
            "ema_model.) with a YAML of its config; a reference-PDAE folder with config.yml and "
            "checkpoint.pt; or a diffusers UNet2DModel folder with its scheduler_config.json")

# Builtins that torch's weights-only unpickler can rebuild once allowed (it cannot rebuild defaultdict or
# deque) and that extra entries of a Lightning checkpoint may hold; building them runs no code from the file.
HARMLESS_GLOBALS = {f"builtins.{t.__qualname__}": t for t in (frozenset, slice, range)}
# guided_diffusion/script_util.py str2bool
TRUE_WORDS, FALSE_WORDS = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


@dataclass(frozen=True)
class Flags:
    """Config values, converted as guided-diffusion's argparse does; errors name the config file."""

    values: dict
    source: str

    def error(self, message: str) -> CheckpointError:
        return CheckpointError(f"{self.source}: {message}")

    def refuse(self, condition: bool, message: str) -> None:
        if condition:
            raise self.error(message)

    def as_str(self, name: str) -> str:
        return str(self.values[name])

    def as_bool(self, name: str) -> bool:
        value = self.values[name]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        self.refuse(text not in TRUE_WORDS + FALSE_WORDS, f"{name}={value!r} is not true or false")
        return text in TRUE_WORDS

    def as_float(self, name: str) -> float:
        try:
            return float(self.values[name])
        except (TypeError, ValueError):
            raise self.error(f"{name}={self.values[name]!r} is not a number") from None

    def as_int(self, name: str) -> int:
        value = self.as_float(name)
        self.refuse(value != int(value), f"{name}={self.values[name]!r} is not a whole number")
        return int(value)

    def as_optional_int(self, name: str) -> int | None:
        return None if self.values.get(name) is None else self.as_int(name)

    def as_numbers(self, name: str) -> tuple[float, ...]:
        """A list, or a comma string as on guided-diffusion's command line ("16,8"); "" is empty."""
        value = self.values[name]
        items = value.split(",") if isinstance(value, str) else value
        try:
            numbers = tuple(float(item) for item in _as_list(items) if str(item).strip())
        except (TypeError, ValueError):
            raise self.error(f"{name}={value!r} is not a list of numbers") from None
        self.refuse(any(n <= 0 for n in numbers), f"{name}={value!r} must hold positive numbers")
        return numbers

    def as_ints(self, name: str) -> tuple[int, ...]:
        numbers = self.as_numbers(name)
        self.refuse(any(n != int(n) for n in numbers), f"{name}={self.values[name]!r} must hold whole "
                    "numbers")
        return tuple(int(n) for n in numbers)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def read_torch_file(path: Path) -> object:
    """torch.load(weights_only=True), admitting only the harmless builtins above: never unpickles code."""
    unsafe = _unsafe_globals(path)
    refused = sorted(set(unsafe) - set(HARMLESS_GLOBALS))
    if refused:
        raise _pickled_code(path, ", ".join(refused))
    try:
        with torch.serialization.safe_globals([HARMLESS_GLOBALS[name] for name in unsafe]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # the weights-only unpickler says what it refused
        if "global" in str(error).lower():
            raise _pickled_code(path, _unpickler_reason(error)) from error
        raise _unreadable(path, _unpickler_reason(error)) from error
    except Exception as error:  # torch raises RuntimeError, KeyError, EOFError... on files it did not write
        raise _unreadable(path, f"{type(error).__name__}: {error}") from error


def _unsafe_globals(path: Path) -> list[str]:
    """Classes/functions a zip checkpoint's pickle names outside torch's allowlist (read, not imported)."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy (non-zip) file, or no checkpoint at all: torch.load decides
        return []


def _unpickler_reason(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if "WeightsUnpickler error" in line]
    return lines[0] if lines else str(error).splitlines()[0]


def _pickled_code(path: Path, names: str) -> CheckpointError:
    return CheckpointError(
        f"{path} needs pickled code to load ({names}) and cannot be loaded safely: pdae reads checkpoints "
        "with torch.load(weights_only=True) only. If you trust the file, re-save just its weights (the state "
        "dict) with torch.save in the environment that wrote it.")


def _unreadable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable torch checkpoint ({reason}); {ACCEPTED}")


def read_yaml(path: Path) -> dict:
    """A YAML mapping, read with yaml.safe_load (plain data only)."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a YAML mapping of config names to values")
    return values


def read_json(path: Path) -> dict:
    """A JSON object (a diffusers config)."""
    try:
        values = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read {path}: {error}") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    return values


def find_yaml(path: Path, config: Path | None) -> Path | None:
    """--config, else <stem>.yaml/.yml beside the checkpoint, else config.yaml/.yml in its folder."""
    if config is not None:
        if not Path(config).is_file():
            raise CheckpointError(f"no config file at {config}")
        return Path(config)
    names = (f"{path.stem}.yaml", f"{path.stem}.yml", "config.yaml", "config.yml")
    return next((path.parent / name for name in names if (path.parent / name).is_file()), None)


def missing_yaml(path: Path, what: str, needs: str) -> CheckpointError:
    return CheckpointError(f"{path} is {what}, which needs {needs} in a YAML file: pass --config FILE.yaml, "
                           f"or put {path.stem}.yaml or config.yaml next to it")


def without_nones(values: dict) -> dict:
    """None means "the default" in these configs (and YAML reads an empty value as None)."""
    return {k: v for k, v in values.items() if v is not None}


def float_tensors(state: object, source: str) -> dict[str, Tensor]:
    """The state dict with float32 weights (checkpoints may hold fp16); anything but tensors is an error."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} is not a state dict")
    odd = sorted(str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, Tensor)))
    if odd:
        raise CheckpointError(f"{source} holds entries that are not named tensors: {', '.join(odd[:10])}")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}

