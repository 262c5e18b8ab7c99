"""Time the reference PDAE's training step (ckczzj/PDAE) on this machine, for side-by-side benchmarks.

The reference code is not part of pdae: the user points `--reference` at a checkout of it, and this module
imports its ShiftUNet, its encoders and its GaussianDiffusion from there. A step is what its
RepresentationLearningTrainer runs per iteration without DDP and EMA: `representation_learning_train_one_batch`
(z = E(x0), the frozen DPM and the shift branch in one forward, its weighted loss), backward, Adam step.
Weights are random: the speed of a step does not depend on them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pdae.device import images_per_second
from pdae.nn.encoder import Encoder, EncoderConfig
from pdae.nn.unet import UNetConfig


def import_reference(folder: Path):
    """The reference's modules, imported from its checkout (it is laid out as top-level packages)."""
    if not (folder / "model" / "shift_unet.py").is_file():
        raise SystemExit(f"{folder} is not a checkout of ckczzj/PDAE (no model/shift_unet.py)")
    sys.path.insert(0, str(folder))
    from diffusion.gaussian_diffusion import GaussianDiffusion
    from model.representation_learning.encoder import CELEBA64Encoder
    from model.shift_unet import ShiftUNet

    return GaussianDiffusion, CELEBA64Encoder, ShiftUNet


def reference_throughput(folder: Path, config: UNetConfig, batch_size: int, latent_dim: int, steps: int,
                         device: torch.device) -> float:
    """Training img/s of the reference's PDAE on a DPM of `config`'s architecture, in fp32 as it defaults.

    Its own 64 x 64 RGB encoder where the images are 64 x 64 RGB; elsewhere (it ships no other) pdae's
    encoder, so that the two sides then differ in G and the frozen DPM only."""
    GaussianDiffusion, CELEBA64Encoder, ShiftUNet = import_reference(folder)
    torch.manual_seed(0)
    decoder = ShiftUNet(input_channel=config.in_channels, base_channel=config.model_channels,
                        channel_multiplier=list(config.channel_mult),
                        num_residual_blocks_of_a_block=config.num_res_blocks,
                        attention_resolutions=list(config.attention_resolutions), num_heads=config.num_heads,
                        head_channel=config.num_head_channels, use_new_attention_order=False,
                        dropout=config.dropout, latent_dim=latent_dim).to(device)
    own_encoder = config.in_channels == 3 and config.image_size == 64
    encoder = (CELEBA64Encoder(latent_dim=latent_dim) if own_encoder else
               Encoder(EncoderConfig(config.image_size, config.in_channels, latent_dim))).to(device)
    diffusion = GaussianDiffusion({"timesteps": 1000, "betas_type": "linear"}, device=device)
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.label_emb.parameters(),
                                  *decoder.shift_middle_block.parameters(),
                                  *decoder.shift_output_blocks.parameters(), *decoder.shift_out.parameters()],
                                 lr=0.0)  # its trainable groups; lr 0 keeps the timing of a real step
    x0 = torch.rand(batch_size, config.in_channels, config.image_size, config.image_size, device=device) * 2 - 1
    def step() -> None:
        optimizer.zero_grad()
        loss = diffusion.representation_learning_train_one_batch(encoder=encoder, decoder=decoder, x_0=x0)
        loss["prediction_loss"].backward()
        optimizer.step()

    encoder.train()
    decoder.set_train_mode()
    return images_per_second(step, steps, batch_size, device)
