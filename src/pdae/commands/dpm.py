"""Commands on the diffusion model itself: train one, sample from one, inspect one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from pdae.backbones.adm import PRESETS, preset_name
from pdae.commands import options as o
from pdae.errors import PdaeError

if TYPE_CHECKING:
    from torch import Tensor

    from pdae.backbones import LoadedDPM

PresetName = Annotated[str, typer.Option(  # one line per preset ("\n\n" keeps them apart in --help)
    "--preset", help="UNet architecture (inspect-dpm names a checkpoint's):\n\n" + "\n\n".join(
        f"{name}: {preset.description}" for name, preset in PRESETS.items()))]


def saved_run_config(run_dir: Path, kind: str) -> dict:
    """The config.json of an existing run of `kind` ('dpm', 'pdae', 'diffae', 'latent_dpm'): its "model",
    which --resume rebuilds it from, and its "train" and (when recorded) "loss" settings."""
    from pdae.training import CONFIG_NAME

    path = run_dir / CONFIG_NAME
    if not path.is_file():
        raise PdaeError(f"nothing to resume: {path} does not exist")
    try:
        run_config = json.loads(path.read_text())
        config = run_config["model"]
    except (ValueError, KeyError, TypeError) as error:
        raise PdaeError(f"cannot resume: {path} is not a pdae run config ({error})") from None
    if config.get("kind") != kind:
        command = {"dpm": "pretrain", "pdae": "fit", "diffae": "fit --method diffae",
                   "latent_dpm": "latent fit"}
        raise PdaeError(f"cannot resume: {run_dir} holds a {config.get('kind')} run, not a {kind} run; "
                        f"continue it with pdae {command.get(config.get('kind'), '...')} --resume")
    return run_config


def saved_model_config(run_dir: Path, kind: str) -> dict:
    """The model config of an existing run of `kind`, which --resume rebuilds it from."""
    return saved_run_config(run_dir, kind)["model"]


def initial_dpm(path: Path) -> LoadedDPM:
    """The DPM that pretrain --init starts from: pretrain trains pdae's own UNet, so only checkpoints that
    load into it qualify (not a diffusers folder)."""
    from pdae.backbones import open_dpm
    from pdae.nn.unet import UNet

    loaded = open_dpm(path)
    if not isinstance(loaded.unet, UNet):
        raise PdaeError(f"--init {path}: a {loaded.family} model does not load into pdae's UNet, the network "
                        f"pretrain trains")
    return loaded


def architecture_against(model_config: dict, asked: dict[str, object]) -> dict[str, tuple[object, object]]:
    """For each of pretrain's architecture options: (what the DPM config has, what the options ask)."""
    from pdae.nn.unet import UNetConfig

    unet, schedule = model_config["unet"], model_config["schedule"]
    has = {"image_size": unet["image_size"], "channels": unet["in_channels"],
           "preset": preset_name(UNetConfig.from_dict(unet)), "schedule": schedule["name"],
           "timesteps": schedule["num_timesteps"]}
    return {name: (has[name], asked[name]) for name in has}


def pretrain(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoints, config and logs.")],
    data: o.Data = o.SHIPPED_MNIST,
    split: o.Split = "train",
    limit: o.Limit = None,
    image_size: Annotated[
        int, typer.Option(help="Model resolution; images are resized and center-cropped.")
    ] = 28,
    channels: Annotated[int, typer.Option(help="1 for grayscale, 3 for RGB.")] = 1,
    preset: PresetName = "small",
    init: Annotated[Optional[Path], typer.Option(
        "--init", help="Start from this DPM's weights instead of random ones, with its architecture and "
                       "schedule: to train a DPM longer or fine-tune it on other images. Any checkpoint that "
                       "pdae loads into its own UNet (inspect-dpm tells).")] = None,
    schedule: Annotated[str, typer.Option(help="Noise schedule: linear or cosine.")] = "linear",
    timesteps: Annotated[int, typer.Option(help="Number of diffusion steps T.")] = 1000,
    min_snr: Annotated[Optional[float], typer.Option(
        "--min-snr", metavar="GAMMA",
        help="Weight each t's loss by min(SNR_t, GAMMA) / SNR_t (Min-SNR-gamma, Hang et al. 2023; 5 is "
             "theirs): the nearly clean steps count less, the steps where shapes form as before. Default: "
             "DDPM's unweighted loss.")] = None,
    images: o.TotalImages = "1M",
    batch_size: o.TrainBatch = 64,
    lr: o.LearningRate = 2e-4,
    ema_halflife: o.EmaHalflife = "50k",
    checkpoint_every: o.CheckpointEvery = "100k",
    bf16: o.Bf16 = None,
    hflip: o.Hflip = False,
    seed: o.Seed = 0,
    resume: o.Resume = False,
    skip_bad: o.SkipBad = False,
    workers: o.Workers = 0,
    compile: o.Compile = False,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Train an unconditional eps-prediction diffusion model (the DPM that PDAE builds on)."""
    from pdae.backbones import build_dpm, dpm_config
    from pdae.data import open_dataset
    from pdae.losses import EpsLoss
    from pdae.schedule import NoiseSchedule
    from pdae.training import train

    target = o.prepare_runtime(threads, device)
    o.choice(preset, list(PRESETS), "preset")
    if min_snr is not None and not min_snr > 0:
        raise typer.BadParameter(f"--min-snr must be positive, got {min_snr}")
    if resume and init is not None:
        raise PdaeError("--init starts a new run from a DPM and --resume continues a run: give one of them")
    asked = {"image_size": image_size, "channels": channels, "preset": preset, "schedule": schedule,
             "timesteps": timesteps}
    initial = initial_dpm(init) if init is not None else None
    if resume:
        run_config = saved_run_config(out, "dpm")
        model_config = run_config["model"]
        o.refuse_changed_on_resume(out, architecture_against(model_config, asked))
        saved_min_snr = run_config.get("loss", {}).get("min_snr")  # older runs recorded no loss settings
        o.refuse_changed_model("the run", f"--resume continues {out} with the loss it was started with",
                               {"min_snr": (saved_min_snr, min_snr)})
        min_snr = saved_min_snr
    elif initial is not None:
        model_config = dpm_config(initial.unet.config, initial.schedule)
        o.refuse_changed_model(str(init), f"--init starts from {init}'s architecture and schedule",
                               architecture_against(model_config, asked))
        o.console.print(f"starting from the weights of {init}")
    else:
        model_config = dpm_config(PRESETS[preset](image_size, channels), NoiseSchedule(schedule, timesteps))
    unet, noise_schedule = build_dpm(model_config) if initial is None else (initial.unet, initial.schedule)
    dataset = open_dataset(data, image_size=unet.config.image_size, channels=unet.config.in_channels,
                           split=split, limit=limit, hflip=hflip, skip_bad=skip_bad)
    o.console.print(f"data: {dataset.describe()}")
    o.console.print(f"model: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters, "
                    f"{noise_schedule}")
    cfg = o.train_config(images, batch_size, lr, ema_halflife, checkpoint_every, bf16, seed, workers,
                         compile, target)
    train(unet, EpsLoss(noise_schedule, min_snr=min_snr), dataset, cfg, out, model_config, resume=resume,
          description="pretrain", device=target, loss_config={"min_snr": min_snr})
    o.console.print(f"[green]done:[/] EMA weights in {out / 'ema.safetensors'}")


def sample(
    run: Annotated[Optional[Path], typer.Argument(
        show_default=False, help="A PDAE run folder or .safetensors file: sample codes z from its latent DPM "
                                 "(see `pdae latent fit`) and decode them with the PDAE. Without it, the DPM "
                                 "of --dpm samples on its own.")] = None,
    dpm: Annotated[Path, typer.Option(help="DPM run folder or .safetensors file, or any DPM inspect-dpm "
                                      "reads. Default: the shipped MNIST DPM.")] = o.SHIPPED_DPM,
    out: o.Out = Path("samples.png"),
    num: Annotated[int, typer.Option("--num", "-n", min=1, help="Number of samples.")] = 64,
    steps: Annotated[int, typer.Option(help="Sampling steps (respaced from the DPM's T).")] = 100,
    sampler: Annotated[
        str, typer.Option(help="ddim (deterministic, eta 0) or ddpm (ancestral, eta 1).")
    ] = "ddim",
    latent: Annotated[Optional[Path], typer.Option(help="With RUN: its latent DPM (default: RUN/latent, or "
                                                   "<name>_latent.safetensors beside a file).")] = None,
    latent_steps: Annotated[int, typer.Option(min=1, help="With RUN: DDIM steps of the latent DPM.")] = 100,
    stop_fraction: Annotated[Optional[float], typer.Option(
        show_default=False, help="With RUN: the last share of decoding steps run without PDAE's shift; "
        "default 0.3 for latent-DPM codes (measured best on MNIST, see README) and 0 for a class-conditional "
        "PDAE.")] = None,
    truncate: Annotated[Optional[float], typer.Option(
        min=0.01, help="With RUN: clamp the standardised latent x_T and every predicted z_0 to "
                       "[-T, T] (default: no clamp).")] = None,
    label: Annotated[Optional[int], typer.Option("--class", help="With a class-conditional RUN: the class "
                                                 "to sample.")] = None,
    scale: Annotated[str, typer.Option(help="With RUN: comma-separated scales of G's shift, one row of "
                                       "samples each (0: the bare DPM), e.g. 0,0.5,1,2,3.")] = "1",
    seed: o.Seed = 0,
    batch_size: o.BatchSize = 256,
    npz: Annotated[Optional[Path], typer.Option(help="Also write the samples as an (N, C, H, W) array "
                                                "in [0, 1] under the key 'samples'.")] = None,
    fid: Annotated[Optional[Path], typer.Option(
        help="Also score the samples by their FID against these images (their test split when they have "
             "one), printed and saved as <out>.json: the TF-FID Inception for RGB (pip install 'pdae[fid]'), "
             "the shipped MNIST classifier for 28 px digits, or --fid-features.")] = None,
    fid_features: o.FidFeatures = None,
    fid_reference_images: o.FidReferenceImages = None,
    device: o.Device = None,
    threads: o.Threads = None,
) -> None:
    """Draw samples from a DPM, or from a PDAE through its latent DPM; write a PNG grid (and an .npz), and
    with --fid their FID against a dataset."""
    from pdae.backbones import load_dpm
    from pdae.images import save_grid, save_npz
    from pdae.sampling import sample_with_dpm

    o.choice(sampler, ("ddim", "ddpm"), "sampler")
    if fid is not None and "," in scale:
        raise typer.BadParameter("--fid scores samples of one G scale: give one --scale")
    if fid is None and (fid_features is not None or fid_reference_images is not None):
        flag = "--fid-features" if fid_features is not None else "--fid-reference-images"
        raise typer.BadParameter(f"{flag} applies with --fid DATA")
    if fid is not None and not fid.exists():  # checked before minutes of sampling, not after
        raise typer.BadParameter(f"--fid {fid} does not exist: give the images to compare the samples with")
    if run is not None:
        from pdae.commands.latent import sample_from_pdae

        if sampler != "ddim" or o.typed("dpm"):
            raise typer.BadParameter("with RUN, samples decode by DDIM with the PDAE's own DPM: drop "
                                     "--sampler and --dpm")
        try:
            scales = [float(v) for v in scale.split(",")]
        except ValueError:
            raise typer.BadParameter(f"--scale must be comma-separated numbers, got {scale!r}") from None
        images = sample_from_pdae(run, out, num, steps, seed, batch_size, latent, latent_steps, stop_fraction,
                                  truncate, label, scales, npz, device, threads)
        if fid is not None:
            report_fid(images, fid, fid_reference_images, fid_features, {"run": str(run), "decoding_steps": steps},
                       out, device)
        return
    pdae_only = [name for name in ("latent", "latent_steps", "stop_fraction", "truncate", "label", "scale")
                 if o.typed(name)]
    if pdae_only:
        flag = {"label": "class"}.get(pdae_only[0], pdae_only[0]).replace("_", "-")
        raise typer.BadParameter(f"--{flag} applies to sampling from a PDAE: "
                                 "pass its RUN")
    target = o.prepare_runtime(threads, device)
    unet, schedule = load_dpm(dpm)
    images = sample_with_dpm(unet.to(target), schedule, num, steps, eta=1.0 if sampler == "ddpm" else 0.0,
                             seeds=range(seed, seed + num), batch_size=batch_size)
    o.console.print(f"wrote {save_grid(images, out)}")
    if npz is not None:
        o.console.print(f"wrote {save_npz(npz, samples=images)}")
    if fid is not None:
        report_fid(images, fid, fid_reference_images, fid_features,
                   {"dpm": str(dpm), "sampler": sampler, "steps": steps}, out, device)


def report_fid(images: Tensor, data: Path, reference_limit: int | None, classifier: Path | None, settings: dict,
               out: Path, device: str | None) -> None:
    """Print and save (<out>.json) the FID of samples in [-1, 1] against `data`'s test split (or all of
    `data` when it has no split; `reference_limit` of them when given), at the samples' resolution and
    channel count; the feature network runs on `device`, as the sampling did."""
    import torch

    from pdae.data import to_unit_range
    from pdae.device import pick_device
    from pdae.evaluation import fid_against, test_reference
    from pdae.fid import feature_network

    _, channels, size, _ = images.shape
    reference = test_reference(data, size, channels, reference_limit)
    features, name = feature_network(channels, size, classifier, pick_device(device))
    sample_features = torch.cat([features(to_unit_range(batch)) for batch in images.split(250)])
    report = {**fid_against(sample_features, reference, features, name), **settings,
              "reference": f"{data} ({reference.which})"}
    path = out.with_suffix(".json")
    path.write_text(json.dumps(report, indent=2))
    o.console.print(f"FID {report['fid']:.2f} of {report['num_samples']} samples against "
                    f"{report['reference_images']} images of {report['reference']}, {name} -> {path}")


def inspect_dpm(
    path: Annotated[Path, typer.Argument(help="The DPM: a pdae run folder or .safetensors file, an OpenAI "
                                         "guided-diffusion .pt state dict, a Diff-AE .ckpt, a "
                                         "reference-PDAE folder with config.yml and checkpoint.pt, or a "
                                         "diffusers UNet2DModel (or pipeline) folder with its "
                                         "scheduler_config.json.")],
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="Model config YAML of a guided-diffusion .pt (its flags) or a Diff-AE .ckpt; "
        "default: <stem>.yaml or config.yaml next to the file.")] = None,
) -> None:
    """Say what a DPM checkpoint is, as pdae loads it: family, size, schedule, preset, parameters."""
    from pdae.backbones import describe_dpm, open_dpm

    for key, value in describe_dpm(open_dpm(path, config)).items():
        typer.echo(f"{key + ':':<19} {value}")
