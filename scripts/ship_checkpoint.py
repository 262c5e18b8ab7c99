"""Write a run's EMA weights as an fp16 safetensors file (with its config), the form pdae ships models in.

    python scripts/ship_checkpoint.py runs/mnist_dpm src/pdae/assets/checkpoints/mnist_dpm.safetensors
"""

import argparse
from pathlib import Path

import torch

from pdae.checkpoint import load_weights, resolve_weights_path, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="run folder or .safetensors file")
    parser.add_argument("out", type=Path, help="fp16 .safetensors file to write")
    args = parser.parse_args()
    state, config = load_weights(resolve_weights_path(args.run))
    save_weights(args.out, state, config, dtype=torch.float16)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
