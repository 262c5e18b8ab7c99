"""Unconditional samples on MNIST: the bare DPM against PDAE + its latent DPM, judged by a classifier.

    python benchmarks/pdae_sampling.py --threads 2                     # the shipped PDAE and latent DPM

For the bare DPM (the PDAE's frozen one) and for PDAE + latent DPM at each --stop-fractions value:
--num-samples DDIM samples (--steps steps, sample i from seed i), the share the classifier labels with
max softmax > 0.9, and FID on the classifier's pooled features against the 10,000 MNIST test images.
Writes the JSON (--out) after each setting, and a PNG grid of the first 64 samples of each setting beside
it; a rerun with the same run and step counts skips the settings the JSON already holds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pdae.autoencode import StepCounts
from pdae.checkpoint import resolve_weights_path
from pdae.classifier import SHIPPED_MNIST_CLASSIFIER, load_classifier, predict_proba
from pdae.commands.options import SHIPPED_MNIST, SHIPPED_PDAE
from pdae.data import iterate_batches, open_dataset
from pdae.images import save_grid
from pdae.latent import latent_path, load_latent_dpm, sample_images
from pdae.fid import frechet_distance
from pdae.model import load_pdae
from pdae.progress import progress_bar
from pdae.sampling import sample_with_dpm

ROOT = Path(__file__).resolve().parents[1]
CONFIDENCE = 0.9


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=SHIPPED_PDAE, help="PDAE run folder or .safetensors")
    parser.add_argument("--latent", type=Path, default=None, help="its latent DPM (default: beside it)")
    parser.add_argument("--classifier", type=Path, default=SHIPPED_MNIST_CLASSIFIER,
                        help="the judge (default: the shipped MNIST classifier)")
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="DDIM steps of the image decoding")
    parser.add_argument("--latent-steps", type=int, default=100, help="DDIM steps of the latent DPM")
    parser.add_argument("--stop-fractions", default="0,0.1,0.3", help="comma-separated values to compare")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pdae_sampling_mnist.json")
    return parser.parse_args()


@torch.no_grad()
def judge(classifier: torch.nn.Module, samples: torch.Tensor, reference_features: torch.Tensor) -> dict:
    """Confident share and FID on the classifier's features; samples in [0, 1]."""
    images = samples * 2 - 1
    probabilities = predict_proba(classifier, images)
    features = torch.cat([classifier.embed(images[i : i + 500]) for i in range(0, len(images), 500)])
    return {"confident_share": float((probabilities.max(1).values > CONFIDENCE).float().mean()),
            "fid_classifier_features": frechet_distance(features, reference_features),
            "class_histogram": torch.bincount(probabilities.argmax(1), minlength=10).tolist()}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_pdae(args.run)
    latent = load_latent_dpm(args.latent or latent_path(args.run))
    classifier = load_classifier(resolve_weights_path(args.classifier))
    test_images = torch.cat([x for x, _ in iterate_batches(
        open_dataset(SHIPPED_MNIST, image_size=model.dpm.image_size, channels=1, split="test"), 1000)])
    with torch.no_grad():
        reference = torch.cat([classifier.embed(test_images[i : i + 500]) for i in range(0, len(test_images), 500)])
    seeds = list(range(args.num_samples))
    results: dict = {"run": str(args.run), "num_samples": args.num_samples, "steps": args.steps,
                     "latent_steps": args.latent_steps, "confidence": CONFIDENCE, "settings": {}, "seconds": {}}
    if args.out.exists():  # a rerun with the same sampling keeps the settings already measured
        saved = json.loads(args.out.read_text())
        if all(saved.get(k) == results[k] for k in ("run", "num_samples", "steps", "latent_steps")):
            results = saved
    fractions = [float(v) for v in args.stop_fractions.split(",")]
    for name in ["bare_dpm", *(f"pdae_stop_{fraction:g}" for fraction in fractions)]:
        if name in results["settings"]:
            continue
        started = time.perf_counter()
        if name == "bare_dpm":
            images = sample_with_dpm(model.dpm, model.schedule, args.num_samples, args.steps, 0.0, seeds,
                                     args.batch_size)
        else:
            fraction, batches = float(name.removeprefix("pdae_stop_")), []
            with progress_bar(f"PDAE, stop fraction {fraction:g}", total=args.num_samples, fields=()) as bar:
                for start in range(0, args.num_samples, args.batch_size):
                    batch = seeds[start : start + args.batch_size]
                    batches.append(sample_images(model, latent, batch, StepCounts(decoding=args.steps),
                                                 args.latent_steps, fraction).cpu())
                    bar.update(len(batch))
            images = torch.cat(batches)
        results["settings"][name] = judge(classifier, ((images + 1) / 2).clamp(0, 1), reference)
        results["seconds"][name] = time.perf_counter() - started
        save_grid(images[:64], args.out.with_name(f"{args.out.stem}_{name}.png"))
        print(name, json.dumps({k: v for k, v in results["settings"][name].items() if k != "class_histogram"}))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
