"""The PDAE model: a frozen pre-trained DPM, a trainable encoder E and a trainable shift decoder G.

The DPM is a backbone (pdae.backbones): G reuses its time embedding and encoder half, which run once per
step and feed both the frozen decoder half (eps_theta) and G's own z-modulated twin of that half, made
by the backbone. G's output conv starts at zero, so at step 0 PDAE is exactly the DPM.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from pdae.backbones import Backbone, BlackBoxBackbone, build_backbone
from pdae.checkpoint import load_state_strict, load_weights, resolve_weights_path
from pdae.diffae import DiffAE, build_diffae
from pdae.errors import CheckpointError, PdaeError
from pdae.export import is_exported, read_exported
from pdae.nn.encoder import Encoder, EncoderConfig
from pdae.losses import PDAELoss
from pdae.sampling import EpsFn, per_row
from pdae.schedule import NoiseSchedule

SAMPLING_COEFS = ("trained", "reference")
Z_PATHWAYS = ("per_block", "shared")
CONDITIONS = ("z", "class")


@dataclass(frozen=True)
class PDAEConfig:
    """What PDAE adds to a DPM. sampling_coef: 'trained' uses -c_t at sampling, 'reference' sqrt(1-abar_t).

    frozen_bf16 lets the frozen DPM run under the training's bf16 autocast too (faster, less accurate).
    z_pathway: 'per_block' gives every block of G its own affine map of z; 'shared' projects z once to the
    DPM's time-embedding width (+ SiLU), which each block then maps with its own Linear (the reference's).
    condition: 'z' learns z = E(x0) from images; 'class' gives G a learned embedding of the class label
    instead (the paper's class-conditional gradient estimator; there is no image encoder then).
    """

    latent_dim: int = 64
    encoder_channels: int = 32
    gamma: float = 0.1
    init_from_dpm: bool = False
    sampling_coef: str = "reference"
    frozen_bf16: bool = False
    z_pathway: str = "per_block"
    condition: str = "z"
    num_classes: int = 0

    def __post_init__(self) -> None:
        if self.sampling_coef not in SAMPLING_COEFS:
            raise PdaeError(f"sampling coefficient must be one of {SAMPLING_COEFS}, "
                            f"got {self.sampling_coef!r}")
        if self.z_pathway not in Z_PATHWAYS:
            raise PdaeError(f"z pathway must be one of {Z_PATHWAYS}, got {self.z_pathway!r}")
        if self.condition not in CONDITIONS:
            raise PdaeError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.condition == "class" and self.num_classes < 2:
            raise PdaeError(f"a class-conditional PDAE needs at least 2 classes, got {self.num_classes}")


class PDAE(nn.Module):
    """E and G around a frozen DPM. `forward(x_t, t, x0)` returns (eps_theta, G(x_t, E(x0), t)).

    A class-conditional PDAE takes class labels where the others take images x0 (`encode`, `forward`).
    """

    def __init__(self, dpm: Backbone, schedule: NoiseSchedule, cfg: PDAEConfig):
        super().__init__()
        self.cfg, self.schedule = cfg, schedule
        self.dpm = dpm.eval().requires_grad_(False)
        self.encoder = (nn.Embedding(cfg.num_classes, cfg.latent_dim) if self.class_conditional else
                        Encoder(EncoderConfig(dpm.image_size, dpm.in_channels, cfg.latent_dim,
                                              cfg.encoder_channels)))
        shared = cfg.z_pathway == "shared"
        self.z_projection = (nn.Sequential(nn.Linear(cfg.latent_dim, dpm.embedding_dim), nn.SiLU()) if shared
                             else nn.Identity())
        z_width = dpm.embedding_dim if shared else cfg.latent_dim
        self.decoder = dpm.make_shift_decoder(z_width, cfg.init_from_dpm)
        # Training only: recompute G's activations in the backward pass instead of keeping them (a runtime
        # choice, `pdae fit --gradient-checkpointing`, not part of the model).
        self.gradient_checkpointing = False
        # On the CPU the frozen branch takes its input channels-last: oneDNN runs its fp32 convolutions faster
        # on NHWC input, with identical results (adm-64's frozen pass, batch 16: 1.2x on 2 cores; README,
        # "Training throughput"). A black box's callable gets its input as given.
        self.frozen_channels_last = not isinstance(dpm, BlackBoxBackbone)

    def train(self, mode: bool = True) -> "PDAE":
        super().train(mode)
        self.dpm.eval()  # the frozen DPM never uses dropout
        return self

    @property
    def device(self) -> torch.device:
        """Where E and G live (a black box's callable is the caller's to place)."""
        return next(self.encoder.parameters()).device

    @property
    def frozen_dtype(self) -> torch.dtype:
        """The frozen DPM's own floating dtype (float32 for a black box, whose callable holds no weights)."""
        return next((p.dtype for p in self.dpm.parameters() if p.is_floating_point()), torch.float32)

    @property
    def image_size(self) -> int:
        return self.dpm.image_size

    @property
    def in_channels(self) -> int:
        return self.dpm.in_channels

    @property
    def class_conditional(self) -> bool:
        return self.cfg.condition == "class"

    def encode(self, x0: Tensor) -> Tensor:
        """z = E(x0) of images in [-1, 1], or the class embedding of labels for a class-conditional PDAE."""
        if self.class_conditional:
            if x0.is_floating_point():
                raise PdaeError("this PDAE is conditioned on class labels and has no image encoder: give it "
                                "labels, not images")
            return self.encoder(x0.long())
        return self.encoder(x0)

    def eps_and_shifts(self, x_t: Tensor, t: Tensor, zs: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """The frozen eps_theta(x_t, t) once, and G(x_t, z, t) for every z in `zs` on the same features.

        Trajectory interpolation mixes G of two codes at every step: the frozen DPM (its encoder half, which
        G reuses, and its decoder half) runs once for both.
        """
        # Under autocast the frozen branch still runs in its own precision unless frozen_bf16: in bf16 its
        # eps error at small t is larger than the whole correction c_t G that G learns.
        precision = nullcontext() if self.cfg.frozen_bf16 else torch.autocast(x_t.device.type, enabled=False)
        with torch.no_grad(), precision:
            x_frozen = x_t if self.cfg.frozen_bf16 else x_t.to(self.frozen_dtype)
            if self.frozen_channels_last and x_frozen.device.type == "cpu":
                x_frozen = x_frozen.contiguous(memory_format=torch.channels_last)
            emb = self.dpm.time_embedding(t)
            h, skips = self.dpm.encode(x_frozen, emb)
            eps = self.dpm.decode(h, skips, emb).contiguous()
        # Frozen features feed a trainable branch: contiguous copies avoid a CPU GroupNorm backward crash (and
        # give G its features in the layout it trains fastest in).
        h, skips = h.contiguous(), [s.contiguous() for s in skips]
        return eps, [self.shift(h, skips, emb, self.z_projection(z)) for z in zs]

    def shift(self, h: Tensor, skips: list[Tensor], emb: Tensor, z: Tensor) -> Tensor:
        """G on the frozen features; with gradient checkpointing, its activations are recomputed in backward
        (same gradients, dropout replayed from the saved RNG state)."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self.decoder, h, skips, emb, z, use_reentrant=False)
        return self.decoder(h, skips, emb, z)

    def eps_and_shift(self, x_t: Tensor, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """The frozen eps_theta(x_t, t) and G(x_t, z, t); the DPM's encoder half runs once for both."""
        eps, (shift,) = self.eps_and_shifts(x_t, t, [z])
        return eps, shift

    def forward(self, x_t: Tensor, t: Tensor, x0: Tensor) -> tuple[Tensor, Tensor]:
        return self.eps_and_shift(x_t, t, self.encode(x0))

    def conditional_eps(self, zs: Sequence[Tensor], weights: Sequence[Tensor | float], min_t: int = 0) -> EpsFn:
        """eps_theta(x_t, t) - k_t * sum_j weights[j] * G(x_t, zs[j], t), the frozen DPM evaluated once.

        A weight is a number or one value per row. Below `min_t` the shift is off: the plain DPM finishes
        the decoding (the stop fraction).
        """
        k = self.sampling_coef()

        def eps_fn(x_t: Tensor, t: Tensor) -> Tensor:
            eps, shifts = self.eps_and_shifts(x_t, t, zs)
            mixed = sum(per_row(w, shift) * shift for w, shift in zip(weights, shifts))
            coef = self.schedule.at(k, t, eps)
            if min_t > 0:  # only a stop fraction pays for the mask
                coef = coef * per_row((t >= min_t).to(eps.dtype), eps)
            return eps - coef * mixed

        return eps_fn

    def gap_predictions(self, x_t: Tensor, t: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The eps predictions the posterior-mean gap scores: the DPM's, and with the shift added as in
        training (eps_theta + c_t G), which is what G was fitted to."""
        eps_theta, shift = self.eps_and_shift(x_t, t, z)
        return {"dpm": eps_theta, "pdae": eps_theta + self.schedule.at(self.schedule.shift_coef, t, x_t) * shift}

    def training_loss(self) -> PDAELoss:
        return PDAELoss(self.schedule, self.cfg.gamma, self.class_conditional)

    def sampling_coef(self) -> Tensor:
        """k_t in eps_hat = eps_theta - k_t G: the trained -c_t, or the reference code's sqrt(1 - abar_t)."""
        if self.cfg.sampling_coef == "trained":
            return self.schedule.trained_sampling_coef
        return self.schedule.reference_sampling_coef

    def to_config(self) -> dict:
        return {"kind": "pdae", "dpm": self.dpm.to_config(self.schedule), "pdae": asdict(self.cfg)}


def build_pdae(config: dict, black_box: EpsFn | None = None) -> PDAE | DiffAE:
    """PDAE (random weights) from `to_config`; a black-box DPM's callable is not in it and is passed again.

    A Diff-AE baseline run (`pdae fit --method diffae`) builds its DiffAE, which every command takes too.
    """
    if config.get("kind") == "diffae":
        return build_diffae(config)
    if config.get("kind") != "pdae":
        raise PdaeError(f"expected a PDAE checkpoint, found kind {config.get('kind')!r}")
    dpm, schedule = build_backbone(config["dpm"], black_box)
    return PDAE(dpm, schedule, PDAEConfig(**config["pdae"]))


# A shipped PDAE file may hold E and G only and name, under this key of its config's "dpm", the shipped DPM
# file beside it that holds the frozen weights (so that the two files do not carry the DPM twice).
DPM_WEIGHTS_KEY = "weights_file"


def read_pdae_weights(path: Path) -> tuple[dict[str, Tensor], dict]:
    """(state dict, config) of a PDAE weights file, with the frozen DPM's weights read from the file it
    names when it names one (see `refer_to_dpm`)."""
    state, config = load_weights(path)
    dpm_name = config.get("dpm", {}).get(DPM_WEIGHTS_KEY)
    if dpm_name is None:
        return state, config
    dpm_path = Path(path).parent / dpm_name
    if not dpm_path.is_file():
        raise CheckpointError(f"{path} takes its frozen DPM from {dpm_name}, which is not beside it ({dpm_path})")
    dpm_state, dpm_config = load_weights(dpm_path)
    own_config = {k: v for k, v in config["dpm"].items() if k != DPM_WEIGHTS_KEY}
    if dpm_config != own_config:
        raise CheckpointError(f"{path} names {dpm_path} as its frozen DPM, but that file holds another DPM "
                              "(architecture or schedule differ)")
    return {**state, **{f"dpm.{k}": v for k, v in dpm_state.items()}}, {**config, "dpm": own_config}


def refer_to_dpm(state: dict[str, Tensor], config: dict, dpm_path: Path) -> tuple[dict[str, Tensor], dict]:
    """A PDAE's (state, config) without the frozen DPM's weights, naming `dpm_path` instead: a file that must
    lie beside the PDAE file and hold exactly the same DPM (cast `state` to the shipping precision first)."""
    dpm_state, dpm_config = load_weights(dpm_path)
    if dpm_config != json.loads(json.dumps(config["dpm"])):  # as stored: tuples become lists
        raise CheckpointError(f"{dpm_path} holds another DPM than the PDAE's (architecture or schedule differ)")
    for key, value in dpm_state.items():
        saved = state.get(f"dpm.{key}")
        if saved is None or not torch.equal(saved.to(value.dtype), value):
            raise CheckpointError(f"{dpm_path} holds other weights than the PDAE's frozen DPM (first: {key})")
    parts = {k: v for k, v in state.items() if not k.startswith("dpm.")}
    return parts, {**config, "dpm": {**config["dpm"], DPM_WEIGHTS_KEY: Path(dpm_path).name}}


def load_pdae(path: str | Path, sampling_coef: str | None = None,
              black_box: EpsFn | None = None) -> PDAE | DiffAE:
    """Load a PDAE run folder or its .safetensors file (the frozen DPM travels inside it), or a folder
    `pdae export` wrote, in eval mode.

    `sampling_coef` overrides the decoding coefficient the run was saved with. A PDAE trained on a
    black-box DPM holds E and G only: pass the same callable as `black_box`.
    """
    if is_exported(Path(path)):
        weights_path = Path(path)
        state, config = read_exported(weights_path)
    else:
        weights_path = resolve_weights_path(Path(path))
        state, config = read_pdae_weights(weights_path)
    if sampling_coef is not None:
        if config.get("kind") == "diffae":
            raise PdaeError(f"{weights_path} is a Diff-AE run, which has no shift coefficient to override")
        config = {**config, "pdae": {**config["pdae"], "sampling_coef": sampling_coef}}
    model = build_pdae(config, black_box)
    load_state_strict(model, state, str(weights_path))
    return model.eval()
