"""Batches: in dataset order for encoding and evaluation, and the endless seeded stream training reads.

The training stream is a sequence of epochs, each a permutation seeded by (seed, epoch); global batch
`step` is the `batch_size` items after the first `step * batch_size`, and rank r of w processes takes
every w-th of them from the r-th. Any step's batch follows from (seed, step) alone, so a resumed run
reads exactly the batches an uninterrupted one does, whatever loads them.
"""

from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pdae.data.dataset import ImageDataset, ItemKey
from pdae.errors import DataError


def stack_items(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, label) items into (images, labels)."""
    images, labels = zip(*items)
    return torch.stack(images), torch.as_tensor(labels)


def collate(dataset: Dataset, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the items at `indices` into (images, labels), loading them in this process."""
    return stack_items([dataset[i] for i in indices])


def iterate_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches in dataset order, for encoding and evaluation."""
    for start in range(0, len(dataset), batch_size):
        yield collate(dataset, range(start, min(start + batch_size, len(dataset))))


def epoch_permutation(num_items: int, seed: int, epoch: int) -> list[int]:
    """The item order of `epoch`, a permutation seeded by (seed, epoch) alone."""
    epoch_seed = int(np.random.SeedSequence([seed, epoch, 0]).generate_state(1)[0])
    return torch.randperm(num_items, generator=torch.Generator().manual_seed(epoch_seed)).tolist()


class EpochBatches(Sampler[list[ItemKey]]):
    """This rank's keys of global batches start_step, start_step + 1, ... of the seeded epoch stream.

    Keys are (index, seed, epoch) for an ImageDataset, which seeds its augmentation with them, and
    plain indices for any other dataset. Each epoch's permutation is built once, when reached.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                 world_size: int = 1, keyed: bool = False) -> None:
        if num_items < 1:
            raise DataError("the dataset is empty: there is nothing to draw training batches from")
        self.num_items, self.batch_size, self.seed, self.start_step = num_items, batch_size, seed, start_step
        self.rank, self.world_size, self.keyed = rank, world_size, keyed

    def __iter__(self) -> Iterator[list[ItemKey]]:
        epoch, order = -1, []
        for step in itertools.count(self.start_step):
            keys: list[ItemKey] = []
            first = step * self.batch_size
            for position in range(first + self.rank, first + self.batch_size, self.world_size):
                if position // self.num_items != epoch:  # positions only grow: one epoch held at a time
                    epoch = position // self.num_items
                    order = epoch_permutation(self.num_items, self.seed, epoch)
                index = order[position % self.num_items]
                keys.append((index, self.seed, epoch) if self.keyed else index)
            yield keys


def training_batches(dataset: Dataset, batch_size: int, seed: int, start_step: int = 0, rank: int = 0,
                     world_size: int = 1, workers: int = 0,
                     pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's (images, labels) of global batches start_step, start_step + 1, ..., endlessly.

    Args:
        batch_size: the global batch over all `world_size` processes; this rank gets every
            world_size-th item of it.
        workers: data-loading processes (0: load in this process, on demand).
        pin_memory: pin the batches in page-locked memory, for faster copies to a CUDA device.
    """
    sampler = EpochBatches(len(dataset), batch_size, seed, start_step, rank, world_size,
                           keyed=isinstance(dataset, ImageDataset))
    # torch's defaults prefetch 2 batches per worker; the one endless iterator keeps its workers alive,
    # so persistent_workers would have nothing to keep. The generator keeps the loader's own seed draw
    # off the global RNG, which the training step seeds for itself.
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, collate_fn=stack_items,
                        pin_memory=pin_memory, generator=torch.Generator())
    return iter(loader)
