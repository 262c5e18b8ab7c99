"""PDAE training throughput, lever by lever, against fp32 on the same machine (ratios, side by side).

    python benchmarks/training_levers.py --threads 2                       # CPU, both configurations
    python benchmarks/training_levers.py --levers fp32 bf16 bf16_channels_last compile_bf16   # a GPU
    python benchmarks/training_levers.py --levers fp32 bf16 --reference ~/src/PDAE   # beside the reference

Configurations: `mnist-reference`, the reference code's MNIST UNet (64 channels x (1, 2, 2, 4), 2 res
blocks, no attention, 32 x 32 x 1, batch 64), and `rgb-64`, the `adm-64` preset at 64 x 64 x 3. The DPM
has random weights (speed does not depend on them); G starts from its decoder. Each lever is timed with
`pdae.evaluation.training_throughput` (forward, backward, AdamW; the frozen DPM in fp32 under bf16
autocast, as `pdae fit` runs it). Every lever starts from pdae's defaults (the frozen branch's input
channels-last on the CPU, a fused AdamW): `bf16_frozen_nchw`, `bf16_loop_adamw` and
`bf16_before_cpu_levers` turn those off. With `--reference`, a checkout of the reference code
(ckczzj/PDAE), its fp32 training step on the same architecture and batch is timed beside them
(benchmarks/reference_pdae.py) and every lever is also given as a ratio to it. With `--rounds R` every
lever is timed R times, interleaved, and the median kept. Writes benchmarks/results/training_levers.json
(or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from pdae.backbones import PRESETS
from pdae.device import pick_device
from pdae.evaluation import training_throughput
from pdae.model import PDAE, PDAEConfig
from pdae.nn.unet import UNet, UNetConfig
from pdae.schedule import NoiseSchedule
from reference_pdae import reference_throughput

OUT = Path(__file__).resolve().parent / "results" / "training_levers.json"
CONFIGS = {  # name: (DPM architecture, default batch size)
    "mnist-reference": (UNetConfig(32, 1, 64, 1, 2, (), (1, 2, 2, 4)), 64),
    "rgb-64": (PRESETS["adm-64"](64, 3), 16),
}


@dataclass(frozen=True)
class Lever:
    """One way of running the training step; the defaults are what `pdae fit` does on the CPU."""

    bf16: bool = False
    channels_last: bool = False  # the whole model and batch channels-last
    compiled: bool = False
    frozen_channels_last: bool = True  # the frozen branch's input channels-last on the CPU (PDAE's default)
    fused_adamw: bool = True  # one fused AdamW kernel (pdae.training.adamw's default)


LEVERS = {
    "fp32": Lever(), "channels_last": Lever(channels_last=True), "bf16": Lever(bf16=True),
    "bf16_channels_last": Lever(bf16=True, channels_last=True), "compile": Lever(compiled=True),
    "compile_bf16": Lever(bf16=True, compiled=True),
    "bf16_frozen_nchw": Lever(bf16=True, frozen_channels_last=False),
    "bf16_loop_adamw": Lever(bf16=True, fused_adamw=False),
    "bf16_before_cpu_levers": Lever(bf16=True, frozen_channels_last=False, fused_adamw=False),
}
LATENT_DIM = 64
REFERENCE = "reference_fp32"


def throughput(config: UNetConfig, batch_size: int, lever: str, steps: int, device: torch.device) -> float:
    """Training img/s of a fresh PDAE on `config` with one lever."""
    chosen = LEVERS[lever]
    torch.manual_seed(0)
    model = PDAE(UNet(config), NoiseSchedule("linear", 1000), PDAEConfig(LATENT_DIM, init_from_dpm=True))
    model = model.to(device)
    model.frozen_channels_last = chosen.frozen_channels_last
    x0 = torch.rand(batch_size, config.in_channels, config.image_size, config.image_size, device=device) * 2 - 1
    if chosen.channels_last:
        model, x0 = model.to(memory_format=torch.channels_last), x0.contiguous(memory_format=torch.channels_last)
    return training_throughput(model, x0, chosen.bf16, steps, net=torch.compile(model) if chosen.compiled else None,
                               fused_adamw=chosen.fused_adamw)


def timed(name: str, config: UNetConfig, batch_size: int, args: argparse.Namespace, device: torch.device) -> float:
    """Training img/s of one lever, or of the reference code's fp32 step."""
    if name == REFERENCE:
        return reference_throughput(args.reference, config, batch_size, LATENT_DIM, args.steps, device)
    return throughput(config, batch_size, name, args.steps, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--levers", nargs="+", default=["fp32", "channels_last", "bf16"], choices=list(LEVERS))
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 (MNIST) and 16 (64 px)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per lever, after one warm-up")
    parser.add_argument("--rounds", type=int, default=1, help="times each lever is timed, interleaved (median)")
    parser.add_argument("--reference", type=Path, default=None, help="a checkout of ckczzj/PDAE to time beside")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    results: dict = {"device": str(device), "steps": args.steps, "rounds": args.rounds, "configs": {}}
    for name in args.configs:
        config, batch_size = CONFIGS[name]
        batch_size = args.batch_size or batch_size
        names = ["fp32", *[lever for lever in args.levers if lever != "fp32"]]
        names += [REFERENCE] if args.reference else []
        rounds = [{n: timed(n, config, batch_size, args, device) for n in names} for _ in range(args.rounds)]
        measured = {n: statistics.median(r[n] for r in rounds) for n in names}
        reference = measured.pop(REFERENCE, None)
        results["configs"][name] = {"batch_size": batch_size, "images_per_s": measured,
                                    "ratio_to_fp32": {k: v / measured["fp32"] for k, v in measured.items()}}
        if reference:
            results["configs"][name].update(reference_fp32_images_per_s=reference, ratio_to_reference_fp32={
                k: v / reference for k, v in measured.items()})
        print(name, json.dumps(results["configs"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
