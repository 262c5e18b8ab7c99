"""PDAE on a pre-trained DPM against the Diff-AE baseline from scratch, at equal training images.

    python benchmarks/efficiency.py --threads 2                          # MNIST, 25k ... 200k images
    python benchmarks/efficiency.py --milestones 25k 50k --methods pdae  # a part of it

Both use the same encoder, latent size, batch, learning rate, EMA and seed; Diff-AE's UNet has the shipped
DPM's architecture and starts from random weights, PDAE's G starts from the DPM's decoder (its default).
Each method trains with `pdae fit [--method diffae]` up to the first milestone, is scored, then resumes
(`--resume --images NEXT`) to the next. After every milestone, on held-out test images:

- reconstruction MSE from a random x_T (--recon-images images, 50 DDIM steps): what z alone carries;
- the posterior-mean gap filled, as a share of the frozen DPM's gap on the same images and noise (for
  Diff-AE too, whose own gap is compared with that DPM's);
- linear-probe accuracy of z (10k train codes, the 10k test codes).

The JSON (benchmarks/results/efficiency_mnist.json, or --out) is rewritten after every milestone and a
rerun skips what it already holds, so the benchmark can be spread over several sessions; the plot is
written beside it. Run folders go to --workdir (default runs/efficiency).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from pdae.autoencode import StepCounts
from pdae.backbones import load_dpm
from pdae.commands.options import SHIPPED_DPM, SHIPPED_MNIST, parse_count
from pdae.data import iterate_batches, open_dataset
from pdae.evaluation import gap_report, mean_scores, probe_accuracy, reconstruction_scores
from pdae.model import PDAE, PDAEConfig, load_pdae

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "efficiency_mnist.json"
METHODS = ("pdae", "diffae")


def train_to(method: str, run: Path, images: int, args: argparse.Namespace) -> None:
    """Train `method`'s run up to `images` images seen, starting it or resuming it."""
    command = [sys.executable, "-m", "pdae", "fit", "--out", str(run), "--dpm", str(args.dpm), "--data",
               str(args.data), "--method", method, "--latent-dim", str(args.latent_dim), "--images", str(images),
               "--checkpoint-every", str(images)]
    if (run / "train_state.pt").exists():
        command.append("--resume")
    if args.threads:
        command += ["--threads", str(args.threads)]
    subprocess.run(command, check=True)


def held_out(args: argparse.Namespace, model, split: str, limit: int | None):
    return open_dataset(args.data, image_size=model.image_size, channels=model.in_channels, split=split,
                        limit=limit)


def dpm_gap_integral(args: argparse.Namespace, x_gap: torch.Tensor) -> float:
    """The frozen DPM's posterior-mean gap on the gap images and noise every run is scored on (a PDAE whose
    G is still zero, so exactly the DPM, has it as its 'dpm' entry)."""
    unet, schedule = load_dpm(args.dpm)
    return gap_report(PDAE(unet, schedule, PDAEConfig(args.latent_dim)), x_gap, num_t=25)["integral_dpm"]


def score(run: Path, args: argparse.Namespace) -> dict:
    """Held-out random-x_T MSE, gap filled and probe accuracy of a run's EMA weights."""
    model = load_pdae(run)
    recon = mean_scores(reconstruction_scores(model, held_out(args, model, "test", args.recon_images),
                                              StepCounts(1, 50)))  # a random x_T needs no inversion
    x_gap, _ = next(iterate_batches(held_out(args, model, "test", 256), 256))
    gap = gap_report(model, x_gap, num_t=25)
    own, dpm = gap.get("integral_pdae", gap.get("integral_diffae")), dpm_gap_integral(args, x_gap)
    probe = probe_accuracy(model, held_out(args, model, "train", 10000), held_out(args, model, "test", None))
    return {"random_xT_mse": recon["random_xT_mse"], "random_xT_ssim": recon["random_xT_ssim"],
            "gap_integral": own, "dpm_gap_integral": dpm, "gap_share_filled": 1 - own / dpm,
            "linear_probe_accuracy": probe}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("random_xT_mse", "random-x_T MSE (lower is better)"),
               ("gap_share_filled", "share of the DPM's gap filled"),
               ("linear_probe_accuracy", "linear-probe accuracy"))
    milestones = sorted({int(images) for rows in results.values() for images in rows})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (key, title) in zip(axes, metrics):
        for method, label in (("pdae", "PDAE (pre-trained DPM)"), ("diffae", "Diff-AE (from scratch)")):
            points = sorted((int(images), row[key]) for images, row in results.get(method, {}).items()
                            if row.get(key) is not None)
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set(xlabel="training images", title=title, xscale="log")
        ax.set_xticks(milestones, [f"{images / 1000:g}k" for images in milestones])  # one tick per milestone
        ax.minorticks_off()
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dpm", type=Path, default=SHIPPED_DPM)
    parser.add_argument("--data", type=Path, default=SHIPPED_MNIST)
    parser.add_argument("--milestones", nargs="+", default=["25k", "50k", "100k", "200k"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--recon-images", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "efficiency")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    milestones = sorted(parse_count(m) for m in args.milestones)
    for method in args.methods:
        for images in milestones:
            if str(images) in results.get(method, {}):
                continue
            run = args.workdir / method
            train_to(method, run, images, args)
            results.setdefault(method, {})[str(images)] = score(run, args)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))
            print(json.dumps({method: {images: results[method][str(images)]}}), flush=True)
            plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
