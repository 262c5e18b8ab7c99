"""Commands that move through PDAE's code space: interpolation, attribute directions and edits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from pdae.commands import options as o
from pdae.commands.autoencoder import (DEFAULT, ClipX0, DecodingSteps, InversionSteps, Refine, SamplingCoef,
                                       open_images, step_counts)

attributes_app = typer.Typer(help="Attribute directions in z: fit linear classifiers on labelled images.",
                             no_args_is_help=True)

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
        elif Path(reference).is_dir() or reference.endswith(".safetensors"):
            raise DataError(f"{reference} is a run, not an image: give the run first, then the images")
        else:
            loaded.append(load_image(Path(reference), model.image_size, model.in_channels))
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
    inversion_steps: InversionSteps = DEFAULT.inversion,
    decoding_steps: DecodingSteps = DEFAULT.decoding,
    refine: Refine = DEFAULT.refine,
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
    steps = step_counts(inversion_steps, decoding_steps, "ddim", clip_x0, refine=refine)
    rows, report = [], {"run": str(run), "a": references[0], "b": references[1], "frames": frames,
                        "inversion_steps": inversion_steps, "decoding_steps": decoding_steps, "refine": refine,
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


def directions_path(run: Path) -> Path:
    """Where `attributes fit` writes a run's directions by default: in its folder, else in the working one."""
    return run / "attributes.safetensors" if run.is_dir() else Path(f"{run.stem}_attributes.safetensors")


@attributes_app.command("fit")
def fit_attributes(
    run: o.Run = o.SHIPPED_PDAE,
    data: o.Data = o.SHIPPED_MNIST,
    labels: o.Labels = None,
    columns: Annotated[Optional[str], typer.Option(
        "--attributes", help="Comma-separated label columns to fit (default: every column). A column of "
                             "two values is one attribute; of a few classes, one attribute per class; a "
                             "numeric one of many values is split at its median.")] = None,
    train_split: Annotated[str, typer.Option(help="Split the classifiers are fitted on.")] = "train",
    test_split: Annotated[str, typer.Option(help="Held-out split they are scored on.")] = "test",
    limit: o.Limit = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Where to write the directions "
                                                "(default: RUN/attributes.safetensors for a run folder, "
                                                "else <name>_attributes.safetensors here).")] = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Fit one linear classifier per attribute on standardised z; print held-out accuracy and AUROC.

    Labels come from a CSV with many columns (--labels DATA/{split}.csv), from class sub-folders
    (--labels folders), from CelebA's list_attr_celeba.txt or CelebAMask-HQ-attribute-anno.txt as
    released, or from the dataset itself (MNIST digits: column 'label'). `pdae manipulate` edits along
    the directions.
    """
    from rich.table import Table

    from pdae.attributes import binary_targets, fit_directions
    from pdae.data import label_csv_columns
    from pdae.evaluation import encode_dataset
    from pdae.model import load_pdae

    names = [name.strip() for name in columns.split(",")] if columns else None
    from_csv = labels not in (None, "folders")
    if from_csv and names is None:
        names = label_csv_columns(labels, train_split)
    target = o.prepare_runtime(threads, device)
    model = load_pdae(run).to(target)
    sets = [open_images(data, model, split, limit, labels=labels, label_column=names[0] if from_csv else None)
            for split in (train_split, test_split)]
    tables = [dataset.label_table(names) for dataset in sets]
    if not tables[0]:
        raise typer.BadParameter(f"{data} has no labels: pass --labels (a CSV, 'folders' or a CelebA "
                                 "attribute file)")
    targets = binary_targets(*tables)
    codes = [encode_dataset(model, dataset)[0] for dataset in sets]
    directions = fit_directions(codes[0], targets[0], codes[1], targets[1])
    out = out or directions_path(run)
    directions.save(out, {"run": str(run), "data": str(data), "train_images": len(sets[0]),
                          "test_images": len(sets[1])})
    out.with_suffix(".json").write_text(json.dumps(directions.scores, indent=2))
    table = Table(title=f"Linear classifiers on z: {len(sets[0])} {train_split} images, scored on "
                        f"{len(sets[1])} {test_split} images")
    for column in ("attribute", "accuracy", "AUROC", "positives (test)"):
        table.add_column(column)
    for name, score in directions.scores.items():
        auroc = "n/a" if score["auroc"] is None else f"{score['auroc']:.3f}"
        table.add_row(name, f"{score['accuracy']:.3f}", auroc, str(score["test_positives"]))
    o.console.print(table)
    o.console.print(f"wrote {out} and {out.with_suffix('.json')}")


def manipulate(
    arguments: Annotated[list[str], typer.Argument(
        metavar="[RUN] IMAGE", show_default=False,
        help="A PDAE run folder or .safetensors file (default: the shipped MNIST PDAE), then an image file "
             "or the index of an image in --images (its --split).")],
    attribute: Annotated[str, typer.Option(help="Attribute to edit, as `pdae attributes fit` named it "
                                           "(e.g. Smiling, label=3).")],
    scale: Annotated[str, typer.Option(help="Comma-separated steps along the attribute's unit normal, in "
                                       "units of sqrt(dim z) in standardised z.")] = "-0.3,-0.1,0.1,0.3",
    directions: Annotated[Optional[Path], typer.Option(help="Directions written by `pdae attributes fit` "
                                                       "(default: where it writes them for RUN).")] = None,
    images: ImageSource = o.SHIPPED_MNIST,
    split: o.Split = "test",
    out: o.Out = Path("manipulation.png"),
    inversion_steps: InversionSteps = DEFAULT.inversion,
    decoding_steps: DecodingSteps = DEFAULT.decoding,
    refine: Refine = DEFAULT.refine,
    clip_x0: ClipX0 = False,
    sampling_coef: SamplingCoef = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Edit an image along an attribute direction: move z, decode from the image's inferred x_T.

    The PNG shows the input, then one edit per scale (scale 0, the plain reconstruction, included); the
    JSON beside it gives each edit's MSE to the input and the attribute classifier's logit of its code.
    """
    from pdae.attributes import AttributeDirections, manipulate as run_manipulation
    from pdae.checkpoint import resolve_weights_path
    from pdae.data import to_unit_range
    from pdae.errors import PdaeError
    from pdae.images import save_grid
    from pdae.metrics import mse_per_image
    from pdae.model import load_pdae

    run, (reference,) = run_and_images(arguments, 1)
    try:
        scales = sorted({0.0, *(float(v) for v in scale.split(","))})
    except ValueError:
        raise typer.BadParameter(f"--scale must be comma-separated numbers, got {scale!r}") from None
    target = o.prepare_runtime(threads, device)
    model = load_pdae(run, sampling_coef).to(target)
    found = AttributeDirections.load(resolve_weights_path(directions or directions_path(run)))
    found.index(attribute)  # an unknown name fails before the inversion
    if found.weights.shape[1] != model.cfg.latent_dim:
        raise PdaeError(f"the directions were fitted on codes of size {found.weights.shape[1]}, and {run} "
                        f"encodes to size {model.cfg.latent_dim}: fit them on this run")
    x = load_references([reference], images, split, model)
    edits = run_manipulation(model, x[0], found, attribute, scales,
                             step_counts(inversion_steps, decoding_steps, "ddim", clip_x0, refine=refine)).cpu()
    with torch.no_grad():
        logits = found.logits(model.encode(edits.to(target)).cpu())[:, found.index(attribute)]
    mse = mse_per_image(to_unit_range(edits), to_unit_range(x).expand_as(edits))
    report = {"run": str(run), "image": reference, "attribute": attribute,
              "edits": [{"scale": s, "mse_to_input": float(m), "logit": float(g)}
                        for s, m, g in zip(scales, mse, logits)]}
    save_grid(torch.cat([x, edits]), out, ncols=len(scales) + 1)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    o.console.print(f"wrote {out} (input, then scales {', '.join(f'{s:g}' for s in scales)}) and "
                    f"{out.with_suffix('.json')}")
