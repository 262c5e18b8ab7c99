"""The class-conditional gradient estimator: G on a class embedding instead of E(x0), trained by
`pdae fit --condition class`, sampled per class and G scale by `pdae sample RUN --class C --scale S`."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pdae.autoencode import StepCounts, decode_from_noise
from pdae.cli import app
from pdae.errors import PdaeError
from pdae.losses import PDAELoss
from pdae.model import PDAEConfig, load_pdae

runner = CliRunner()
torch.set_num_threads(1)


def test_class_embedding_replaces_the_encoder_and_the_loss_uses_the_labels(make_shifted_pdae):
    model = make_shifted_pdae(latent_dim=4, condition="class", num_classes=3)
    labels = torch.tensor([0, 2])
    torch.testing.assert_close(model.encode(labels), model.encoder.weight[[0, 2]])
    with pytest.raises(PdaeError, match="no image encoder"):
        model.encode(torch.zeros(2, 1, 8, 8))
    loss_fn, x0 = PDAELoss(model.schedule, class_conditional=True), torch.rand(2, 1, 8, 8) * 2 - 1
    losses = []
    for y in (labels, torch.tensor([1, 1])):
        torch.manual_seed(1)
        losses.append(loss_fn(model, x0, y))
    assert (losses[0] - losses[1]).abs().max() > 0  # same t and noise, other classes: another loss
    with pytest.raises(PdaeError, match="at least 2 classes"):
        PDAEConfig(condition="class", num_classes=1)


def test_fit_by_class_then_sample_each_class_at_several_scales(tmp_path):
    rng = np.random.default_rng(0)
    data, unlabelled = tmp_path / "data.npz", tmp_path / "plain.npz"
    images = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8)
    np.savez(data, images=images, labels=np.arange(24) % 3)
    np.savez(unlabelled, images=images)
    common = ["--images", "32", "--batch-size", "8", "--threads", "1"]
    assert runner.invoke(app, ["pretrain", "--out", str(tmp_path / "dpm"), "--data", str(data), "--image-size",
                               "8", "--preset", "tiny", *common]).exit_code == 0
    fit = ["fit", "--dpm", str(tmp_path / "dpm"), "--latent-dim", "8", "--condition", "class", *common]
    result = runner.invoke(app, [*fit, "--out", str(tmp_path / "none"), "--data", str(unlabelled)])
    assert result.exit_code != 0 and "needs class labels" in str(result.exception or result.output)
    run = tmp_path / "by_class"
    result = runner.invoke(app, [*fit, "--out", str(run), "--data", str(data)])
    assert result.exit_code == 0, result.output

    per_class = []
    for label in ("0", "2"):
        npz = tmp_path / f"c{label}.npz"
        result = runner.invoke(app, ["sample", str(run), "--class", label, "--scale", "0,3", "-n", "2",
                                     "--steps", "3", "--npz", str(npz), "-o", str(tmp_path / "s.png")])
        assert result.exit_code == 0, result.output
        per_class.append(np.load(npz)["samples"])
    assert per_class[0].shape == (4, 1, 8, 8)
    np.testing.assert_array_equal(per_class[0][:2], per_class[1][:2])  # scale 0: the bare DPM, any class
    model = load_pdae(run)  # scale 3, unclamped (this tiny DPM saturates the clamped pixels): G shifts by class
    unclamped = StepCounts(decoding=3, clip_random=False)
    by_class = [decode_from_noise(model, model.encode(torch.tensor([c, c])), [1, 2], unclamped, scale=3)
                for c in (0, 2)]
    assert (by_class[0] - by_class[1]).abs().max() > 1e-6  # small: G trained on 32 images from zero

    result = runner.invoke(app, ["sample", str(run), "-n", "1"])
    assert result.exit_code != 0 and "pick one with --class" in str(result.exception or result.output)
