"""Image datasets: MNIST IDX folders, image folders, Diff-AE/PDAE LMDB folders and .npz/.npy arrays.

Every dataset yields ``(image, label)``: a float32 tensor (channels, size, size) in [-1, 1] and an int
label (-1 when the dataset has no labels). ``open_dataset`` detects the format from the source path;
one module per format reads it (idx, folder, lmdb, npz), ``convert`` turns its pixels into tensors, and
``loader`` batches the items, for training in worker processes.
"""

from pdae.data.convert import load_image, to_model_range, to_unit_range
from pdae.data.dataset import ImageDataset, ItemKey, open_dataset
from pdae.data.folder import label_csv_columns
from pdae.data.loader import EpochBatches, collate, epoch_permutation, iterate_batches, training_batches
from pdae.data.source import ACCEPTED, IMAGE_EXTS

__all__ = [
    "ACCEPTED", "IMAGE_EXTS", "EpochBatches", "ImageDataset", "ItemKey", "collate", "epoch_permutation",
    "iterate_batches", "label_csv_columns", "load_image", "open_dataset", "to_model_range", "to_unit_range",
    "training_batches",
]
