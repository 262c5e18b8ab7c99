"""Throughput of the training image pipeline alone: decoding, resizing, flips, batching, worker processes.

    python benchmarks/data_pipeline.py [FOLDER] [--workers 0 2 4] [--batches 100]

Iterates pdae.data.training_batches over a folder of images (default: the UTKFace 64 px train split,
21,403 JPEGs) at 64 px RGB with random flips, batch 64: after a warm-up that also starts the workers,
a fixed number of batches is timed for each worker count. Prints images per second and writes
benchmarks/results/data_pipeline.json. This is the ceiling the data puts on training; beside it, with
--pdae-step, the img/s of an fp32 PDAE training step at the same size (a random 64 px DPM of the
"adm-64-cpu" preset, G from its decoder), so the two can be compared: the pipeline must not be the
bottleneck. (fp32: bf16 autocast is only faster on CPUs with native bf16, which this one lacks.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import torch

from pdae.data import open_dataset, training_batches

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "utkface-64" / "train"
OUT = ROOT / "benchmarks" / "results" / "data_pipeline.json"


def images_per_s(dataset, workers: int, batch_size: int, warmup: int, batches: int) -> float:
    """Images per second over `batches` batches, timed after `warmup` batches."""
    stream = training_batches(dataset, batch_size, seed=0, workers=workers)
    for _ in itertools.islice(stream, warmup):
        pass
    start = time.perf_counter()
    count = sum(len(x) for x, _ in itertools.islice(stream, batches))
    return count / (time.perf_counter() - start)


def pdae_step_images_per_s(batch_size: int) -> float:
    """img/s of full fp32 PDAE training steps at 64 px RGB."""
    from pdae.backbones import PRESETS
    from pdae.evaluation import training_throughput
    from pdae.model import PDAE, PDAEConfig
    from pdae.nn.unet import UNet
    from pdae.schedule import NoiseSchedule

    model = PDAE(UNet(PRESETS["adm-64-cpu"](64, 3)), NoiseSchedule("linear", 1000),
                 PDAEConfig(latent_dim=512, init_from_dpm=True))
    return training_throughput(model, torch.rand(batch_size, 3, 64, 64) * 2 - 1, bf16=False, steps=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?", default=DEFAULT_DATA, help="Folder of images.")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=10, help="Batches read before timing.")
    parser.add_argument("--batches", type=int, default=100, help="Batches timed.")
    parser.add_argument("--pdae-step", action="store_true", help="Also time a 64 px PDAE training step.")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no image folder at {args.data}; pass one as the first argument")

    dataset = open_dataset(args.data, image_size=64, channels=3, hflip=True)
    result = {"data": str(args.data), "images": len(dataset), "image_size": 64, "channels": 3, "hflip": True,
              "batch_size": args.batch_size, "warmup_batches": args.warmup, "timed_batches": args.batches,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "load_average_1min_before": os.getloadavg()[0], "images_per_s": {}}
    for workers in args.workers:
        rate = images_per_s(dataset, workers, args.batch_size, args.warmup, args.batches)
        result["images_per_s"][str(workers)] = round(rate, 1)
        print(f"workers {workers}: {rate:,.0f} images/s", flush=True)
    if args.pdae_step:
        result["pdae_step_images_per_s"] = round(pdae_step_images_per_s(args.batch_size), 1)
        print(f"PDAE training step, 64 px: {result['pdae_step_images_per_s']:,.1f} images/s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
