"""Commands on a PDAE run: train it, encode, reconstruct, the two diagnostics, the numbers, the demo."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from pdae.autoencode import PAPER_PROTOCOL, StepCounts
from pdae.commands import options as o
from pdae.commands.dpm import saved_model_config

Sampler = Annotated[str, typer.Option(help="Decoding: ddim (eta 0) or ddpm (ancestral, eta 1).")]
InversionSteps = Annotated[int, typer.Option(help="DDIM steps of the inversion that infers x_T.")]
DecodingSteps = Annotated[int, typer.Option(help="Steps of the decoding.")]
Refine = Annotated[int, typer.Option(min=0, help="Fixed-point iterations per inversion step, one network "
                                     "evaluation each; they let the decoding retrace the inversion, so few "
                                     "steps reconstruct nearly exactly (0: plain DDIM inversion).")]
DEFAULT = StepCounts()
ClipX0 = Annotated[bool, typer.Option("--clip-x0", help="Clamp the predicted x0 to [-1, 1] in the inversion "
                                     "and in the decoding of the inferred x_T: one choice for both, so that "
                                     "decoding retraces the inversion (off by default).")]
ClipRandom = Annotated[bool, typer.Option("--clip-random/--no-clip-random",
                                          help="Clamp the predicted x0 when decoding from a random x_T.")]
SamplingCoef = Annotated[Optional[str], typer.Option(help="Override the run's decoding coefficient: trained "
                                                     "(-c_t) or reference (sqrt(1 - abar_t)).")]


def open_images(images: Path, model, split: str, limit: int | None, skip_bad: bool = False,
                labels: str | None = None, label_column: str | None = None):
    """A dataset at the model's resolution and channel count; labels as pdae.data.open_dataset takes them."""
    from pdae.data import open_dataset

    return open_dataset(images, image_size=model.image_size, channels=model.in_channels, split=split,
                        limit=limit, skip_bad=skip_bad, labels=labels, label_column=label_column)


def step_counts(inversion_steps: int, decoding_steps: int, sampler: str, clip_x0: bool = False,
                clip_random: bool = True, refine: int = DEFAULT.refine) -> StepCounts:
    """The autoencoding settings the options describe (ddim: eta 0, ddpm: eta 1)."""
    o.choice(sampler, ("ddim", "ddpm"), "sampler")
    eta = 1.0 if sampler == "ddpm" else 0.0
    return StepCounts(inversion_steps, decoding_steps, eta, clip_x0, clip_random, refine)


def fit(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoints, config and logs.")],
    dpm: Annotated[Path, typer.Option(help="Pre-trained DPM: a pdae run folder or .safetensors, a foreign "
                                      "checkpoint (see inspect-dpm), or a diffusers UNet2DModel folder; "
                                      "default: the shipped MNIST DPM.")] = o.SHIPPED_DPM,
    data: o.Data = o.SHIPPED_MNIST,
    split: o.Split = "train",
    limit: o.Limit = None,
    latent_dim: Annotated[int, typer.Option(help="Size of the semantic code z.")] = 64,
    encoder_channels: Annotated[int, typer.Option(help="Width of the encoder's first stage.")] = 32,
    gamma: Annotated[float, typer.Option(help="Loss weight lambda_t = SNR^gamma / (1 + SNR).")] = 0.1,
    init_from_dpm: Annotated[bool, typer.Option("--init-from-dpm/--random-init",
                                                help="Start G's decoder from the DPM's own decoder "
                                                     "weights (trains faster, see README) or "
                                                     "randomly.")] = True,
    sampling_coef: Annotated[
        str, typer.Option(help="Shift coefficient when decoding: trained (-c_t, as in the loss) or "
                               "reference (sqrt(1 - abar_t)).")
    ] = "reference",
    z_pathway: Annotated[
        str, typer.Option(help="How z reaches G's blocks: per_block (each block's own affine map of z) or "
                               "shared (one projection to the time-embedding width, then a Linear per "
                               "block, as the reference code does).")
    ] = "per_block",
    condition: Annotated[
        str, typer.Option(help="What G is conditioned on: z (the encoder's code of the image; PDAE proper) or "
                               "class (a learned embedding of the image's class label, which the data must "
                               "have; sample with `pdae sample RUN --class C --scale S`).")
    ] = "z",
    method: Annotated[
        str, typer.Option(help="pdae (E and G on the frozen DPM) or diffae: the Diff-AE baseline, the same "
                               "encoder with a z-conditioned UNet of the DPM's architecture and schedule "
                               "trained jointly from scratch (the DPM's weights are not used).")
    ] = "pdae",
    labels: o.Labels = None,
    label_column: o.LabelColumn = None,
    images: o.TotalImages = "200k",
    batch_size: o.TrainBatch = 64,
    lr: o.LearningRate = 2e-4,
    ema_halflife: o.EmaHalflife = "20k",
    checkpoint_every: o.CheckpointEvery = "50k",
    bf16: o.Bf16 = None,
    hflip: o.Hflip = False,
    seed: o.Seed = 0,
    resume: o.Resume = False,
    skip_bad: o.SkipBad = False,
    workers: o.Workers = 0,
    compile: o.Compile = False,
    gradient_checkpointing: Annotated[bool, typer.Option(
        "--gradient-checkpointing", help="Recompute G's activations in the backward pass instead of keeping "
        "them: less memory per image (a larger --batch-size fits) for one more forward pass of G per step "
        "(PDAE only).")] = False,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Train PDAE's encoder and gradient estimator on a frozen pre-trained DPM (or, with --method diffae,
    the Diff-AE baseline from scratch)."""
    from pdae.backbones import load_dpm
    from pdae.data import open_dataset
    from pdae.errors import PdaeError
    from pdae.model import PDAE, PDAEConfig, build_pdae
    from pdae.training import train

    target = o.prepare_runtime(threads, device)
    o.choice(condition, ("z", "class"), "condition")
    o.choice(method, ("pdae", "diffae"), "method")
    if method == "diffae":
        if condition != "z":
            raise PdaeError("the Diff-AE baseline learns z from images: --condition class is for PDAE")
        if gradient_checkpointing:
            raise PdaeError("--gradient-checkpointing applies to PDAE's G; the Diff-AE baseline has none")
        model = backbone = diffae_model(out, dpm, latent_dim, encoder_channels, resume)
    elif resume:
        config = saved_model_config(out, "pdae")
        saved = config["pdae"]
        o.refuse_changed_on_resume(out, {
            "latent_dim": (saved["latent_dim"], latent_dim),
            "encoder_channels": (saved["encoder_channels"], encoder_channels),
            "gamma": (saved["gamma"], gamma), "init_from_dpm": (saved["init_from_dpm"], init_from_dpm),
            "sampling_coef": (saved["sampling_coef"], sampling_coef),
            "z_pathway": (saved.get("z_pathway", "per_block"), z_pathway),
            "condition": (saved.get("condition", "z"), condition),
            "dpm": ("another DPM", dpm) if o.typed("dpm") and not same_dpm(out, dpm) else (dpm, dpm)})
        model = build_pdae(config)
        backbone, condition = model.dpm, model.cfg.condition
    else:
        backbone, schedule = load_dpm(dpm)
    dataset = open_dataset(data, image_size=backbone.image_size, channels=backbone.in_channels, split=split,
                           limit=limit, hflip=hflip, skip_bad=skip_bad, labels=labels, label_column=label_column)
    if condition == "class" and dataset.num_classes < 2:
        raise PdaeError(f"--condition class needs class labels, and {dataset.describe()} has none: pass "
                        "--labels (and --label-column)")
    if resume and condition == "class" and dataset.num_classes > model.cfg.num_classes:
        raise PdaeError(f"{out} was trained on {model.cfg.num_classes} classes and {dataset.describe()} has "
                        f"{dataset.num_classes}: resume it on the data it started with")
    if not resume and method == "pdae":
        model = PDAE(backbone, schedule, PDAEConfig(latent_dim, encoder_channels, gamma, init_from_dpm,
                                                    sampling_coef, z_pathway=z_pathway, condition=condition,
                                                    num_classes=dataset.num_classes if condition == "class"
                                                    else 0))
    if gradient_checkpointing:
        model.gradient_checkpointing = True
    o.console.print(f"data: {dataset.describe()}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    o.console.print(f"{'Diff-AE' if method == 'diffae' else 'PDAE'}: {trainable / 1e6:.2f}M trainable "
                    f"parameters, z of size {model.cfg.latent_dim}")
    cfg = o.train_config(images, batch_size, lr, ema_halflife, checkpoint_every, bf16, seed, workers,
                         compile, target)
    train(model, model.training_loss(), dataset, cfg, out, model.to_config(), resume=resume, description="fit",
          device=target)
    o.console.print(f"[green]done:[/] {out / 'ema.safetensors'}")


def diffae_model(out: Path, dpm: Path, latent_dim: int, encoder_channels: int, resume: bool):
    """The Diff-AE baseline to train: a new one with the UNet architecture and schedule of `dpm`, or the
    run's own on --resume (refusing changed options)."""
    from pdae.backbones import load_dpm
    from pdae.diffae import DiffAE, DiffAEConfig, build_diffae
    from pdae.errors import PdaeError
    from pdae.nn.unet import UNet

    if resume:
        config = saved_model_config(out, "diffae")
        saved = config["diffae"]
        o.refuse_changed_on_resume(out, {"latent_dim": (saved["latent_dim"], latent_dim),
                                         "encoder_channels": (saved["encoder_channels"], encoder_channels)})
        return build_diffae(config)
    backbone, schedule = load_dpm(dpm)
    if not isinstance(backbone, UNet):
        raise PdaeError(f"--method diffae builds its UNet with the architecture of an ADM-style DPM (pdae, "
                        f"guided-diffusion, Diff-AE or PDAE checkpoints); {dpm} is a {type(backbone).__name__}")
    return DiffAE(backbone.config, schedule, DiffAEConfig(latent_dim, encoder_channels))


def same_dpm(run_dir: Path, dpm: Path) -> bool:
    """Whether the DPM at `dpm` is the frozen DPM inside the PDAE run (architecture, schedule and weights)."""
    import torch

    from pdae.backbones import load_dpm
    from pdae.checkpoint import resolve_weights_path
    from pdae.model import read_pdae_weights

    backbone, schedule = load_dpm(dpm)
    state, config = read_pdae_weights(resolve_weights_path(run_dir))
    if json.dumps(backbone.to_config(schedule), sort_keys=True) != json.dumps(config["dpm"], sort_keys=True):
        return False
    return all(torch.equal(value.float(), state.get(f"dpm.{key}", torch.empty(0)))
               for key, value in backbone.state_dict().items())


def encode(
    run: o.Run = o.SHIPPED_PDAE,
    images: o.Images = o.SHIPPED_MNIST,
    out: o.Out = Path("latents.npz"),
    split: o.Split = "test",
    limit: o.Limit = None,
    x_T: Annotated[bool, typer.Option("--x-T", help="Also infer the stochastic code x_T (slower).")] = False,
    steps: InversionSteps = DEFAULT.inversion,
    refine: Refine = DEFAULT.refine,
    batch_size: o.BatchSize = 256,
    labels: o.Labels = None,
    label_column: o.LabelColumn = None,
    skip_bad: o.SkipBad = False,
    sampling_coef: SamplingCoef = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Write the semantic code z of every image (and, with --x-T, its inferred x_T) to an .npz file."""
    import numpy as np

    from pdae.autoencode import infer_x_T
    from pdae.checkpoint import atomic_write
    from pdae.data import iterate_batches
    from pdae.model import load_pdae
    from pdae.progress import progress_bar

    target = o.prepare_runtime(threads, device)
    model = load_pdae(run, sampling_coef).to(target)
    dataset = open_images(images, model, split, limit, skip_bad, labels, label_column)
    arrays: dict[str, list] = {"z": [], "labels": [], **({"x_T": []} if x_T else {})}
    with torch.no_grad(), progress_bar("encoding", total=len(dataset), fields=()) as bar:
        for x0, y in iterate_batches(dataset, batch_size):  # y: the batch's labels, not the --labels option
            x0 = x0.to(target)
            z = model.encode(x0)
            arrays["z"].append(z.cpu())
            arrays["labels"].append(y)
            if x_T:
                arrays["x_T"].append(infer_x_T(model, x0, z, steps, refine=refine).cpu())
            bar.update(len(x0))
    result = {k: torch.cat(v).numpy() for k, v in arrays.items()}
    atomic_write(out, lambda tmp: np.savez(open(tmp, "wb"), **result))
    o.console.print(f"wrote {out}: z {result['z'].shape}" + (f", x_T {result['x_T'].shape}" if x_T else ""))


def reconstruct(
    run: o.Run = o.SHIPPED_PDAE,
    images: o.Images = o.SHIPPED_MNIST,
    out: o.Out = Path("reconstructions.png"),
    split: o.Split = "test",
    limit: Annotated[int, typer.Option(min=1, help=f"Number of images: {o.LIMIT_HELP}.")] = 16,
    inversion_steps: InversionSteps = DEFAULT.inversion,
    decoding_steps: DecodingSteps = DEFAULT.decoding,
    refine: Refine = DEFAULT.refine,
    sampler: Sampler = "ddim",
    clip_x0: ClipX0 = False,
    clip_random: ClipRandom = True,
    npz: Annotated[Optional[Path], typer.Option(help="Also write inputs and both reconstructions as "
                                                     "(N, C, H, W) arrays in [0, 1].")] = None,
    seed: o.Seed = 0,
    skip_bad: o.SkipBad = False,
    sampling_coef: SamplingCoef = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Grid of rows: inputs, decodings from a random x_T, decodings from the inferred x_T."""
    from pdae.autoencode import reconstruct as run_reconstruct
    from pdae.data import iterate_batches
    from pdae.images import save_grid, save_npz
    from pdae.model import load_pdae
    from pdae.progress import per_step, progress_bar

    target = o.prepare_runtime(threads, device)
    model = load_pdae(run, sampling_coef).to(target)
    x0, _ = next(iterate_batches(open_images(images, model, split, limit, skip_bad), limit))
    steps = step_counts(inversion_steps, decoding_steps, sampler, clip_x0, clip_random, refine)
    with progress_bar("reconstructing", total=len(x0), fields=()) as bar:
        reconstructions = run_reconstruct(model, x0, steps, seeds=range(seed, seed + len(x0)),
                                          callback=per_step(bar, len(x0), steps.reconstruction_steps))
    outputs = {name: images.cpu() for name, images in reconstructions.items()}
    save_grid(torch.cat([x0, outputs["random_xT"], outputs["inferred_xT"]]), out, ncols=len(x0))
    o.console.print(f"wrote {out} (rows: input, random x_T, inferred x_T; inversion {inversion_steps} steps "
                    f"with {refine} refinements each, {sampler} decoding {decoding_steps} steps)")
    if npz is not None:
        o.console.print(f"wrote {save_npz(npz, inputs=x0, **outputs)}")


def gap(
    run: o.Run = o.SHIPPED_PDAE,
    images: o.Images = o.SHIPPED_MNIST,
    out: o.Out = Path("gap.png"),
    split: o.Split = "test",
    limit: Annotated[int, typer.Option(min=1, help="Held-out images to average over.")] = 256,
    num_t: Annotated[int, typer.Option(help="Number of evenly spaced t to evaluate.")] = 50,
    seed: o.Seed = 0,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Plot the posterior-mean gap per t, DPM alone vs with PDAE's shift; write the numbers as JSON beside it."""  # noqa: E501
    from pdae.data import iterate_batches
    from pdae.errors import PdaeError
    from pdae.evaluation import gap_report, plot_gap
    from pdae.model import PDAE, load_pdae

    target = o.prepare_runtime(threads, device)
    model = load_pdae(run).to(target)
    if not isinstance(model, PDAE):
        raise PdaeError(f"{run} is a Diff-AE run: the gap plot compares a PDAE with its DPM (`pdae eval` "
                        "reports a Diff-AE's own gap)")
    x0, _ = next(iterate_batches(open_images(images, model, split, limit), limit))
    report = gap_report(model, x0, num_t, seed)
    plot_gap(report, out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    o.console.print(f"wrote {out} and {out.with_suffix('.json')}: "
                    f"PDAE fills {100 * report['share_filled']:.1f}% "
                    f"of the DPM's posterior-mean gap integrated over t, "
                    f"{100 * report['mean_share_filled_per_t']:.1f}%"
                    " on average per t")


def denoise_one_step(
    run: o.Run = o.SHIPPED_PDAE,
    images: o.Images = o.SHIPPED_MNIST,
    out: o.Out = Path("one_step.png"),
    split: o.Split = "test",
    limit: Annotated[int, typer.Option(min=1, help="Number of images (columns).")] = 8,
    t: Annotated[str, typer.Option(help="Comma-separated timesteps.")] = "100,300,500,700,900",
    seed: o.Seed = 0,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """One-step x0 predictions at several t: per t, rows of x_t, the DPM's prediction, PDAE's prediction."""
    from pdae.data import iterate_batches
    from pdae.diagnostics import one_step_denoise
    from pdae.images import save_grid
    from pdae.model import load_pdae

    target = o.prepare_runtime(threads, device)
    model = load_pdae(run).to(target)
    try:
        timesteps = [int(v) for v in t.split(",")]
    except ValueError:
        raise typer.BadParameter(f"--t must be comma-separated integers, got {t!r}") from None
    if not all(0 <= v < model.schedule.num_timesteps for v in timesteps):
        raise typer.BadParameter(f"every t must be in 0..{model.schedule.num_timesteps - 1}")
    x0, _ = next(iterate_batches(open_images(images, model, split, limit), limit))
    rows = one_step_denoise(model, x0, timesteps, torch.Generator().manual_seed(seed))
    save_grid(torch.cat([x0, *rows]), out, ncols=len(x0))
    o.console.print(f"wrote {out} (rows: input, then per t in {timesteps}: x_t, DPM x0, PDAE x0)")


def evaluate(
    run: o.Run = o.SHIPPED_PDAE,
    images: o.Images = o.SHIPPED_MNIST,
    out: o.Out = Path("eval.json"),
    limit: Annotated[int, typer.Option(min=1, help="Held-out test images for reconstruction.")] = 1000,
    inversion_steps: InversionSteps = PAPER_PROTOCOL.inversion,
    decoding_steps: DecodingSteps = PAPER_PROTOCOL.decoding,
    refine: Annotated[int, typer.Option(min=0, help="Fixed-point iterations per inversion step (0, the "
                                        "paper's plain DDIM inversion, unless given; pdae reconstruct "
                                        f"uses {DEFAULT.refine}).")] = PAPER_PROTOCOL.refine,
    probe_train: Annotated[
        int, typer.Option(min=2, help="Train-split images the linear probe is fit on.")
    ] = 10000,
    gap_images: Annotated[int, typer.Option(min=1, help="Held-out images for the posterior-mean gap.")] = 256,
    clip_x0: ClipX0 = False,
    clip_random: ClipRandom = True,
    labels: o.Labels = None,
    label_column: o.LabelColumn = None,
    attributes: Annotated[Optional[str], typer.Option(
        help="Comma-separated label columns (of --labels) to score z on: AUROC of a linear classifier and "
             "DiTi's average precision per attribute (and their means), or the MAE of a linear regression "
             "for a numeric column of many values such as age.")] = None,
    fid_samples: Annotated[int, typer.Option(
        min=0, help="Samples (latent-DPM codes decoded from random x_T in --decoding-steps DDIM steps) whose "
                    "FID against the test split is reported when the run has a latent DPM (pdae latent fit); "
                    "0 skips it.")] = 1000,
    fid_features: o.FidFeatures = None,
    fid_reference_images: o.FidReferenceImages = None,
    latent: Annotated[Optional[Path], typer.Option(
        help="The latent DPM that samples codes for FID; default: where pdae latent fit puts it.")] = None,
    seed: o.Seed = 0,
    sampling_coef: SamplingCoef = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """The paper's numbers on held-out images: reconstruction table, gap filled, representation metrics,
    FID of samples, throughput; a JSON, a markdown table beside it (.md) and per-image scores
    (_per_image.npz)."""
    import numpy as np
    from rich.table import Table

    from pdae.checkpoint import atomic_write
    from pdae.data import iterate_batches
    from pdae.evaluation import (attribute_report, gap_report, gap_summary, markdown_table, mean_scores,
                                 probe_accuracy, reconstruction_scores, training_throughput)
    from pdae.errors import PdaeError
    from pdae.metrics import lpips_per_image
    from pdae.model import load_pdae

    target = o.prepare_runtime(threads, device)
    model = load_pdae(run, sampling_coef).to(target)
    test_set = open_images(images, model, "test", limit)
    probe_sets = [open_images(images, model, split, count, labels=labels, label_column=label_column)
                  for split, count in (("train", probe_train), ("test", None))]  # a bad CSV fails here
    columns = [c.strip() for c in attributes.split(",")] if attributes else []
    probe_sets[0].label_table(columns)  # an unknown column fails here, not after the reconstructions
    if fid_features is not None and not fid_features.exists():
        raise PdaeError(f"--fid-features {fid_features} does not exist: give a pdae classifier run or file")
    steps = step_counts(inversion_steps, decoding_steps, "ddim", clip_x0, clip_random, refine)
    started = time.perf_counter()
    per_image = out.with_name(out.stem + "_per_image.npz")  # test image i is row i
    partial = per_image.with_suffix(".partial.npz")  # a killed eval resumes from here
    coef = getattr(model.cfg, "sampling_coef", None)  # a Diff-AE has none
    settings = json.dumps([str(Path(run).resolve()), str(images), limit, repr(steps), seed, coef])
    lpips = lpips_per_image(target)  # a function, or why LPIPS is missing
    extra_metrics = {"lpips": lpips} if callable(lpips) else {}
    scores = reconstruction_scores(model, test_set, steps, seed=seed, resume_file=partial, settings=settings,
                                   extra_metrics=extra_metrics)
    arrays = {name: values.numpy() for name, values in scores.items()}
    atomic_write(per_image, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
    partial.unlink()
    report = {"run": str(run), "method": model.to_config()["kind"], "latent_dim": model.cfg.latent_dim,
              "sampling_coef": coef,
              "num_test_images": len(test_set), "inversion_steps": inversion_steps,
              "decoding_steps": decoding_steps, "refine": refine, "clip_x0": clip_x0,
              "clip_random": clip_random,
              **mean_scores(scores), "lpips_missing": None if extra_metrics else lpips,
              "per_image_scores": str(per_image)}
    x_gap, _ = next(iterate_batches(open_images(images, model, "test", gap_images), gap_images))
    report["gap"] = {k: v for k, v in gap_report(model, x_gap, seed=seed).items() if not isinstance(v, list)}
    report["linear_probe_accuracy"] = probe_accuracy(model, *probe_sets)
    report["probe_train_images"], report["probe_label_column"] = probe_train, label_column
    if columns:
        report["attributes"] = attribute_report(model, *probe_sets, columns)
    report["sample_fid"] = samples_fid_report(Path(run), model, images, fid_samples, fid_reference_images,
                                              fid_features, latent, steps, seed, target)
    x_batch, _ = next(iterate_batches(test_set, 64))
    report["train_images_per_s"] = {"fp32": training_throughput(model, x_batch, bf16=False),
                                    "bf16": training_throughput(model, x_batch, bf16=True)}
    report["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown_table(report))

    table = Table(title=f"PDAE on {len(test_set)} held-out images (inversion {inversion_steps} steps, "
                  f"{refine} refinements each / decoding {decoding_steps} DDIM steps)")
    for column in ("latent", "x_T", "SSIM", "LPIPS", "PSNR", "MSE"):
        table.add_column(column)
    for name in ("random_xT", "inferred_xT"):
        table.add_row(str(model.cfg.latent_dim), name.split("_")[0], f"{report[name + '_ssim']:.4f}",
                      f"{report[name + '_lpips']:.4f}" if extra_metrics else "n/a",
                      f"{report[name + '_psnr']:.2f}", f"{report[name + '_mse']:.5f}")
    o.console.print(table)
    o.console.print(f"{gap_summary(report['gap'])}  linear probe: "
                    f"{100 * report['linear_probe_accuracy']:.2f}%  training: "
                    f"{report['train_images_per_s']['bf16']:.0f} img/s bf16  -> {out}, "
                    f"{out.with_suffix('.md')}")


def samples_fid_report(run: Path, model, images: Path, num_samples: int, reference_limit: int | None,
                       classifier: Path | None, latent: Path | None, steps: StepCounts, seed: int,
                       device: torch.device) -> dict:
    """`pdae eval`'s FID of samples, or {"missing": why} when it cannot be computed (no latent DPM, no
    feature network for these images, or --fid-samples 0)."""
    from pdae.errors import CheckpointError, PdaeError
    from pdae.evaluation import sample_fid, test_reference
    from pdae.fid import feature_network
    from pdae.latent import open_latent_dpm

    if num_samples == 0:
        return {"missing": "skipped (--fid-samples 0)"}
    try:
        latent_dpm = open_latent_dpm(run, latent, model, device)
    except CheckpointError:
        return {"missing": f"no latent DPM to sample codes: pdae latent fit {run}"}
    try:
        features, name = feature_network(model.in_channels, model.image_size, classifier, device)
    except PdaeError as error:
        return {"missing": str(error)}
    reference = test_reference(images, model.image_size, model.in_channels, reference_limit)
    return sample_fid(model, latent_dpm, reference, features, name, num_samples, steps, seed)


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for the demo.")] = Path("runs/demo"),
    data: Annotated[Path, typer.Option(
        "--data", help="Images to run the demo on: any folder or file `--data` of fit takes. It trains on its "
                       "train/ sub-folder and scores test/ when it has both, else on all of it. Default: the "
                       "MNIST copy shipped with pdae.")] = o.SHIPPED_MNIST,
    dpm: Annotated[Optional[Path], typer.Option(
        help="Pre-trained DPM for --data (see fit --dpm); needed with --data, since the shipped DPM "
             "knows only MNIST digits. Default: the shipped MNIST DPM.")] = None,
    images: Annotated[str, typer.Option("--images", help="PDAE training images (the default keeps the whole "
                                        "MNIST demo within 10 minutes on 2 CPU cores without native bf16; "
                                        "the shipped PDAE saw 150k).")] = "10k",
    batch_size: o.TrainBatch = 64,
    eval_images: Annotated[
        int, typer.Option(min=1, help="Held-out test images the printed MSE and SSIM average over.")
    ] = 50,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Train PDAE on a pre-trained DPM, then write reconstructions, the gap plot and one-step denoising, and
    print the held-out reconstruction scores: on MNIST with the shipped DPM, or on --data with --dpm."""
    from pdae.errors import PdaeError

    if (out / "ema.safetensors").exists():
        raise PdaeError(f"{out} already holds a demo run; remove it or pass another --out")
    if dpm is None and data != o.SHIPPED_MNIST:
        raise typer.BadParameter("--data needs --dpm: a DPM pre-trained on images like these (the shipped "
                                 "one knows MNIST digits only)")
    fit(out=out, dpm=dpm or o.SHIPPED_DPM, data=data, images=images, batch_size=batch_size,
        checkpoint_every=images, device=device, threads=threads)
    reconstruct(run=out, images=data, out=out / "reconstructions.png", device=device, threads=threads)
    gap(run=out, images=data, out=out / "gap.png", limit=128, num_t=25, device=device, threads=threads)
    denoise_one_step(run=out, images=data, out=out / "one_step.png", device=device, threads=threads)
    evaluate_quick(out, data, eval_images, device)


def evaluate_quick(run: Path, data: Path, num_images: int, device: str | None = None) -> None:
    """The demo's reconstruction MSE and SSIM (the default step counts) on the first test images of `data`."""
    from pdae.evaluation import reconstruction_metrics
    from pdae.model import load_pdae

    model = load_pdae(run).to(o.prepare_runtime(None, device))
    test_set = open_images(data, model, "test", num_images)
    metrics = reconstruction_metrics(model, test_set, DEFAULT)
    held_out = test_set.source.split == "test"
    metrics.update(data=str(data), images=len(test_set), held_out=held_out)
    (run / "demo_metrics.json").write_text(json.dumps(metrics, indent=2))
    o.console.print(f"[green]demo done[/]: pictures in {run}/ (reconstructions.png, gap.png, one_step.png)")
    where = "held-out test images" if held_out else "images of the training data (it has no test split)"
    o.console.print(f"reconstruction of {len(test_set)} {where}, inferred x_T: "
                    f"MSE {metrics['inferred_xT_mse']:.5f}, SSIM {metrics['inferred_xT_ssim']:.4f}; "
                    f"random x_T: "
                    f"MSE {metrics['random_xT_mse']:.5f}, SSIM {metrics['random_xT_ssim']:.4f}")
