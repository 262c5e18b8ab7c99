"""Cost of one trajectory-interpolation step, in bare-DPM steps, measured side by side in one process.

    python benchmarks/trajectory_cost.py --threads 2

On the shipped MNIST PDAE, per decoding step of a batch: the bare DPM; one PDAE step (frozen DPM once,
G once); pdae's trajectory step (frozen DPM once, G for both codes: `mixed_shift_eps`); and the
reference's way, two whole PDAE steps mixed afterwards (the frozen DPM twice). The four are timed in
turn, round after round, and each keeps its fastest round, so background load hits them alike. Writes
benchmarks/results/trajectory_cost.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pdae.commands.options import SHIPPED_PDAE
from pdae.model import load_pdae
from pdae.sampling import eps_of, mixed_shift_eps, shifted_eps

OUT = Path(__file__).resolve().parent / "results" / "trajectory_cost.json"


def fastest_rounds(candidates: dict, rounds: int) -> dict[str, float]:
    """Seconds per call of each candidate: the fastest of `rounds` interleaved rounds, after a warm-up."""
    best = {name: float("inf") for name in candidates}
    for round_ in range(rounds + 1):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            if round_:  # round 0 warms up
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16, help="Frames decoded together.")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_pdae(SHIPPED_PDAE)
    size, channels = model.dpm.image_size, model.dpm.in_channels
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, channels, size, size, generator=generator)
    t = torch.full((args.batch_size,), 500)
    z_a, z_b = (torch.randn(args.batch_size, model.cfg.latent_dim, generator=generator) for _ in range(2))
    w = torch.linspace(0, 1, args.batch_size).view(-1, 1, 1, 1)

    def recomputed() -> torch.Tensor:
        return (1 - w) * shifted_eps(model, z_a)(x, t) + w * shifted_eps(model, z_b)(x, t)

    trajectory = mixed_shift_eps(model, [z_a, z_b], [1 - w.flatten(), w.flatten()])
    with torch.no_grad():
        torch.testing.assert_close(trajectory(x, t), recomputed(), atol=1e-5, rtol=1e-4)  # the same step
        seconds = fastest_rounds({"dpm": lambda: eps_of(model.dpm, channels)(x, t),
                                  "pdae": lambda: shifted_eps(model, z_a)(x, t),
                                  "trajectory": lambda: trajectory(x, t),
                                  "trajectory_recomputed": recomputed}, args.rounds)
    results = {"model": str(SHIPPED_PDAE), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "rounds": args.rounds, "seconds_per_step": seconds,
               "in_dpm_steps": {name: value / seconds["dpm"] for name, value in seconds.items()}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
