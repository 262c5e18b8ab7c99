"""Commands of the latent DPM: train it on a PDAE's codes, and sample new images through it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from pdae.commands import options as o
from pdae.commands.autoencoder import open_images

latent_app = typer.Typer(help="The latent DPM over a PDAE's codes z (for sampling new images).",
                         no_args_is_help=True)


@latent_app.command("fit")
def fit_latent(
    run: o.Run = o.SHIPPED_PDAE,
    data: o.Data = o.SHIPPED_MNIST,
    split: o.Split = "train",
    limit: o.Limit = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder of the latent DPM (default: "
                                                "RUN/latent for a run folder, else <name>_latent here).")]
    = None,
    width: Annotated[int, typer.Option(min=1, help="Width of the MLP's hidden layers.")] = 512,
    depth: Annotated[int, typer.Option(min=1, help="Number of hidden layers.")] = 6,
    images: o.TotalImages = "2M",
    batch_size: o.TrainBatch = 256,
    lr: o.LearningRate = 1e-4,
    ema_halflife: o.EmaHalflife = "100k",
    checkpoint_every: o.CheckpointEvery = "500k",
    seed: o.Seed = 0,
    resume: o.Resume = False,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Train a latent DPM (an MLP with skip connections and time-scaled layers, L1 loss on eps) on z.

    The codes of the training images are encoded once and cached in the run folder (codes.pt);
    `pdae sample RUN` then finds the latent DPM beside the PDAE.
    """
    from pdae.commands.dpm import saved_model_config
    from pdae.latent import CodeDataset, LatentDPM, build_latent_dpm, default_latent_run
    from pdae.linear import Standardiser
    from pdae.losses import EpsLoss
    from pdae.nn.latent_mlp import LatentMLPConfig
    from pdae.schedule import NoiseSchedule
    from pdae.training import train

    target = o.prepare_runtime(threads, device)
    out = out or default_latent_run(run)
    codes = cached_codes(run, data, split, limit, out, target)
    if resume:
        latent = build_latent_dpm(saved_model_config(out, "latent_dpm"))
        o.refuse_changed_on_resume(out, {"width": (latent.net.cfg.width, width),
                                         "depth": (latent.net.cfg.depth, depth)})
    else:
        latent = LatentDPM(LatentMLPConfig(codes.shape[1], width, depth), NoiseSchedule("linear", 1000))
    standardise = Standardiser.fit(codes)
    latent.z_mean.copy_(standardise.mean)
    latent.z_std.copy_(standardise.std)
    o.console.print(f"latent DPM: {sum(p.numel() for p in latent.parameters()) / 1e6:.2f}M parameters on "
                    f"{len(codes)} codes of size {codes.shape[1]}")
    cfg = o.train_config(images, batch_size, lr, ema_halflife, checkpoint_every, False, seed, 0,
                         device=target)
    train(latent, EpsLoss(latent.schedule, l1=True), CodeDataset(standardise(codes)), cfg, out,
          latent.to_config(), resume=resume, description="latent fit", device=target)
    o.console.print(f"[green]done:[/] {out / 'ema.safetensors'}")


def cached_codes(run: Path, data: Path, split: str, limit: int | None, out: Path,
                 device: torch.device) -> torch.Tensor:
    """The codes z of the training images, encoded once: reused while the run, data and split match."""
    from pdae.checkpoint import resolve_weights_path
    from pdae.evaluation import encode_dataset
    from pdae.model import load_pdae

    weights = resolve_weights_path(run)
    key = {"run": str(weights.resolve()), "run_bytes": weights.stat().st_size,
           "run_mtime": weights.stat().st_mtime, "data": str(Path(data).resolve()), "split": split,
           "limit": limit}
    cache = out / "codes.pt"
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        if saved["key"] == key:
            return saved["codes"]
    model = load_pdae(run).to(device)
    codes = encode_dataset(model, open_images(data, model, split, limit))[0]
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "codes": codes}, cache)
    return codes


def sample_from_pdae(run: Path, out: Path, num: int, steps: int, seed: int, batch_size: int,
                     latent: Path | None, latent_steps: int, stop_fraction: float | None, truncate: float | None,
                     label: int | None, scales: list[float], npz: Path | None, device: str | None,
                     threads: int | None) -> torch.Tensor:
    """`pdae sample RUN`: one row of samples per G scale, as a PNG (and .npz): latent-DPM codes decoded by
    the PDAE from random x_T, or for a class-conditional PDAE the embedding of class `label`. Returns the
    samples (in [-1, 1], on the CPU)."""
    from pdae.autoencode import StepCounts, decode_from_noise
    from pdae.errors import PdaeError
    from pdae.images import save_grid, save_npz
    from pdae.latent import STOP_FRACTION, open_latent_dpm, sample_codes
    from pdae.model import load_pdae
    from pdae.progress import per_step, progress_bar

    if stop_fraction is not None and not 0 <= stop_fraction < 1:
        raise typer.BadParameter(f"--stop-fraction must be in [0, 1), got {stop_fraction}")
    target = o.prepare_runtime(threads, device)
    model = load_pdae(run).to(target)
    if stop_fraction is None:
        stop_fraction = 0.0 if model.class_conditional else STOP_FRACTION
    if model.class_conditional:
        if label is None or not 0 <= label < model.cfg.num_classes:
            raise PdaeError(f"{run} is conditioned on classes 0..{model.cfg.num_classes - 1}: pick one with "
                            "--class")
        unused = [f"--{n.replace('_', '-')}" for n in ("latent", "latent_steps", "truncate") if o.typed(n)]
        if unused:
            raise PdaeError(f"{run} is class-conditional and has no latent DPM: drop {', '.join(unused)}")
        codes_for = lambda seeds: model.encode(torch.full((len(seeds),), label, device=target))  # noqa: E731
    else:
        if label is not None:
            raise PdaeError(f"--class needs a class-conditional PDAE (pdae fit --condition class); {run} "
                            "decodes codes z")
        latent_dpm = open_latent_dpm(run, latent, model, target)
        codes_for = lambda seeds: sample_codes(latent_dpm, seeds, latent_steps, truncate)  # noqa: E731
    rows = []
    with progress_bar("sampling", total=num * len(scales), fields=()) as bar:
        for scale in scales:
            for start in range(seed, seed + num, batch_size):
                seeds = list(range(start, min(start + batch_size, seed + num)))
                images = decode_from_noise(model, codes_for(seeds), seeds, StepCounts(decoding=steps), scale,
                                           stop_fraction, per_step(bar, len(seeds), steps))
                rows.append(images.cpu())
    images = torch.cat(rows)
    o.console.print(f"wrote {save_grid(images, out, ncols=num if len(scales) > 1 else None)}"
                    + (f" (rows: G scale {', '.join(f'{s:g}' for s in scales)})" if len(scales) > 1 else ""))
    if npz is not None:
        o.console.print(f"wrote {save_npz(npz, samples=images)}")
    return images


def fewshot(
    run: o.Run = o.SHIPPED_PDAE,
    support: Annotated[Path, typer.Option(help="Labelled support images: a folder with class sub-folders "
                                          "(--labels folders) or a label CSV, an MNIST IDX folder, or an "
                                          ".npz with labels.")] = o.SHIPPED_MNIST,
    label: Annotated[int, typer.Option("--class", help="The class to generate (a label of the support "
                                       "set, e.g. a digit).")] = 0,
    num: Annotated[int, typer.Option("--num", "-n", min=1, help="Number of samples.")] = 64,
    shots: Annotated[int, typer.Option(min=1, help="Use the first K support images of each class.")] = 10,
    split: o.Split = "train",
    labels: o.Labels = None,
    label_column: o.LabelColumn = None,
    out: o.Out = Path("fewshot.png"),
    steps: Annotated[int, typer.Option(min=1, help="Decoding steps.")] = 100,
    latent: Annotated[Optional[Path], typer.Option(help="The PDAE's latent DPM (default: RUN/latent, or "
                                                   "<name>_latent.safetensors beside a file).")] = None,
    latent_steps: Annotated[int, typer.Option(min=1, help="DDIM steps of the latent DPM.")] = 100,
    seed: o.Seed = 0,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Few-shot conditional samples: a classifier fitted on the z of K labelled images per class keeps the
    latent-DPM samples of the requested class, which the PDAE decodes (PNG, and a JSON with the share
    of sampled codes kept)."""
    import itertools
    import json

    from torch.utils.data import Subset

    from pdae.autoencode import StepCounts, decode_from_noise
    from pdae.evaluation import encode_dataset
    from pdae.fewshot import accepted_codes, first_of_each_class, support_classifier
    from pdae.images import save_grid
    from pdae.latent import open_latent_dpm
    from pdae.model import load_pdae

    target = o.prepare_runtime(threads, device)
    model = load_pdae(run).to(target)
    latent_dpm = open_latent_dpm(run, latent, model, target)
    dataset = open_images(support, model, split, None, labels=labels, label_column=label_column)
    support_set = Subset(dataset, first_of_each_class(dataset, shots))
    codes, y = encode_dataset(model, support_set)
    if label not in y.tolist():
        raise typer.BadParameter(f"--class {label} is not among the support set's classes "
                                 f"{sorted(set(y.tolist()))}")
    classifier = support_classifier(latent_dpm, codes, y)
    kept, accepted, draws = accepted_codes(latent_dpm, classifier, label, num, itertools.count(seed),
                                           latent_steps)
    images = decode_from_noise(model, kept.to(target), range(seed, seed + num), StepCounts(decoding=steps))
    save_grid(images.cpu(), out)
    report = {"run": str(run), "support": str(support), "class": label, "support_images": len(y),
              "shots": shots, "samples": num, "codes_drawn": draws, "share_kept": accepted / draws}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    o.console.print(f"wrote {out} and {out.with_suffix('.json')}: the classifier kept {accepted} of {draws} "
                    f"sampled codes ({len(y)} support images)")
