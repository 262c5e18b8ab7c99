"""A small CNN image classifier (MNIST-sized), stored like every pdae model: weights plus config JSON.

Used to judge samples (e.g. the share of DPM samples it labels with confidence) and as a simple
supervised baseline. It trains through the shared loop with `CrossEntropyLoss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from pdae.checkpoint import load_state_strict, load_weights, resolve_weights_path
from pdae.data import iterate_batches
from pdae.errors import CheckpointError, PdaeError

DEFAULT_WIDTHS = (32, 64, 64)
# scripts/train_mnist_classifier.py's run (99.22 % on the 10k test digits), in fp16: FID features for digits.
SHIPPED_MNIST_CLASSIFIER = Path(__file__).parent / "assets" / "checkpoints" / "mnist_classifier.safetensors"


def norm_act(channels: int) -> list[nn.Module]:
    """GroupNorm (8 groups, or fewer for narrow layers) followed by SiLU."""
    return [nn.GroupNorm(min(8, channels), channels), nn.SiLU()]


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution, GroupNorm, SiLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, padding=1), *norm_act(out_channels))


class SmallClassifier(nn.Module):
    """Conv stem, then per further width a stride-2 conv and a conv, global average pool, linear head."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                 widths: Sequence[int] = DEFAULT_WIDTHS):
        super().__init__()
        if not widths:
            raise PdaeError("the classifier needs at least one width")
        self.in_channels, self.num_classes, self.image_size = in_channels, num_classes, image_size
        layers: list[nn.Module] = [conv_block(in_channels, widths[0])]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [conv_block(c_in, c_out, stride=2), conv_block(c_out, c_out)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Pooled features (N, last width) of images in [-1, 1]: what FID on digits compares."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) of images (N, C, H, W) in [-1, 1]."""
        return self.head(self.embed(x))


def classifier_config(in_channels: int = 1, num_classes: int = 10, image_size: int = 28,
                      widths: Sequence[int] = DEFAULT_WIDTHS) -> dict:
    """The JSON that rebuilds a classifier: stored in its weights file's metadata."""
    return {"kind": "classifier", "in_channels": in_channels, "num_classes": num_classes,
            "image_size": image_size, "widths": list(widths)}


def build_classifier(config: dict) -> SmallClassifier:
    """A freshly initialised classifier from its config."""
    if config.get("kind") != "classifier":
        raise CheckpointError(f"expected a classifier checkpoint, found kind {config.get('kind')!r}")
    return SmallClassifier(config["in_channels"], config["num_classes"], config["image_size"],
                           config.get("widths", DEFAULT_WIDTHS))


def load_classifier(path: str | Path) -> SmallClassifier:
    """Load a pdae classifier (a run folder or its .safetensors file), in eval mode."""
    weights_path = resolve_weights_path(Path(path))
    state, config = load_weights(weights_path)
    net = build_classifier(config)
    load_state_strict(net, state, str(weights_path))
    return net.eval()


class CrossEntropyLoss:
    """Per-sample cross-entropy of the logits against the labels, for the shared training loop."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, net: nn.Module, x0: Tensor, labels: Tensor) -> Tensor:
        if (labels < 0).any():
            raise PdaeError("the classifier needs labelled images; this dataset has none (label -1)")
        logits = net(x0)
        return F.cross_entropy(logits.float(), labels, reduction="none", label_smoothing=self.label_smoothing)


@torch.no_grad()
def predict_proba(net: nn.Module, images: Tensor, batch_size: int = 500) -> Tensor:
    """Softmax class probabilities (N, num_classes) of model-range images, in batches."""
    device = next(net.parameters()).device
    chunks = [net(images[i : i + batch_size].to(device)).float().softmax(-1).cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


@torch.no_grad()
def accuracy(net: nn.Module, dataset: Dataset, batch_size: int = 500) -> float:
    """Share of the dataset's items whose arg-max prediction equals their label."""
    correct = 0
    for images, labels in iterate_batches(dataset, batch_size):
        predicted = predict_proba(net, images, batch_size).argmax(-1)
        correct += int((predicted == labels).sum())
    return correct / max(len(dataset), 1)
