"""Device choice: bf16 autocast by default only where it is fast."""

from pathlib import Path

import torch

from pdae.device import fast_bf16


def test_bf16_is_the_default_on_gpus_and_cpus_with_native_bf16_only(monkeypatch):
    assert fast_bf16(torch.device("cuda"))
    for flags, native in (("fpu avx2 fma", False), ("avx2 avx512f avx512_bf16", True), ("avx2 amx_bf16", True)):
        monkeypatch.setattr(Path, "read_text", lambda self, flags=flags: f"flags\t: {flags}\n")
        assert fast_bf16(torch.device("cpu")) is native
