"""Evaluate an MNIST DPM: eps-MSE on test images at fixed t, and DDIM samples judged by a classifier.

    python benchmarks/evaluate_dpm.py --threads 2
    python benchmarks/evaluate_dpm.py --dpm runs/mnist_dpm --num-samples 50 --steps 10 --out /tmp/dpm.json
    python benchmarks/evaluate_dpm.py --dpm runs/mnist_dpm --device cuda   # on a GPU: seconds, not minutes

(a) eps-MSE: mean over pixels and images of (eps_theta(x_t, t) - eps)^2 on the first --eps-images MNIST
    test images at t = 50, 250, 500, 750, with noise from a fixed seed.
(b) --num-samples DDIM samples (eta 0, --steps steps, sample i from seed i): the share that the
    classifier (see scripts/train_mnist_classifier.py) labels with max softmax > 0.9, and the class
    histograms of all samples and of those confident ones; for scale, the same share of the 10,000 real
    MNIST test digits (a judge that doubts real digits doubts samples too).
(c) a PNG grid of the first 100 samples next to the JSON (<out stem>_samples.png).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from pdae.backbones import load_dpm
from pdae.checkpoint import resolve_weights_path
from pdae.classifier import SHIPPED_MNIST_CLASSIFIER, load_classifier, predict_proba
from pdae.cli import run_reporting_errors
from pdae.commands.options import SHIPPED_DPM, SHIPPED_MNIST, prepare_runtime
from pdae.data import open_dataset
from pdae.errors import PdaeError
from pdae.images import save_grid
from pdae.sampling import eps_of, sample_with_dpm
from pdae.schedule import NoiseSchedule

ROOT = Path(__file__).resolve().parents[1]
EPS_TIMESTEPS = (50, 250, 500, 750)
CONFIDENCE = 0.9
GRID_IMAGES = 100
console = Console()


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dpm", type=Path, default=SHIPPED_DPM, help="DPM .safetensors file or run folder")
    parser.add_argument("--classifier", type=Path, default=SHIPPED_MNIST_CLASSIFIER,
                        help="classifier .safetensors file or run folder (default: the shipped one, which "
                             "scripts/train_mnist_classifier.py trained)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="DDIM steps")
    parser.add_argument("--eps-images", type=int, default=1000, help="test images for the eps-MSE")
    parser.add_argument("--seed", type=int, default=0, help="seed of the eps-MSE noise")
    parser.add_argument("--batch-size", type=int, default=250, help="images per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dpm_mnist.json",
                        help="JSON to write; the sample grid goes next to it")
    return parser.parse_args()


@torch.no_grad()
def eps_mse(unet: torch.nn.Module, schedule: NoiseSchedule, images: torch.Tensor, timesteps: tuple[int, ...],
            seed: int, batch_size: int) -> dict[int, float]:
    """Mean squared eps-prediction error per timestep, the noise drawn from one seeded generator."""
    eps_fn = eps_of(unet, images.shape[1])
    device = next(unet.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for t in timesteps:
        eps = torch.randn(images.shape, generator=generator)
        t_batch = torch.full((len(images),), t, dtype=torch.long)
        x_t = schedule.q_sample(images, t_batch, eps)
        total = 0.0
        for i in range(0, len(images), batch_size):
            pred = eps_fn(x_t[i : i + batch_size].to(device), t_batch[i : i + batch_size].to(device)).float()
            total += (pred.cpu() - eps[i : i + batch_size]).square().sum().item()
        result[t] = total / eps.numel()
    return result


def histogram(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Count of each class in `labels`."""
    return torch.bincount(labels, minlength=num_classes).tolist()


def judge_samples(classifier: torch.nn.Module, samples: torch.Tensor) -> dict:
    """Confident share and class histograms of the samples under the classifier."""
    probs = predict_proba(classifier, samples)
    confidence, predicted = probs.max(-1)
    confident = confidence > CONFIDENCE
    return {
        "confident_share": confident.float().mean().item(),
        "mean_max_softmax": confidence.mean().item(),
        "class_histogram": histogram(predicted, classifier.num_classes),
        "confident_class_histogram": histogram(predicted[confident], classifier.num_classes),
    }


def print_table(result: dict) -> None:
    """A compact summary of the result."""
    table = Table(title=f"DPM {result['dpm']}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for t, value in result["eps_mse"].items():
        table.add_row(f"eps-MSE t={t}", f"{value:.4f}")
    s = result["samples"]
    table.add_row(f"confident share (p>{CONFIDENCE})", f"{100 * s['confident_share']:.1f} %")
    real = result["test_digits"]
    table.add_row(f"the same, {real['num']} test digits", f"{100 * real['confident_share']:.1f} %")
    table.add_row("mean max softmax", f"{s['mean_max_softmax']:.3f}")
    table.add_row("classes (all)", " ".join(map(str, s["class_histogram"])))
    table.add_row("classes (confident)", " ".join(map(str, s["confident_class_histogram"])))
    table.add_row("seconds", f"{result['seconds']:.0f}")
    console.print(table)


def main() -> None:
    args = parse_args()
    device = prepare_runtime(args.threads, args.device)
    start = time.perf_counter()
    dpm_path, classifier_path = resolve_weights_path(args.dpm), resolve_weights_path(args.classifier)
    unet, schedule = load_dpm(dpm_path)
    unet, classifier = unet.to(device), load_classifier(classifier_path).to(device)
    cfg = unet.config
    if (cfg.in_channels, cfg.image_size) != (classifier.in_channels, classifier.image_size):
        raise PdaeError(f"the DPM makes {cfg.in_channels}x{cfg.image_size}^2 images, the classifier reads "
                        f"{classifier.in_channels}x{classifier.image_size}^2")

    test_set = open_dataset(SHIPPED_MNIST, image_size=cfg.image_size, channels=cfg.in_channels, split="test")
    test_images = torch.stack([test_set[i][0] for i in range(len(test_set))])
    images = test_images[: args.eps_images]
    mse = eps_mse(unet, schedule, images, EPS_TIMESTEPS, args.seed, args.batch_size)

    samples = sample_with_dpm(unet, schedule, args.num_samples, args.steps, eta=0.0,
                              seeds=range(args.num_samples), batch_size=args.batch_size)
    grid_path = args.out.with_name(f"{args.out.stem}_samples.png")
    save_grid(samples[:GRID_IMAGES], grid_path)

    result = {
        "dpm": str(dpm_path.resolve()), "classifier": str(classifier_path.resolve()),
        "eps_mse": {str(t): v for t, v in mse.items()}, "eps_images": len(images), "eps_seed": args.seed,
        "samples": {"num": args.num_samples, "sampler": "ddim", "eta": 0.0, "steps": args.steps,
                    "seeds": f"0..{args.num_samples - 1}", **judge_samples(classifier, samples)},
        "test_digits": {"num": len(test_images), **judge_samples(classifier, test_images)},
        "confidence_threshold": CONFIDENCE, "grid": str(grid_path),
        "device": str(device),
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    console.print(f"wrote {args.out} and {grid_path}")


if __name__ == "__main__":
    run_reporting_errors(main)
