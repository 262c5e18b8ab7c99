"""Memory of a PDAE training step at 64 px, with and without gradient checkpointing of G.

    python benchmarks/memory.py --threads 2                  # CPU: activation bytes and img/s
    python benchmarks/memory.py --batch-size 64              # on a GPU also the peak allocated memory

For each preset (a DPM of that architecture with random weights; memory does not depend on them) and each
setting of `PDAE.gradient_checkpointing` (`pdae fit --gradient-checkpointing`): the bytes autograd keeps
for backward per image (`pdae.device.SavedTensorBytes`, the same on any device), the fp32 training
throughput over --repeats steps after one warm-up (`pdae.evaluation.training_throughput`), and on CUDA
the peak allocated memory of those steps. Writes benchmarks/results/memory.json (or --out).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pdae.backbones import PRESETS
from pdae.device import SavedTensorBytes, pick_device
from pdae.evaluation import training_throughput
from pdae.model import PDAE, PDAEConfig
from pdae.nn.unet import UNet
from pdae.schedule import NoiseSchedule

OUT = Path(__file__).resolve().parent / "results" / "memory.json"


def measure(model: PDAE, x0: torch.Tensor, repeats: int) -> dict:
    """Saved-for-backward bytes per image, fp32 training throughput and (CUDA) peak memory of its steps."""
    model.train()
    with SavedTensorBytes() as saved:
        loss = model.training_loss()(model, x0, torch.zeros(len(x0), device=x0.device)).mean()
    loss.backward()
    model.zero_grad(set_to_none=True)
    cuda = x0.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(x0.device)
    images_per_s = training_throughput(model, x0, bf16=False, steps=repeats)
    return {"saved_for_backward_mb_per_image": saved.bytes / len(x0) / 2**20, "images_per_s": images_per_s,
            **({"peak_allocated_gb": torch.cuda.max_memory_allocated(x0.device) / 2**30} if cuda else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["adm-64-cpu", "adm-64"], choices=list(PRESETS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    results: dict = {"device": str(device), "batch_size": args.batch_size, "presets": {}}
    for name in args.presets:
        torch.manual_seed(0)
        dpm = UNet(PRESETS[name](PRESETS[name].image_size or 64, 3))
        model = PDAE(dpm, NoiseSchedule("linear", 1000), PDAEConfig(init_from_dpm=True)).to(device).train()
        x0 = torch.rand(args.batch_size, 3, dpm.image_size, dpm.image_size, device=device) * 2 - 1
        results["presets"][name] = {}
        for checkpointing in (False, True):
            model.gradient_checkpointing = checkpointing
            key = "checkpointed" if checkpointing else "plain"
            results["presets"][name][key] = measure(model, x0, args.repeats)
            print(name, key, json.dumps(results["presets"][name][key]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
