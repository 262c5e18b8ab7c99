"""Options shared by several sub-commands, and the small parsers behind them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from pdae.errors import PdaeError
from pdae.progress import console  # noqa: F401 - the CLI's console, quiet on ranks > 0
from pdae.training import TrainConfig

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SHIPPED_MNIST = ASSETS / "mnist"
SHIPPED_DPM = ASSETS / "checkpoints" / "mnist_dpm.safetensors"
SHIPPED_PDAE = ASSETS / "checkpoints" / "mnist_pdae.safetensors"
COUNT_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_count(text: str) -> int:
    """'2M' -> 2000000, '500k' -> 500000, '1e5' -> 100000: sizes of training runs in images."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgG]?)\s*", text)
    try:
        if match is None:
            raise ValueError
        return int(round(float(match.group(1)) * COUNT_SUFFIXES[match.group(2).lower()]))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a count like 60000, 500k, 2M or 1e6") from None


def prepare_runtime(threads: int | None, device: str | None) -> torch.device:
    """Set torch's CPU thread count (here, never at import, which would overload torchrun); pick a device."""
    from pdae.device import pick_device

    if threads:
        torch.set_num_threads(threads)
    return pick_device(device)


def choice(value: str, allowed: tuple[str, ...] | list[str], what: str) -> str:
    if value not in allowed:
        raise typer.BadParameter(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
    return value


Images = Annotated[Path, typer.Argument(help="Images: an MNIST IDX folder, an image folder, an LMDB folder "
                                             "or an .npz file. Default: the MNIST copy shipped with pdae.")]
Data = Annotated[Path, typer.Option("--data",
                                    help="Training images: an MNIST IDX folder, an image folder, an LMDB "
                                         "folder or an .npz file. "
                                         "Default: the MNIST copy shipped with pdae.")]
Split = Annotated[str, typer.Option(help="Dataset split, for datasets that have one (train or test).")]
LIMIT_HELP = ("the first N of an IDX, .npz or LMDB file; of an image folder, whose sorted names can group "
              "labels, a fixed sample of N spread over it")
Limit = Annotated[Optional[int], typer.Option(min=0, help=f"Use only N images: {LIMIT_HELP}.")]
Threads = Annotated[
    Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's choice).")
]
Device = Annotated[Optional[str], typer.Option(help="Where the models run: cpu, cuda or cuda:N "
                                                "(default: CUDA when available, else the CPU).")]
SkipBad = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images, naming each on one line.")]
Labels = Annotated[Optional[str], typer.Option(
    "--labels", help="Labels of an image folder: 'folders' (one sub-folder per class) or a CSV file with a "
                     "header line file,<columns> (paths relative to the split folder or the image folder); "
                     "{split} in its path becomes the split, e.g. DATA/{split}.csv. Default: the "
                     "dataset's own labels, if any.")]
LabelColumn = Annotated[Optional[str], typer.Option(
    "--label-column", help="The --labels CSV column that gives each image's class label (needed when the "
                           "CSV has several); non-negative integers are kept, other values indexed in "
                           "sorted order.")]
Seed = Annotated[int, typer.Option(help="Seed of every random draw; image i uses seed + i where it applies.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
Run = Annotated[
    Path, typer.Argument(help="PDAE run folder or .safetensors file (default: the shipped MNIST PDAE).")
]
Out = Annotated[Path, typer.Option("--out", "-o", help="Where to write the result.")]

# Training options, shared by every command that trains.
TotalImages = Annotated[
    str, typer.Option("--images", help="Stop after this many training images (500k, 2M).")
]
TrainBatch = Annotated[
    int, typer.Option("--batch-size", min=1, help="Global batch size over all processes.")
]
LearningRate = Annotated[float, typer.Option("--lr", help="AdamW learning rate.")]
EmaHalflife = Annotated[str, typer.Option("--ema-halflife", help="EMA half-life in images.")]
CheckpointEvery = Annotated[
    str, typer.Option("--checkpoint-every", help="Checkpoint every this many images.")
]
Bf16 = Annotated[
    Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 autocast (default: on a GPU, or a CPU with "
                                 "native bf16, where it is about 2x faster; off on other CPUs, where it "
                                 "is emulated and several times slower).")
]
Hflip = Annotated[bool, typer.Option("--hflip", help="Random horizontal flips (not for digits).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the network being trained (1-2 "
                                                         "minutes of compilation first; pays off on GPUs).")]
Workers = Annotated[
    int, typer.Option(min=0, help="Data-loading worker processes (0: load in the main process).")
]


def train_config(images: str, batch_size: int, lr: float, ema_halflife: str, checkpoint_every: str,
                 bf16: bool | None, seed: int, workers: int, compile: bool = False,
                 device: torch.device | None = None) -> TrainConfig:
    """The training settings the options describe; bf16 None means: where it is fast on `device`."""
    from pdae.device import fast_bf16

    bf16 = fast_bf16(device or torch.device("cpu")) if bf16 is None else bf16
    return TrainConfig(total_images=parse_count(images), batch_size=batch_size, lr=lr,
                       ema_halflife_images=parse_count(ema_halflife),
                       checkpoint_images=parse_count(checkpoint_every),
                       bf16=bf16, seed=seed, workers=workers, compile=compile)


def typed(name: str) -> bool:
    """Whether the user gave option `name` (its Python name) on the command line rather than its default."""
    from typer.main import get_current_context  # typer carries its own click

    ctx = get_current_context(silent=True)
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def refuse_changed_model(source: str, why: str, options: dict[str, tuple[object, object]]) -> None:
    """The model comes from `source` (a run to resume, a DPM to start from): a model option typed with
    another value is an error, never silently ignored.

    `options` maps an option's Python name to (the source's value, the value given now).
    """
    changed = [f"--{name.replace('_', '-')} {given} ({source} has {saved})"
               for name, (saved, given) in options.items() if typed(name) and saved != given]
    if changed:
        raise PdaeError(f"{why}; drop or correct the options that differ: {'; '.join(changed)}")


def refuse_changed_on_resume(run_dir: Path, options: dict[str, tuple[object, object]]) -> None:
    """--resume rebuilds the model from the run (see refuse_changed_model)."""
    refuse_changed_model("the run", f"--resume continues {run_dir} with the model it was started with",
                         options)


FidReferenceImages = Annotated[Optional[int], typer.Option(
    min=1, help="Compare with this many test images, not all of them: a fixed sample spread over a folder "
                "(the first N of a file). Inception runs at a few images/s on a CPU.")]
FidFeatures = Annotated[Optional[Path], typer.Option(
    help="A pdae classifier (run or .safetensors) whose pooled features FID compares; default: the shipped "
         "MNIST classifier for 28 px digits, else the TF-FID Inception of pip install 'pdae\\[fid]'.")]
