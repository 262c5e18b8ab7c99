"""The same paths on a GPU: training, autoencoding and every model command with --device cuda.

Skipped where torch sees no CUDA GPU (CI, the developers' machines); run them where one is lent.
"""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pdae.autoencode import StepCounts, reconstruct
from pdae.cli import app
from pdae.commands.options import SHIPPED_PDAE
from pdae.model import load_pdae

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = CliRunner()


def test_reconstruction_on_the_gpu_matches_the_cpu():
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    steps = StepCounts(20, 20)
    on_cpu = reconstruct(load_pdae(SHIPPED_PDAE), x0, steps, seeds=range(4))
    on_gpu = reconstruct(load_pdae(SHIPPED_PDAE).cuda(), x0, steps, seeds=range(4))
    for name, image in on_gpu.items():
        assert image.is_cuda
        torch.testing.assert_close(image.cpu(), on_cpu[name], atol=2e-2, rtol=0)  # TF32 matmuls


def test_every_model_command_runs_with_device_cuda(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, images=rng.integers(0, 256, (16, 8, 8), dtype=np.uint8), labels=np.arange(16) % 2)
    common = ["--device", "cuda", "--batch-size", "8"]
    commands = [
        ["pretrain", "--out", str(tmp_path / "dpm"), "--data", str(data), "--image-size", "8",
         "--preset", "tiny", "--images", "16", *common],
        ["sample", "--dpm", str(tmp_path / "dpm"), "-n", "4", "--steps", "3", "-o", str(tmp_path / "s.png"),
         "--device", "cuda"],
        ["fit", "--dpm", str(tmp_path / "dpm"), "--out", str(tmp_path / "pdae"), "--data", str(data),
         "--latent-dim", "8", "--images", "16", *common],
        ["encode", str(tmp_path / "pdae"), str(data), "-o", str(tmp_path / "z.npz"), "--x-T",
         "--steps", "3", "--device", "cuda"],
        ["reconstruct", str(tmp_path / "pdae"), str(data), "--limit", "4", "--inversion-steps", "3",
         "--decoding-steps", "3", "-o", str(tmp_path / "r.png"), "--device", "cuda"],
        ["gap", str(tmp_path / "pdae"), str(data), "--limit", "8", "--num-t", "4",
         "-o", str(tmp_path / "g.png"), "--device", "cuda"],
        ["denoise-one-step", str(tmp_path / "pdae"), str(data), "--limit", "4", "-o", str(tmp_path / "o.png"),
         "--device", "cuda"],
        ["eval", str(tmp_path / "pdae"), str(data), "--limit", "8", "--inversion-steps", "3",
         "--decoding-steps", "3", "--probe-train", "16", "--gap-images", "8", "-o", str(tmp_path / "e.json"),
         "--device", "cuda"],
    ]
    for args in commands:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args[0], result.output)


def test_sample_fid_computes_its_features_on_the_sampling_device(tmp_path, monkeypatch):
    """`pdae sample --fid` hands the feature network the device the samples came from, not the CPU."""
    import pdae.fid

    seen = []

    def spy_network(channels, image_size, classifier=None, device="cpu"):
        seen.append(torch.device(device))
        return (lambda images: images.flatten(1)[:, :4].double()), "first pixels"

    monkeypatch.setattr(pdae.fid, "feature_network", spy_network)
    monkeypatch.setattr(pdae.fid, "CACHE_DIR", tmp_path / "fid-cache")
    data = tmp_path / "d.npz"
    np.savez(data, images=np.random.default_rng(0).integers(0, 256, (16, 8, 8), dtype=np.uint8))
    for args in (["pretrain", "--out", str(tmp_path / "dpm"), "--data", str(data), "--image-size", "8", "--preset",
                  "tiny", "--images", "16", "--batch-size", "8", "--device", "cuda"],
                 ["sample", "--dpm", str(tmp_path / "dpm"), "-n", "6", "--steps", "3", "-o", str(tmp_path / "s.png"),
                  "--fid", str(data), "--device", "cuda"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args[0], result.output)
    assert [device.type for device in seen] == ["cuda"]
