"""Inferred-x_T reconstruction against network evaluations: plain DDIM inversion vs fixed-point refinement.

    python benchmarks/autoencode_steps.py --threads 2        # the shipped MNIST PDAE, 64 test images

Each setting infers x_T with `pdae.autoencode.infer_x_T` (`--refine` k fixed-point iterations per
inversion step; 0 is plain DDIM inversion) and decodes it with `pdae.autoencode.decode` in as many DDIM
steps: the public path. Network evaluations count the PDAE's eps evaluations of both halves (the encoder's
one pass is left out). Writes the JSON (--out) after each setting and a plot of SSIM and MSE against
network evaluations beside it; a rerun with the same run and images skips the settings already measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pdae.autoencode import StepCounts, decode, encode, infer_x_T
from pdae.commands.options import SHIPPED_MNIST, SHIPPED_PDAE
from pdae.data import iterate_batches, open_dataset, to_unit_range
from pdae.metrics import mse_per_image, ssim_per_image
from pdae.model import load_pdae
from pdae.sampling import inversion_evaluations

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = "0:10,0:20,0:50,0:100,1:10,1:20,2:5,2:10,2:20,3:5,3:10"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=SHIPPED_PDAE, help="PDAE run folder or .safetensors")
    parser.add_argument("--images", type=Path, default=SHIPPED_MNIST, help="held-out images (test split)")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--settings", default=SETTINGS, help="comma-separated refine:steps pairs")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "autoencode_steps.json")
    return parser.parse_args()


def measure(model, x0: torch.Tensor, refine: int, steps: int) -> dict:
    """Scores and seconds per image of one setting on the batch x0."""
    started = time.perf_counter()
    z = encode(model, x0)
    x_T = infer_x_T(model, x0, z, steps, refine=refine)
    recon = decode(model, z, x_T, StepCounts(steps, steps, refine=refine))
    seconds = time.perf_counter() - started
    ours, target = to_unit_range(recon.cpu()), to_unit_range(x0.cpu())
    return {"refine": refine, "steps": steps, "evaluations": inversion_evaluations(steps, refine) + steps,
            "ssim": float(ssim_per_image(ours, target).mean()), "mse": float(mse_per_image(ours, target).mean()),
            "seconds_per_image": seconds / len(x0)}


def plot(results: dict, path: Path) -> None:
    """SSIM and MSE against network evaluations, one line per refine count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    rows = sorted(results["settings"].values(), key=lambda r: (r["refine"], r["evaluations"]))
    for refine in sorted({r["refine"] for r in rows}):
        mine = [r for r in rows if r["refine"] == refine]
        label = "DDIM inversion" if refine == 0 else f"{refine} fixed-point iterations / step"
        for ax, key in zip(axes, ("ssim", "mse")):
            ax.plot([r["evaluations"] for r in mine], [r[key] for r in mine], "o-", label=label)
    ticks = [t for t in (10, 15, 20, 30, 40, 60, 100, 200, 400, 1000)
             if min(r["evaluations"] for r in rows) * 0.8 <= t <= max(r["evaluations"] for r in rows) * 1.2]
    for ax, key in zip(axes, ("SSIM", "MSE")):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("network evaluations (inversion + decoding)")
        ax.set_ylabel(f"inferred-x_T {key}")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{results['num_images']} held-out images, {Path(results['run']).name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_pdae(args.run).eval()
    dataset = open_dataset(args.images, image_size=model.image_size, channels=model.in_channels, split="test",
                           limit=args.num_images)
    x0, _ = next(iterate_batches(dataset, args.num_images))
    results: dict = {"run": str(args.run), "images": str(args.images), "num_images": len(x0), "settings": {}}
    if args.out.exists():  # a rerun on the same run and images keeps what is measured
        saved = json.loads(args.out.read_text())
        if all(saved.get(k) == results[k] for k in ("run", "images", "num_images")):
            results = saved
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for pair in args.settings.split(","):
        refine, steps = (int(v) for v in pair.split(":"))
        if pair in results["settings"]:
            continue
        results["settings"][pair] = measure(model, x0, refine, steps)
        print(pair, json.dumps(results["settings"][pair]), flush=True)
        args.out.write_text(json.dumps(results, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
