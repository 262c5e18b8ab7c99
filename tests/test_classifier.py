"""Tests for pdae.classifier: shapes, the loss, training through the shared loop, and checkpoint round trips."""  # noqa: E501

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pdae.checkpoint import save_weights
from pdae.classifier import (
    CrossEntropyLoss,
    SmallClassifier,
    build_classifier,
    classifier_config,
    load_classifier,
)
from pdae.data import open_dataset
from pdae.errors import CheckpointError, PdaeError
from pdae.training import TrainConfig, train


@pytest.fixture(autouse=True)
def one_thread():
    """Keep these tests light on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_npz(path: Path, count: int = 64, size: int = 8) -> Path:
    """Two easy classes: a bright left half (label 0) or a bright right half (label 1), plus noise."""
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 2
    images = rng.uniform(0, 0.3, (count, size, size))
    half = size // 2
    images[labels == 0, :, :half] += 0.7
    images[labels == 1, :, half:] += 0.7
    np.savez(path, images=images.astype(np.float32), labels=labels.astype(np.int64))
    return path


def test_output_shape():
    net = SmallClassifier(in_channels=1, num_classes=10, image_size=28)
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    rgb = build_classifier(classifier_config(in_channels=3, num_classes=4, image_size=16, widths=(8, 16)))
    assert rgb(torch.randn(2, 3, 16, 16)).shape == (2, 4)


def test_cross_entropy_matches_hand_computation():
    torch.manual_seed(0)
    net = SmallClassifier(1, 10, 28).eval()
    x, labels = torch.randn(5, 1, 28, 28), torch.tensor([0, 3, 9, 3, 7])
    loss = CrossEntropyLoss()(net, x, labels)
    assert loss.shape == (5,)
    logits = net(x)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels, reduction="none"))
    by_hand = -logits.log_softmax(-1)[torch.arange(5), labels]
    torch.testing.assert_close(loss, by_hand)


def test_cross_entropy_rejects_unlabelled_images():
    with pytest.raises(PdaeError, match="labelled"):
        CrossEntropyLoss()(SmallClassifier(1, 2, 8), torch.randn(2, 1, 8, 8), torch.tensor([0, -1]))


def test_training_through_shared_loop_lowers_the_loss(tmp_path, monkeypatch):
    monkeypatch.setattr("pdae.training.open_tensorboard", lambda run_dir: None)  # its import alone takes ~2 s
    dataset = open_dataset(tiny_npz(tmp_path / "tiny.npz"), image_size=8, channels=1)
    images, labels = (torch.stack([dataset[i][0] for i in range(len(dataset))]),
                      torch.tensor(dataset.source.labels))
    config = classifier_config(1, 2, 8, widths=(8, 16))
    torch.manual_seed(0)
    net = build_classifier(config)
    loss_fn = CrossEntropyLoss()
    with torch.no_grad():
        before = loss_fn(net, images, labels).mean().item()
    cfg = TrainConfig(total_images=16 * 15, batch_size=16, lr=1e-2, warmup_images=1, checkpoint_images=10**9)
    ema = train(net, loss_fn, dataset, cfg, tmp_path / "run", config, description="test")
    with torch.no_grad():
        after = loss_fn(ema.eval(), images, labels).mean().item()
    assert after < 0.5 * before
    assert load_classifier(tmp_path / "run").num_classes == 2


def test_load_classifier_round_trip(tmp_path):
    config = classifier_config(1, 10, 28)
    torch.manual_seed(1)
    net = build_classifier(config).eval()
    save_weights(tmp_path / "clf.safetensors", net.state_dict(), config)
    loaded = load_classifier(tmp_path / "clf.safetensors")
    assert not loaded.training
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))


def test_load_classifier_rejects_other_kinds(tmp_path):
    net = SmallClassifier(1, 10, 28)
    save_weights(tmp_path / "dpm.safetensors", net.state_dict(), {"kind": "dpm"})
    with pytest.raises(CheckpointError, match="expected a classifier"):
        load_classifier(tmp_path / "dpm.safetensors")
