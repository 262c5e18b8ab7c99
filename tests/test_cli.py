"""The command line end to end on tiny models: help texts, pretrain -> sample, resume, user errors."""

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from pdae.cli import app, parse_count

runner = CliRunner()
COMMANDS = ["pretrain", "sample", "demo"]


@pytest.fixture
def digits_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(path, images=rng.integers(0, 256, (32, 8, 8), dtype=np.uint8), labels=np.arange(32) % 4)
    return path


def pdae(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdae", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_explains_itself(command):
    result = runner.invoke(app, [command, "--help"] if command else ["--help"])
    assert result.exit_code == 0
    assert len(result.output) > 200
    if command is None:
        assert all(name in result.output for name in COMMANDS)


def test_parse_count():
    assert [parse_count(s) for s in ("60000", "500k", "2M", "1e6", "1.5k")] == [60000, 500000, 2000000, 10**6, 1500]
    with pytest.raises(Exception, match="not a count"):
        parse_count("lots")


def test_pretrain_then_sample_then_resume(tmp_path, digits_npz):
    run = tmp_path / "run"
    common = ["--data", str(digits_npz), "--image-size", "8", "--preset", "tiny", "--batch-size", "8",
              "--threads", "1", "--checkpoint-every", "16"]
    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "32", *common])
    assert result.exit_code == 0, result.output
    assert (run / "ema.safetensors").is_file() and (run / "config.json").is_file()

    result = runner.invoke(app, ["pretrain", "--out", str(run), "--images", "48", "--resume", *common])
    assert result.exit_code == 0, result.output

    grid, npz = tmp_path / "s.png", tmp_path / "s.npz"
    result = runner.invoke(app, ["sample", "--dpm", str(run), "-n", "5", "--steps", "3", "-o", str(grid),
                                 "--npz", str(npz), "--sampler", "ddpm"])
    assert result.exit_code == 0, result.output
    samples = np.load(npz)["samples"]
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert grid.stat().st_size > 0


def test_user_errors_give_a_message_and_exit_code_2_without_traceback(tmp_path):
    result = pdae("sample", "--dpm", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "no checkpoint at" in result.stderr and "Traceback" not in result.stderr

    result = pdae("pretrain", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "nothing-here"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r" / "ema.safetensors").exists()
