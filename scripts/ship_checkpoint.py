"""Write a run's EMA weights as an fp16 safetensors file (with its config), the form pdae ships models in.

    python scripts/ship_checkpoint.py runs/mnist_dpm src/pdae/assets/checkpoints/mnist_dpm.safetensors

A PDAE whose frozen DPM is shipped too can name that file instead of carrying its weights a second time:

    python scripts/ship_checkpoint.py runs/utkface32/pdae src/pdae/assets/checkpoints/utkface32_pdae.safetensors \
        --dpm src/pdae/assets/checkpoints/utkface32_dpm.safetensors
"""

import argparse
from pathlib import Path

import torch

from pdae.checkpoint import load_weights, resolve_weights_path, save_weights
from pdae.model import refer_to_dpm


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="run folder or .safetensors file")
    parser.add_argument("out", type=Path, help="fp16 .safetensors file to write")
    parser.add_argument("--dpm", type=Path, help="for a PDAE: the shipped fp16 DPM file beside OUT that holds "
                                                 "its frozen DPM, to name instead of repeating its weights")
    args = parser.parse_args()
    state, config = load_weights(resolve_weights_path(args.run))
    if args.dpm is not None:
        if args.dpm.resolve().parent != args.out.resolve().parent:
            parser.error(f"--dpm {args.dpm} must lie in the folder of {args.out}")
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        state, config = refer_to_dpm(state, config, args.dpm)
    save_weights(args.out, state, config, dtype=torch.float16)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
