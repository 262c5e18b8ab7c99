"""The `pdae` command line: one entry point, one sub-command per task."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console

from pdae.errors import PdaeError

console = Console(stderr=True)
app = typer.Typer(
    help="Turn a pre-trained diffusion model into an autoencoder and representation learner (PDAE).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

SHIPPED_MNIST = Path(__file__).parent / "assets" / "mnist"
SHIPPED_DPM = Path(__file__).parent / "assets" / "checkpoints" / "mnist_dpm.safetensors"
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


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count from the caller (never at import, which would overload torchrun)."""
    if threads:
        torch.set_num_threads(threads)


@app.callback()
def root() -> None:
    """pdae: PDAE on any pre-trained diffusion model. Run `pdae demo` for a tour on MNIST."""


DataOpt = Annotated[Path, typer.Option("--data", help="Images: an MNIST IDX folder, an image folder, an "
                                       "LMDB folder or an .npz file. Default: the MNIST copy shipped with pdae.")]
SplitOpt = Annotated[str, typer.Option(help="Dataset split, for datasets that have one (train or test).")]
LimitOpt = Annotated[Optional[int], typer.Option(help="Use only the first N images.")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="CPU threads for torch (default: torch's choice).")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Skip unreadable images with a warning instead "
                                          "of stopping.")]


@app.command()
def pretrain(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for checkpoints, config and logs.")],
    data: DataOpt = SHIPPED_MNIST,
    split: SplitOpt = "train",
    limit: LimitOpt = None,
    image_size: Annotated[int, typer.Option(help="Model resolution; images are resized and center-cropped.")] = 28,
    channels: Annotated[int, typer.Option(help="1 for grayscale, 3 for RGB.")] = 1,
    preset: Annotated[str, typer.Option(help="UNet size: tiny, small or base.")] = "small",
    schedule: Annotated[str, typer.Option(help="Noise schedule: linear or cosine.")] = "linear",
    timesteps: Annotated[int, typer.Option(help="Number of diffusion steps T.")] = 1000,
    images: Annotated[str, typer.Option(help="Stop after this many training images (e.g. 500k, 2M).")] = "1M",
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-4,
    ema_halflife: Annotated[str, typer.Option(help="EMA half-life in images.")] = "50k",
    checkpoint_every: Annotated[str, typer.Option(help="Write a checkpoint every this many images.")] = "100k",
    bf16: Annotated[bool, typer.Option(help="bf16 autocast (about 2x faster on CPU and GPU).")] = True,
    hflip: Annotated[bool, typer.Option(help="Random horizontal flips (not for digits).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of every random draw in training.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out where it stopped.")] = False,
    skip_bad: SkipBadOpt = False,
    threads: ThreadsOpt = None,
) -> None:
    """Train an unconditional eps-prediction diffusion model (the DPM that PDAE builds on)."""
    from pdae.data import open_dataset
    from pdae.dpm import PRESETS, build_dpm, dpm_config
    from pdae.losses import EpsLoss
    from pdae.schedule import NoiseSchedule
    from pdae.training import CONFIG_NAME, TrainConfig, train

    set_threads(threads)
    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if resume:
        model_config = json.loads((out / CONFIG_NAME).read_text())["model"] if (out / CONFIG_NAME).is_file() else {}
    else:
        model_config = dpm_config(PRESETS[preset](image_size, channels), NoiseSchedule(schedule, timesteps))
    if not model_config:
        raise PdaeError(f"nothing to resume in {out}")
    unet, noise_schedule = build_dpm(model_config)
    unet_cfg = unet.config
    dataset = open_dataset(data, image_size=unet_cfg.image_size, channels=unet_cfg.in_channels, split=split,
                           limit=limit, hflip=hflip, skip_bad=skip_bad)
    console.print(f"data: {dataset.describe()}")
    console.print(f"model: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters, {noise_schedule}")
    cfg = TrainConfig(total_images=parse_count(images), batch_size=batch_size, lr=lr,
                      ema_halflife_images=parse_count(ema_halflife), checkpoint_images=parse_count(checkpoint_every),
                      bf16=bf16, seed=seed)
    train(unet, EpsLoss(noise_schedule), dataset, cfg, out, model_config, resume=resume, description="pretrain")
    console.print(f"[green]done:[/] EMA weights in {out / 'ema.safetensors'}")


@app.command()
def sample(
    dpm: Annotated[Path, typer.Option(help="DPM run folder or .safetensors file. Default: the shipped MNIST DPM.")]
    = SHIPPED_DPM,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG grid to write.")] = Path("samples.png"),
    num: Annotated[int, typer.Option("--num", "-n", help="Number of samples.")] = 64,
    steps: Annotated[int, typer.Option(help="Sampling steps (respaced from the DPM's T).")] = 100,
    sampler: Annotated[str, typer.Option(help="ddim (deterministic, eta 0) or ddpm (ancestral, eta 1).")] = "ddim",
    seed: Annotated[int, typer.Option(help="Sample i uses seed + i: any one sample can be redrawn alone.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    npz: Annotated[Optional[Path], typer.Option(help="Also write the samples as an (N, C, H, W) array "
                                                "in [0, 1] under the key 'samples'.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Draw samples from a DPM and write them as a PNG grid (and optionally an .npz array)."""
    from pdae.dpm import load_dpm
    from pdae.images import save_grid, save_npz
    from pdae.sampling import sample_with_dpm

    set_threads(threads)
    if sampler not in ("ddim", "ddpm"):
        raise typer.BadParameter(f"unknown sampler {sampler!r}; choose ddim or ddpm")
    unet, schedule = load_dpm(dpm)
    images = sample_with_dpm(unet, schedule, num, steps, eta=1.0 if sampler == "ddpm" else 0.0,
                             seeds=range(seed, seed + num), batch_size=batch_size)
    console.print(f"wrote {save_grid(images, out)}")
    if npz is not None:
        console.print(f"wrote {save_npz(npz, samples=images)}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's pictures.")] = Path("runs/demo"),
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    threads: ThreadsOpt = None,
) -> None:
    """Tour on MNIST with the shipped pre-trained DPM: DDIM and DDPM samples, written as PNG grids."""
    from pdae.dpm import load_dpm
    from pdae.images import save_grid
    from pdae.sampling import sample_with_dpm

    set_threads(threads)
    unet, schedule = load_dpm(SHIPPED_DPM)
    console.print(f"shipped DPM: {SHIPPED_DPM}")
    for name, eta in (("ddim", 0.0), ("ddpm", 1.0)):
        images = sample_with_dpm(unet, schedule, 64, steps, eta=eta, seeds=range(64))
        console.print(f"{name} samples ({steps} steps): {save_grid(images, out / f'samples_{name}.png')}")


def main() -> None:
    """Entry point: user mistakes end with a one-line message and exit code 2, not a traceback."""
    try:
        app()
    except PdaeError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: a training run continues with --resume")
        sys.exit(130)
