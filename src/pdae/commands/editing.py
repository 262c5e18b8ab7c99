"""Commands that move through PDAE's code space: interpolation between two images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
import typer

from pdae.commands import options as o
from pdae.commands.autoencoder import (ClipX0, DecodingSteps, InversionSteps, SamplingCoef, open_images,
                                       step_counts)

ImageSource = Annotated[Path, typer.Option("--images", help="Where integer image references point: an MNIST "
                                           "IDX folder, an image folder, an LMDB folder or an .npz file "
                                           "(default: the MNIST copy shipped with pdae).")]


def run_and_images(arguments: list[str], count: int) -> tuple[Path, list[str]]:
    """Split '[RUN] IMAGE...' into the run (default: the shipped MNIST PDAE) and `count` image references."""
    if len(arguments) not in (count, count + 1):
        raise typer.BadParameter(f"expected [RUN] and {count} images, got {len(arguments)} arguments")
    run = Path(arguments[0]) if len(arguments) > count else o.SHIPPED_PDAE
    return run, arguments[-count:]


def load_references(references: list[str], images: Path, split: str, model) -> torch.Tensor:
    """Each reference is an image file or the index of an image in `images`' split; model-ready tensors."""
    from pdae.data import load_image
    from pdae.errors import DataError

    dataset = None
    loaded = []
    for reference in references:
        if reference.isdigit() and not Path(reference).is_file():
            dataset = dataset or open_images(images, model, split, None)
            if int(reference) >= len(dataset):
                raise DataError(f"image index {reference} is out of range: {dataset.describe()}")
            loaded.append(dataset[int(reference)][0])
        else:
            loaded.append(load_image(Path(reference), model.dpm.image_size, model.dpm.in_channels))
    return torch.stack(loaded)


def interpolate(
    arguments: Annotated[list[str], typer.Argument(
        metavar="[RUN] A B", show_default=False,
        help="A PDAE run folder or .safetensors file (default: the shipped MNIST PDAE), then two images: "
             "each an image file or the index of an image in --images (its --split).")],
    frames: Annotated[int, typer.Option(min=2, help="Frames from A to B, both ends included.")] = 8,
    mode: Annotated[str, typer.Option(help="lerp: decode with G of the lerped z; trajectory: mix G of both "
                                      "z at every step, (1 - a) G(z_A) + a G(z_B); both: one row each.")]
    = "lerp",
    images: ImageSource = o.SHIPPED_MNIST,
    split: o.Split = "test",
    out: o.Out = Path("interpolation.png"),
    inversion_steps: InversionSteps = 100,
    decoding_steps: DecodingSteps = 100,
    clip_x0: ClipX0 = False,
    sampling_coef: SamplingCoef = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Interpolate between two images: lerp their z, slerp their inferred x_T; a PNG and a JSON beside it.

    Each row of the PNG is A, the frames, B. The JSON holds the smoothness of each mode: the mean distance
    between consecutive frames over the distance between the end frames (a straight path at constant
    speed scores 1 / (frames - 1)).
    """
    from pdae.images import save_grid
    from pdae.interpolation import MODES, interpolate as run_interpolation, smoothness
    from pdae.model import load_pdae

    modes = list(MODES) if mode == "both" else [o.choice(mode, [*MODES, "both"], "mode")]
    run, references = run_and_images(arguments, 2)
    target = o.prepare_runtime(threads, device)
    model = load_pdae(run, sampling_coef).to(target)
    x = load_references(references, images, split, model)
    steps = step_counts(inversion_steps, decoding_steps, "ddim", clip_x0)
    rows, report = [], {"run": str(run), "a": references[0], "b": references[1], "frames": frames,
                        "inversion_steps": inversion_steps, "decoding_steps": decoding_steps,
                        "straight_path_smoothness": 1 / (frames - 1), "smoothness": {}}
    for name in modes:
        path = run_interpolation(model, x[0], x[1], frames, steps, name).cpu()
        report["smoothness"][name] = smoothness(path)
        rows.append(torch.cat([x[:1], path, x[1:]]))
    save_grid(torch.cat(rows), out, ncols=frames + 2)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    scores = ", ".join(f"{name} {value:.3f}" for name, value in report["smoothness"].items())
    o.console.print(f"wrote {out} (rows: {', '.join(modes)}; each A, {frames} frames, B) and "
                    f"{out.with_suffix('.json')}: smoothness {scores} (straight path: {1 / (frames - 1):.3f})")
