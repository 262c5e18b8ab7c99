"""Measure PDAE design choices on MNIST: latent size, G's initialisation, precision and z pathway.

    python benchmarks/pdae_choices.py --images 15k --variants z16 z64 z256 z64_init_from_dpm
    python benchmarks/pdae_choices.py --images 15k --variants fp32 bf16_frozen_bf16 bf16 bf16_shared_z \
        --out benchmarks/results/pdae_precision_and_z.json
    python benchmarks/pdae_choices.py --images 15k --variants fp32 fp32_shared_z \
        --out benchmarks/results/pdae_z_pathway.json

Each variant trains for the same number of images with the same seed; then, on held-out test images,
we report the PDAE loss (fixed t and noise), the share of the posterior-mean gap filled, the linear-probe
accuracy of z and the training img/s (data loading included). Writes benchmarks/results/pdae_choices.json
(or --out).

The precision variants (z = 64, G from the DPM's decoder): fp32 training; bf16 autocast with the frozen
DPM in bf16 too (pdae before the fix); bf16 with the frozen DPM in fp32 (the default now); and the latter
with z reaching G through one shared projection (the reference's pathway) instead of per-block maps, in
bf16 or, where bf16 is emulated and slow (CPUs without native bf16), in fp32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from pdae.backbones import load_dpm
from pdae.commands.options import SHIPPED_DPM, SHIPPED_MNIST, parse_count
from pdae.data import iterate_batches, open_dataset
from pdae.evaluation import gap_report, probe_accuracy
from pdae.losses import PDAELoss
from pdae.model import PDAE, PDAEConfig
from pdae.training import TrainConfig, train

OUT = Path(__file__).resolve().parent / "results" / "pdae_choices.json"
INIT = PDAEConfig(latent_dim=64, init_from_dpm=True)
VARIANTS = {  # name: (model config, bf16 autocast)
    "z16": (PDAEConfig(latent_dim=16), True), "z64": (PDAEConfig(latent_dim=64), True),
    "z256": (PDAEConfig(latent_dim=256), True), "z64_init_from_dpm": (INIT, True),
    "fp32": (INIT, False), "bf16_frozen_bf16": (replace(INIT, frozen_bf16=True), True), "bf16": (INIT, True),
    "bf16_shared_z": (replace(INIT, z_pathway="shared"), True),
    "fp32_shared_z": (replace(INIT, z_pathway="shared"), False),
}


@torch.no_grad()
def held_out_loss(model: PDAE, x0: torch.Tensor, seed: int = 0) -> float:
    """The training loss on test images with t and noise fixed by the seed, identical across variants."""
    torch.manual_seed(seed)
    return float(PDAELoss(model.schedule, model.cfg.gamma)(model, x0, torch.zeros(len(x0))).mean())


def run_variant(name: str, cfg: PDAEConfig, bf16: bool, args: argparse.Namespace, workdir: Path) -> dict:
    unet, schedule = load_dpm(args.dpm)
    model = PDAE(unet, schedule, cfg)
    train_set = open_dataset(SHIPPED_MNIST, image_size=28, channels=1, split="train")
    train_cfg = TrainConfig(total_images=parse_count(args.images), lr=2e-4, ema_halflife_images=5_000,
                            checkpoint_images=10**9, bf16=bf16, seed=0)
    started = time.perf_counter()
    ema = train(model, PDAELoss(schedule, cfg.gamma), train_set, train_cfg, workdir / name, model.to_config(),
                description=name).eval()
    train_seconds = time.perf_counter() - started
    test_x, _ = next(iterate_batches(open_dataset(SHIPPED_MNIST, image_size=28, channels=1, split="test",
                                                  limit=256), 256))
    return {**asdict(cfg), "bf16": bf16, "train_images_per_s": train_cfg.total_images / train_seconds,
            "held_out_loss": held_out_loss(ema, test_x),
            "gap_share_filled": gap_report(ema, test_x, num_t=25)["share_filled"],
            "linear_probe_accuracy": probe_accuracy(
                ema, open_dataset(SHIPPED_MNIST, image_size=28, channels=1, split="train", limit=5000),
                open_dataset(SHIPPED_MNIST, image_size=28, channels=1, split="test", limit=2000))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dpm", type=Path, default=SHIPPED_DPM)
    parser.add_argument("--images", default="20k", help="training images per variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"images_per_variant": parse_count(args.images), "dpm": str(args.dpm)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.variants:
            results[name] = run_variant(name, *VARIANTS[name], args, Path(workdir))
            args.out.write_text(json.dumps(results, indent=2))  # a variant's result survives a later crash
            print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
