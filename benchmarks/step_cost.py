"""Cost of PDAE against a bare DPM, measured side by side in one process (ratios, not absolute times).

    python benchmarks/step_cost.py --threads 2

For the MNIST-size UNet (shipped preset `small`): one decoding step of PDAE (frozen encoder half run
once, feeding the frozen decoder and G) against one bare DPM step, and PDAE training throughput against
DPM training throughput, in fp32 and bf16. Writes benchmarks/results/step_cost.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pdae.backbones import PRESETS
from pdae.losses import EpsLoss, PDAELoss
from pdae.model import PDAE, PDAEConfig
from pdae.nn.unet import UNet
from pdae.sampling import eps_of, shifted_eps
from pdae.schedule import NoiseSchedule

OUT = Path(__file__).resolve().parent / "results" / "step_cost.json"


def best_time(fn, repeats: int) -> float:
    """Fastest of `repeats` timed calls after one warm-up (the least disturbed by other load)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_step(net: torch.nn.Module, loss_fn, x0: torch.Tensor, bf16: bool):
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=0.0)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net, x0, torch.zeros(len(x0))).float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    schedule = NoiseSchedule()
    dpm = UNet(PRESETS["small"](28, 1)).eval()
    model = PDAE(dpm, schedule, PDAEConfig(latent_dim=64)).eval()
    x = torch.randn(args.batch_size, 1, 28, 28)
    t = torch.full((args.batch_size,), 500)
    z = model.encode(x).detach()
    results: dict = {"batch_size": args.batch_size, "threads": torch.get_num_threads()}
    with torch.no_grad():
        dpm_step = best_time(lambda: eps_of(dpm, 1)(x, t), args.repeats)
        pdae_step = best_time(lambda: shifted_eps(model, z)(x, t), args.repeats)
    results["decoding_step_ratio_pdae_over_dpm"] = pdae_step / dpm_step
    for precision, bf16 in (("fp32", False), ("bf16", True)):
        dpm.train()
        dpm_train = best_time(train_step(dpm.requires_grad_(True), EpsLoss(schedule), x, bf16), args.repeats)
        dpm.requires_grad_(False)
        model.train()
        pdae_train = best_time(train_step(model, PDAELoss(schedule), x, bf16), args.repeats)
        results[f"train_images_per_s_{precision}"] = {"dpm": args.batch_size / dpm_train,
                                                      "pdae": args.batch_size / pdae_train,
                                                      "ratio_pdae_over_dpm": dpm_train / pdae_train}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
