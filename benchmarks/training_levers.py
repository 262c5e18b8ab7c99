"""PDAE training throughput, lever by lever, against fp32 on the same machine (ratios, side by side).

    python benchmarks/training_levers.py --threads 2                       # CPU, both configurations
    python benchmarks/training_levers.py --levers fp32 bf16 bf16_channels_last compile_bf16   # a GPU

Configurations: `mnist-reference`, the reference code's MNIST UNet (64 channels x (1, 2, 2, 4), 2 res
blocks, no attention, 32 x 32 x 1, batch 64), and `rgb-64`, the `adm-64` preset at 64 x 64 x 3. The DPM
has random weights (speed does not depend on them); G starts from its decoder. Each lever is timed with
`pdae.evaluation.training_throughput` (forward, backward, AdamW, fused on CUDA; the frozen DPM in fp32
under bf16 autocast, as `pdae fit` runs it). Writes benchmarks/results/training_levers.json (or --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pdae.backbones import PRESETS
from pdae.device import pick_device
from pdae.evaluation import training_throughput
from pdae.model import PDAE, PDAEConfig
from pdae.nn.unet import UNet, UNetConfig
from pdae.schedule import NoiseSchedule

OUT = Path(__file__).resolve().parent / "results" / "training_levers.json"
CONFIGS = {  # name: (DPM architecture, default batch size)
    "mnist-reference": (UNetConfig(32, 1, 64, 1, 2, (), (1, 2, 2, 4)), 64),
    "rgb-64": (PRESETS["adm-64"](64, 3), 16),
}
LEVERS = {  # name: (bf16 autocast, channels_last, torch.compile)
    "fp32": (False, False, False), "channels_last": (False, True, False), "bf16": (True, False, False),
    "bf16_channels_last": (True, True, False), "compile": (False, False, True),
    "compile_bf16": (True, False, True),
}


def throughput(config: UNetConfig, batch_size: int, lever: str, steps: int, device: torch.device) -> float:
    """Training img/s of a fresh PDAE on `config` with one lever."""
    bf16, channels_last, compiled = LEVERS[lever]
    torch.manual_seed(0)
    model = PDAE(UNet(config), NoiseSchedule("linear", 1000), PDAEConfig(init_from_dpm=True)).to(device)
    x0 = torch.rand(batch_size, config.in_channels, config.image_size, config.image_size, device=device) * 2 - 1
    if channels_last:
        model, x0 = model.to(memory_format=torch.channels_last), x0.contiguous(memory_format=torch.channels_last)
    return training_throughput(model, x0, bf16, steps, net=torch.compile(model) if compiled else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--levers", nargs="+", default=["fp32", "channels_last", "bf16"], choices=list(LEVERS))
    parser.add_argument("--batch-size", type=int, default=None, help="default: 64 (MNIST) and 16 (64 px)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per lever, after one warm-up")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    results: dict = {"device": str(device), "steps": args.steps, "configs": {}}
    for name in args.configs:
        config, batch_size = CONFIGS[name]
        batch_size = args.batch_size or batch_size
        measured = {lever: throughput(config, batch_size, lever, args.steps, device) for lever in ["fp32", *[
            lever for lever in args.levers if lever != "fp32"]]}
        results["configs"][name] = {"batch_size": batch_size, "images_per_s": measured,
                                    "ratio_to_fp32": {k: v / measured["fp32"] for k, v in measured.items()}}
        print(name, json.dumps(results["configs"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
