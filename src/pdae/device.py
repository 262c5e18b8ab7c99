"""Where models run: the device a user names (or the best one present), set up for fast math."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from pdae.errors import PdaeError


def pick_device(name: str | None = None) -> torch.device:
    """`name` ('cpu', 'cuda', 'cuda:1'), or CUDA when available and else the CPU; TF32 is enabled on CUDA.

    TF32 matmuls and convolutions keep fp32 training and sampling accurate to about 1e-3 relative while
    running on tensor cores; it is set here, when a command picks its device, never at import.
    """
    try:
        device = torch.device(name) if name else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    except RuntimeError:
        raise PdaeError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PdaeError(f"device {name!r} was asked for, but torch sees no CUDA GPU here; "
                            "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PdaeError(f"device {name!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s)")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif device.type != "cpu":
        raise PdaeError(f"device {name!r} is not supported; use cpu, cuda or cuda:N")
    return device


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up here: on CUDA, and on CPUs with native bf16 (AVX-512 BF16
    or AMX); on others (AVX2 only) it is emulated and measured 7-10x slower than fp32 (README)."""
    if device.type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU): for timing only, never on a hot path."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(step: Callable[[], None], steps: int, batch_size: int, device: torch.device) -> float:
    """Throughput of `step` (one batch of `batch_size` images): one warm-up call, then `steps` timed ones."""
    step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


class SavedTensorBytes:
    """Counts the bytes autograd keeps for the backward pass of what runs inside the `with` block: the
    activation memory of a training step, measured the same way on any device."""

    def __init__(self) -> None:
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor

    def __enter__(self) -> "SavedTensorBytes":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
