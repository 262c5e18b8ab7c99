"""The baseline a linear probe on z has to beat: the same probe on the raw pixels.

    python benchmarks/pixel_probe.py DATA --labels folders --image-size 32 --channels 3 --threads 2

`pdae eval`'s linear probe (multinomial logistic regression on standardised features, L-BFGS) fit on
--probe-train training images of DATA (as eval picks them: the first N of a file, a spread-out sample of
a folder) and scored on all its test images, with the flattened pixels in place of z. Prints the accuracy
and writes benchmarks/results/pixel_probe_<data name>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pdae.cli import run_reporting_errors
from pdae.data import iterate_batches, open_dataset
from pdae.probes import linear_probe_accuracy

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="images with a train and a test split")
    parser.add_argument("--labels", default=None, help="'folders' or a label CSV ('{split}' allowed), as eval")
    parser.add_argument("--label-column", default=None, help="the CSV column of the class label")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--probe-train", type=int, default=10_000, help="training images (eval's default)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=None, help="JSON to write")
    return parser.parse_args()


def flattened_pixels(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of `dataset` as rows of pixels in [-1, 1], and their labels."""
    batches = list(iterate_batches(dataset, 500))
    return torch.cat([x.flatten(1) for x, _ in batches]), torch.cat([y for _, y in batches])


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train, test = (open_dataset(args.data, image_size=args.image_size, channels=args.channels, split=split,
                                limit=limit, labels=args.labels, label_column=args.label_column)
                   for split, limit in (("train", args.probe_train), ("test", None)))
    accuracy = linear_probe_accuracy(*flattened_pixels(train), *flattened_pixels(test))
    report = {"data": str(args.data), "features": f"pixels ({args.channels}x{args.image_size}x{args.image_size})",
              "probe_train_images": len(train), "test_images": len(test), "linear_probe_accuracy": accuracy}
    out = args.out or ROOT / "benchmarks" / "results" / f"pixel_probe_{args.data.resolve().name}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"linear probe on pixels: {100 * accuracy:.2f} % ({len(train)} training, {len(test)} test images) -> {out}")


if __name__ == "__main__":
    run_reporting_errors(main)
