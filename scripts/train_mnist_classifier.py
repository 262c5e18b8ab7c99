"""Train pdae's small CNN classifier on the shipped MNIST train split, then report its test accuracy.

    python scripts/train_mnist_classifier.py --threads 2        # -> runs/mnist_classifier

The run folder holds the EMA weights (ema.safetensors, loadable with pdae.classifier.load_classifier),
the run config, and metrics.json with the accuracy on the 10k test images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.console import Console

from pdae.checkpoint import WEIGHTS_NAME
from pdae.classifier import CrossEntropyLoss, accuracy, build_classifier, classifier_config
from pdae.cli import run_reporting_errors
from pdae.commands.options import SHIPPED_MNIST, parse_count
from pdae.data import open_dataset
from pdae.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
console = Console(stderr=True)


def count(text: str) -> int:
    """An image count like 120000, 120k, 1.2M or 1e5, for argparse."""
    try:
        return parse_count(text)
    except Exception as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "mnist_classifier", help="run folder")
    parser.add_argument("--data", type=Path, default=SHIPPED_MNIST,
                        help="MNIST IDX folder (default: shipped)")
    parser.add_argument("--images", type=count, default=120_000, help="training images, e.g. 120000 or 120k")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    train_set = open_dataset(args.data, image_size=28, channels=1, split="train")
    test_set = open_dataset(args.data, image_size=28, channels=1, split="test")
    console.print(f"data: {train_set.describe()}")
    config = classifier_config(in_channels=1, num_classes=train_set.num_classes or 10, image_size=28)
    net = build_classifier(config)
    console.print(f"model: {sum(p.numel() for p in net.parameters()) / 1e3:.1f}k parameters")
    cfg = TrainConfig(total_images=args.images, batch_size=args.batch_size, lr=args.lr,
                      warmup_images=5_000, checkpoint_images=60_000, seed=args.seed)

    start = time.perf_counter()
    ema = train(net, CrossEntropyLoss(), train_set, cfg, args.out, config, resume=args.resume,
                description="classifier")
    train_s = time.perf_counter() - start

    test_accuracy = accuracy(ema.eval().cpu(), test_set)
    metrics = {"test_accuracy": test_accuracy, "test_images": len(test_set),
               "train_images": -(-cfg.total_images // cfg.batch_size) * cfg.batch_size,
               "train_seconds": round(train_s, 1), "weights": str(args.out / WEIGHTS_NAME)}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"test accuracy: {100 * test_accuracy:.2f} % on {len(test_set)} images")


if __name__ == "__main__":
    run_reporting_errors(main)
