"""Checkpoints: safetensors weights with their config, strict loading, atomic writes, safe training state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from pdae.backbones import build_dpm, dpm_config, load_dpm
from pdae.checkpoint import (
    WEIGHTS_NAME,
    atomic_write,
    load_state_strict,
    load_training_state,
    load_weights,
    read_config,
    resolve_weights_path,
    save_training_state,
    save_weights,
)
from pdae.errors import CheckpointError, PdaeError
from pdae.nn.unet import UNetConfig
from pdae.schedule import NoiseSchedule

TINY_UNET = UNetConfig(image_size=8, in_channels=1, model_channels=32, out_channels=1, num_res_blocks=1,
                       attention_resolutions=(2,), channel_mult=(1, 2))
CONFIG = {"kind": "test", "sizes": [1, 2, 3], "nested": {"a": 1.5, "b": None, "c": "text"}}


def _state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "layer.weight": torch.randn(4, 3, generator=g),
        "layer.bias": torch.randn(4, generator=g) * 1e-3,
        "big": torch.randn(2, 2, 2, generator=g) * 1e3,
        "count": torch.tensor([3, -7], dtype=torch.int64),
        "flag": torch.tensor([True, False]),
    }


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- save_weights / load_weights


def test_weights_round_trip_keeps_every_tensor_and_config(tmp_path):
    state = _state()
    path = tmp_path / "w.safetensors"
    save_weights(path, state, CONFIG)
    loaded, config = load_weights(path)
    assert config == CONFIG
    assert read_config(path) == CONFIG
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype, key
        assert torch.equal(loaded[key], value), key
    assert _listing(tmp_path) == ["w.safetensors"]


def test_weights_round_trip_in_fp16_loads_float32(tmp_path):
    state = _state()
    path = tmp_path / "w16.safetensors"
    save_weights(path, state, CONFIG, dtype=torch.float16)
    loaded, config = load_weights(path)
    assert config == CONFIG
    for key, value in state.items():
        if value.is_floating_point():
            assert loaded[key].dtype == torch.float32, key
            # exactly the fp16 rounding of the original, and within fp16 precision of it
            assert torch.equal(loaded[key], value.half().float()), key
            torch.testing.assert_close(loaded[key], value, rtol=1e-3, atol=1e-6)
        else:
            assert loaded[key].dtype == value.dtype, key
            assert torch.equal(loaded[key], value), key
    # the file really holds half precision: about half the bytes of the float32 one
    save_weights(tmp_path / "w32.safetensors", state, CONFIG)
    assert (tmp_path / "w16.safetensors").stat().st_size < (tmp_path / "w32.safetensors").stat().st_size


def test_save_weights_accepts_non_contiguous_and_grad_tensors(tmp_path):
    lin = nn.Linear(3, 5)
    state = {"t": lin.weight.t(), "w": lin.weight}  # a transposed view and a parameter requiring grad
    save_weights(tmp_path / "w.safetensors", state, {})
    loaded, config = load_weights(tmp_path / "w.safetensors")
    assert config == {}
    assert torch.equal(loaded["t"], lin.weight.detach().t())
    assert torch.equal(loaded["w"], lin.weight.detach())


def test_read_config_without_pdae_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))  # no metadata at all
    with pytest.raises(CheckpointError, match="no pdae config"):
        read_config(path)
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "pt"})  # metadata, but not ours
    with pytest.raises(CheckpointError, match="no pdae config") as info:
        load_weights(path)
    assert str(path) in str(info.value)


def test_read_config_on_a_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_config(path)
    assert issubclass(CheckpointError, PdaeError)


# ---------------------------------------------------------------- load_state_strict


def test_load_state_strict_loads_a_matching_state():
    src, dst = nn.Linear(3, 2), nn.Linear(3, 2)
    load_state_strict(dst, src.state_dict(), "src")
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)


def test_load_state_strict_lists_every_mismatch_and_loads_nothing():
    module = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    before = {k: v.clone() for k, v in module.state_dict().items()}
    state = {
        "0.weight": torch.ones(4, 3),  # fine: would be loaded by a partial load
        "0.bias": torch.ones(5),  # mis-shaped
        "1.weight": torch.ones(2, 4),
        "extra.weight": torch.ones(1),  # unexpected
        # "1.bias" missing
    }
    with pytest.raises(CheckpointError) as info:
        load_state_strict(module, state, "some/source.safetensors")
    message = str(info.value)
    assert "some/source.safetensors" in message
    assert "missing" in message and "1.bias" in message
    assert "unexpected" in message and "extra.weight" in message
    assert "mis-shaped" in message and "0.bias" in message and "(5,)" in message and "(4,)" in message
    after = module.state_dict()
    for key, value in before.items():
        assert torch.equal(after[key], value), f"{key} changed by a failed load"


def test_load_state_strict_only_missing_keys():
    module = nn.Linear(3, 2)
    with pytest.raises(CheckpointError) as info:
        load_state_strict(module, {"weight": torch.zeros(2, 3)}, "src")
    message = str(info.value)
    assert "missing (1): bias" in message
    assert "unexpected" not in message and "mis-shaped" not in message


# ---------------------------------------------------------------- atomic_write


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "file.bin"  # parent is created
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"first"))
    assert target.read_bytes() == b"first"
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"second"))
    assert target.read_bytes() == b"second"
    assert _listing(target.parent) == ["file.bin"]


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old contents")
    seen: list[str] = []

    def failing(tmp: str) -> None:
        seen.append(tmp)
        Path(tmp).write_bytes(b"half a fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old contents"
    assert len(seen) == 1 and Path(seen[0]).parent == tmp_path and seen[0] != str(target)
    assert _listing(tmp_path) == ["file.bin"]


def test_atomic_write_failure_without_an_old_file_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "new.bin", lambda tmp: (_ for _ in ()).throw(ValueError("boom")))
    assert _listing(tmp_path) == []


# ---------------------------------------------------------------- training state


class _Custom:
    """A class that only pickle (not weights_only loading) can rebuild."""

    def __init__(self):
        self.value = 3


def test_training_state_round_trip(tmp_path):
    state = {"step": 7, "model": {"w": torch.arange(6.0).reshape(2, 3)},
             "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}},
                           "param_groups": [{"lr": 1e-3, "params": [0]}]}}
    save_training_state(tmp_path / "train_state.pt", state)
    loaded = load_training_state(tmp_path / "train_state.pt")
    assert loaded["step"] == 7
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert torch.equal(loaded["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert loaded["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert _listing(tmp_path) == ["train_state.pt"]


def test_load_training_state_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"step": 1, "payload": _Custom()}, path)
    with pytest.raises(CheckpointError, match="cannot read training state"):
        load_training_state(path)


def test_load_training_state_missing_or_garbage(tmp_path):
    with pytest.raises(CheckpointError):
        load_training_state(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError):
        load_training_state(tmp_path / "junk.pt")


# ---------------------------------------------------------------- resolve_weights_path


def test_resolve_weights_path(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_weights_path(run)  # a run folder without weights
    save_weights(run / WEIGHTS_NAME, {"x": torch.zeros(1)}, {})
    assert resolve_weights_path(run) == run / WEIGHTS_NAME
    assert resolve_weights_path(str(run)) == run / WEIGHTS_NAME
    other = tmp_path / "other.safetensors"
    save_weights(other, {"x": torch.zeros(1)}, {})
    assert resolve_weights_path(other) == other
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_weights_path(tmp_path / "missing.safetensors")
    odd = tmp_path / "odd"
    (odd / WEIGHTS_NAME).mkdir(parents=True)  # a folder where the weights file should be
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_weights_path(odd)


# ---------------------------------------------------------------- load_dpm


def test_load_dpm_round_trip(tmp_path):
    torch.manual_seed(0)
    config = dpm_config(TINY_UNET, NoiseSchedule("cosine", 50))
    unet, schedule = build_dpm(config)
    with torch.no_grad():  # the zero-initialised output layers would make every output equal
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    unet.eval()
    run = tmp_path / "run"
    save_weights(run / WEIGHTS_NAME, unet.state_dict(), config)
    assert read_config(run / WEIGHTS_NAME) == json.loads(json.dumps(config))  # tuples come back as lists

    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([0, 37])
    for source in (run, run / WEIGHTS_NAME):
        loaded, loaded_schedule = load_dpm(source)
        assert not loaded.training
        assert loaded.config == TINY_UNET
        assert loaded_schedule.name == "cosine" and loaded_schedule.num_timesteps == 50
        assert torch.equal(loaded_schedule.betas, schedule.betas)
        with torch.no_grad():
            expected, got = unet(x, t), loaded(x, t)
        assert expected.abs().max() > 0
        assert torch.equal(got, expected)


def test_load_dpm_rejects_other_kinds_and_mismatched_weights(tmp_path):
    save_weights(tmp_path / "a.safetensors", {"x": torch.zeros(1)}, {"kind": "pdae"})
    with pytest.raises(CheckpointError, match="expected a DPM"):
        load_dpm(tmp_path / "a.safetensors")
    config = dpm_config(TINY_UNET, NoiseSchedule("linear", 10))
    unet, _ = build_dpm(config)
    state = unet.state_dict()
    state.pop("out.2.bias")
    save_weights(tmp_path / "b.safetensors", state, config)
    with pytest.raises(CheckpointError, match="out.2.bias"):
        load_dpm(tmp_path / "b.safetensors")


# ---------------------------------------------------------------- a shipped PDAE that names its DPM file

def test_shipped_pdae_takes_its_frozen_dpm_from_the_dpm_file_it_names(tmp_path, make_shifted_pdae, run_cli):
    """scripts/ship_checkpoint.py --dpm writes E and G only; load_pdae and the commands read the DPM back
    from the file beside it, and refuse a missing or different DPM file."""
    import subprocess
    import sys

    import numpy as np

    from pdae.model import load_pdae, refer_to_dpm

    model = make_shifted_pdae()
    folder = tmp_path / "shipped"
    dpm_file = folder / "dpm.safetensors"
    save_weights(dpm_file, model.dpm.state_dict(), model.dpm.to_config(model.schedule), dtype=torch.float16)
    full = tmp_path / "run" / WEIGHTS_NAME
    with torch.no_grad():  # the PDAE's frozen DPM is the shipped fp16 one, as when it is fit on that file
        for name, value in load_weights(dpm_file)[0].items():
            model.dpm.state_dict()[name].copy_(value)
    save_weights(full, model.state_dict(), model.to_config())
    script = Path(__file__).parents[1] / "scripts" / "ship_checkpoint.py"
    shipped = folder / "pdae.safetensors"
    subprocess.run([sys.executable, str(script), str(full), str(shipped), "--dpm", str(dpm_file)], check=True,
                   capture_output=True)

    assert not any(key.startswith("dpm.") for key in load_weights(shipped)[0])
    assert shipped.stat().st_size < full.stat().st_size / 2 + dpm_file.stat().st_size
    loaded = load_pdae(shipped)
    expected = {k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())

    images = tmp_path / "images.npz"
    np.savez(images, images=np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8))
    code, output = run_cli("encode", str(shipped), str(images), "-o", str(tmp_path / "z.npz"), "--split", "all")
    assert code == 0, output
    assert np.load(tmp_path / "z.npz")["z"].shape == (3, 4)

    other = {k: v + 1 for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="other weights"):
        refer_to_dpm(other, model.to_config(), dpm_file)
    dpm_file.unlink()
    code, output = run_cli("encode", str(shipped), str(images), "-o", str(tmp_path / "z2.npz"), "--split", "all")
    assert code != 0 and "not beside it" in output and "Traceback" not in output
