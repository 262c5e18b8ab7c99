"""The one training loop: every model pdae trains (base DPM, PDAE, latent DPM, classifiers) goes through it.

Progress is counted in images, EMA is a half-life in images (EDM), so batch size and process count do
not change what "train for N" means. Every random draw is seeded: the data order from (seed, epoch),
augmentation from (seed, epoch, index), and t, noise and dropout from (seed, step, rank), so a resumed
run repeats an uninterrupted one exactly, however many processes load the data.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from pdae.checkpoint import (WEIGHTS_NAME, load_training_state, load_weights, read_progress,
                             save_training_state, save_weights)
from pdae.data import training_batches
from pdae.errors import PdaeError
from pdae.progress import progress_bar

TRAIN_STATE_NAME = "train_state.pt"
CONFIG_NAME = "config.json"
LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]  # (net, x0, labels) -> per-sample loss


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; batch_size is the global batch over all processes."""

    total_images: int = 1_000_000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_images: int = 10_000
    ema_halflife_images: int = 50_000
    ema_rampup_ratio: float = 0.05
    grad_clip: float = 1.0
    bf16: bool = False
    checkpoint_images: int = 100_000
    seed: int = 0
    workers: int = 0  # data-loading worker processes per training process; 0 loads in the training process
    compile: bool = False  # torch.compile the network (1-2 minutes of compilation first)
    log_every: int = 10  # steps between reads of the loss from the device (each read waits for the device)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device | None = None) -> DistributedContext:
    """Join the process group when started by torchrun (NCCL on GPUs, gloo on the CPU); else one process.

    `device` defaults to CUDA when available; under torchrun each process takes GPU LOCAL_RANK.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", device.index or 0)))
        torch.cuda.set_device(device)
    return DistributedContext(rank, world_size, device)


def step_seed(seed: int, step: int, rank: int) -> int:
    """An independent seed per (run seed, step, rank), for the step's t, noise and dropout."""
    return int(np.random.SeedSequence([seed, step, rank + 1]).generate_state(1)[0])


def ema_decay(batch_images: int, images_seen: int, cfg: TrainConfig) -> float:
    """Per-step EMA decay from a half-life in images, ramped up early in training (EDM)."""
    halflife = cfg.ema_halflife_images
    if cfg.ema_rampup_ratio:
        halflife = min(halflife, images_seen * cfg.ema_rampup_ratio)
    return 0.5 ** (batch_images / max(halflife, 1e-8))


class TrainableEMA:
    """EMA of the parameters that train, and nothing else: PDAE's frozen DPM is never copied."""

    def __init__(self, net: nn.Module) -> None:
        self.params = {name: p for name, p in net.named_parameters() if p.requires_grad}
        self.averages = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self, decay: float) -> None:
        """average <- decay * average + (1 - decay) * parameter, for every trained parameter at once."""
        torch._foreach_lerp_(list(self.averages.values()), [p.detach() for p in self.params.values()],
                             1 - decay)

    def full_state(self, net: nn.Module) -> dict[str, Tensor]:
        """`net`'s state dict with the averages in place of the trained parameters: the inference weights."""
        return {**net.state_dict(), **self.averages}


def load_frozen_weights(net: nn.Module, weights_path: Path) -> None:
    """Fill `net`'s frozen parameters (PDAE's DPM) from the run's weights file, which holds them once."""
    frozen = [name for name, p in net.named_parameters() if not p.requires_grad]
    if not frozen:
        return
    if not weights_path.is_file():
        raise PdaeError(f"cannot resume: {weights_path}, which holds the frozen weights, is missing")
    saved, _ = load_weights(weights_path)
    missing = [name for name in frozen if name not in saved]
    if missing:
        raise PdaeError(f"cannot resume: {weights_path} lacks frozen weights such as {missing[0]}")
    with torch.no_grad():
        parameters = dict(net.named_parameters())
        for name in frozen:
            parameters[name].copy_(saved[name])


def trainable_state(net: nn.Module) -> dict[str, Tensor]:
    """What training changes: the parameters that require grad and the buffers (no frozen weights)."""
    frozen = {name for name, p in net.named_parameters() if not p.requires_grad}
    return {k: v for k, v in net.state_dict().items() if k not in frozen}


def load_trainable_state(net: nn.Module, saved: dict[str, Tensor], source: Path) -> None:
    """Load `trainable_state` back, refusing a state that lacks any of it."""
    expected = trainable_state(net)
    missing = sorted(set(expected) - set(saved))
    if missing:
        raise PdaeError(f"{source} does not hold this model's trainable weights "
                        f"(missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    net.load_state_dict({k: saved[k] for k in expected}, strict=False)


def adamw(net: nn.Module, lr: float, weight_decay: float = 0.0, fused: bool = True) -> torch.optim.AdamW:
    """AdamW over `net`'s trainable parameters, fused into one kernel where PyTorch has it (CUDA, and the
    CPU, where the optimiser step alone runs about 3x faster than the per-parameter loop); `fused=False`
    keeps the loop."""
    params = [p for p in net.parameters() if p.requires_grad]
    fused = fused and bool(params) and params[0].device.type in ("cuda", "cpu")
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def learning_rate(images_seen: int, cfg: TrainConfig) -> float:
    return cfg.lr * min(1.0, (images_seen + 1) / max(cfg.warmup_images, 1))


def prepare_run_dir(run_dir: Path, run_config: dict, resume: bool) -> dict | None:
    """Create the run folder; return the saved training state when resuming. Never overwrite a run."""
    state_path = run_dir / TRAIN_STATE_NAME
    if run_dir.exists() and not run_dir.is_dir():
        raise PdaeError(f"{run_dir} is a file, not a run folder; choose another --out")
    if resume:
        if not state_path.is_file():
            raise PdaeError(f"nothing to resume: {state_path} does not exist")
        return load_training_state(state_path)
    if state_path.exists() or (run_dir / WEIGHTS_NAME).exists():
        raise PdaeError(f"{run_dir} already holds a run; "
                        "pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_NAME).write_text(json.dumps(run_config, indent=2))
    return None


def prepare_run_everywhere(run_dir: Path, run_config: dict, resume: bool,
                           ctx: DistributedContext) -> dict | None:
    """prepare_run_dir on rank 0; under DDP its error reaches every rank, and every rank reads the state."""
    state, error = None, None
    if ctx.is_main:
        try:
            state = prepare_run_dir(run_dir, run_config, resume)
        except PdaeError as caught:
            error = str(caught)
    if ctx.world_size > 1:
        message = [error]
        dist.broadcast_object_list(message, src=0)
        error = message[0]
    if error is not None:
        raise PdaeError(error)
    if not ctx.is_main and resume:
        state = load_training_state(run_dir / TRAIN_STATE_NAME)
    return state


def save_checkpoint(run_dir: Path, net: nn.Module, ema: TrainableEMA, opt: torch.optim.Optimizer,
                    step: int, batch_size: int, model_config: dict) -> None:
    """Everything --resume needs (no frozen weights), then the inference weights, each written atomically.

    The state goes first and both carry the step: after a kill between the two writes, resuming sees
    the weights lag behind the state and rewrites them from the state's EMA, so the pair never diverges.
    """
    state = {"step": step, "batch_size": batch_size, "model": trainable_state(net), "ema": ema.averages,
             "optimizer": opt.state_dict()}
    save_training_state(run_dir / TRAIN_STATE_NAME, state)
    save_weights(run_dir / WEIGHTS_NAME, ema.full_state(net), model_config, progress={"step": step})


def open_tensorboard(run_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def train(net: nn.Module, loss_fn: LossFn, dataset: Dataset, cfg: TrainConfig, run_dir: Path,
          model_config: dict, resume: bool = False, description: str = "training",
          device: torch.device | None = None, loss_config: dict | None = None) -> nn.Module:
    """Train `net` (only its parameters that require grad) until cfg.total_images; return it with its EMA
    weights loaded (the raw weights stay in the run's training state).

    `model_config` is stored with the weights so that they rebuild their model on their own; `loss_config`
    (the loss's settings) goes into the run's config beside it. `device` defaults to CUDA when available,
    else the CPU.
    """
    ctx = init_distributed(device)
    if cfg.batch_size < 1:
        raise PdaeError(f"batch size must be at least 1, got {cfg.batch_size}")
    if cfg.batch_size % ctx.world_size:
        raise PdaeError(f"batch size {cfg.batch_size} is not divisible by {ctx.world_size} processes")
    run_dir = Path(run_dir)
    run_config = {"model": model_config, "train": asdict(cfg)} | ({"loss": loss_config} if loss_config else {})
    state = prepare_run_everywhere(run_dir, run_config, resume, ctx)
    if state is not None and int(state["batch_size"]) != cfg.batch_size:
        raise PdaeError(f"{run_dir} was trained with batch size {state['batch_size']}; "
                        f"resume it with that batch size, not {cfg.batch_size}")

    step = 0
    if state is not None:
        load_frozen_weights(net, run_dir / WEIGHTS_NAME)  # the state holds only what trains
        load_trainable_state(net, state["model"], run_dir / TRAIN_STATE_NAME)
        step = int(state["step"])
    net.to(ctx.device)
    cuda = ctx.device.type == "cuda"
    opt = adamw(net, cfg.lr, cfg.weight_decay)
    ema = TrainableEMA(net)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        with torch.no_grad():
            for name, average in ema.averages.items():
                average.copy_(state["ema"][name])
    # A new run's weights file exists from step 0 (it carries the frozen weights a resume reads back); a
    # resumed one whose weights lag behind its state (killed between the two writes) is repaired here.
    if ctx.is_main and read_progress(run_dir / WEIGHTS_NAME).get("step") != step:
        save_weights(run_dir / WEIGHTS_NAME, ema.full_state(net), model_config, progress={"step": step})
    ddp_net = (nn.parallel.DistributedDataParallel(net, device_ids=[ctx.device] if cuda else None)
               if ctx.world_size > 1 else net)
    step_net = torch.compile(ddp_net) if cfg.compile else ddp_net

    total_steps = math.ceil(cfg.total_images / cfg.batch_size)
    checkpoint_every = max(1, cfg.checkpoint_images // cfg.batch_size)
    writer = open_tensorboard(run_dir) if ctx.is_main else None
    batches = training_batches(dataset, cfg.batch_size, cfg.seed, step, ctx.rank, ctx.world_size, cfg.workers,
                               pin_memory=cuda)
    net.train()
    with progress_bar(description, total=total_steps * cfg.batch_size, completed=step * cfg.batch_size,
                      enabled=ctx.is_main) as bar:
        tick, logged_step = time.perf_counter(), step
        loss_sum = grad_norm_sum = torch.zeros((), device=ctx.device)
        while step < total_steps:
            # Seed this step's t, noise and dropout; its batch is seeded by its epoch and items.
            torch.manual_seed(step_seed(cfg.seed, step, ctx.rank))
            x0, labels = (tensor.to(ctx.device, non_blocking=True) for tensor in next(batches))

            # Accumulate gradients.
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                loss = loss_fn(step_net, x0, labels).float().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()

            # Update weights.
            images_seen = step * cfg.batch_size
            for group in opt.param_groups:
                group["lr"] = learning_rate(images_seen, cfg)
            grad_norm = nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            step += 1

            # Update EMA.
            ema.update(ema_decay(cfg.batch_size, step * cfg.batch_size, cfg))

            # Maintenance: progress, scalars (read from the device every log_every steps), checkpoints.
            loss_sum, grad_norm_sum = loss_sum + loss.detach(), grad_norm_sum + grad_norm.detach()
            if step % cfg.log_every == 0 or step == total_steps:
                steps_done, now = step - logged_step, time.perf_counter()
                mean_loss, mean_grad_norm = (float(v) / steps_done for v in (loss_sum, grad_norm_sum))
                images_per_s = steps_done * cfg.batch_size / max(now - tick, 1e-9)
                bar.update(steps_done * cfg.batch_size, loss=mean_loss, images_per_s=images_per_s)
                if writer is not None:
                    for name, value in (("loss", mean_loss), ("grad_norm", mean_grad_norm),
                                        ("images_per_s", images_per_s)):
                        writer.add_scalar(f"train/{name}", value, step * cfg.batch_size)
                tick, logged_step = now, step
                loss_sum = grad_norm_sum = torch.zeros((), device=ctx.device)
            if ctx.is_main and (step % checkpoint_every == 0 or step == total_steps):
                save_checkpoint(run_dir, net, ema, opt, step, cfg.batch_size, model_config)
    if writer is not None:
        writer.close()
    if ctx.world_size > 1:
        dist.barrier()
    net.load_state_dict(ema.full_state(net))
    return net.eval()
