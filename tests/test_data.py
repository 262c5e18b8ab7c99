"""Tests for pdae.data: format detection, decoding, labels and error messages of every source kind."""

import gzip
import io
import multiprocessing
import pickle
import re
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pdae.data import load_image, open_dataset, to_model_range, to_unit_range
from pdae.errors import DataError

MNIST = Path(__file__).resolve().parents[1] / "src" / "pdae" / "assets" / "mnist"


def write_idx(path: Path, magic: int, array: np.ndarray, *, cut: int = 0) -> None:
    """Write a gzipped big-endian IDX file, optionally dropping the last `cut` bytes."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw[:len(raw) - cut]))


def make_idx_dir(root: Path, images: np.ndarray, labels: np.ndarray, split: str = "t10k") -> Path:
    """A folder with one IDX split (`train` or `t10k`)."""
    root.mkdir(exist_ok=True)
    write_idx(root / f"{split}-images-idx3-ubyte.gz", 0x803, images)
    write_idx(root / f"{split}-labels-idx1-ubyte.gz", 0x801, labels)
    return root


def save_image(path: Path, array: np.ndarray, fmt: str | None = None) -> None:
    """Save a uint8 HxW or HxWx3 array as an image file, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """Encode a uint8 array as image bytes, as the LMDB writers store them."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def test_unit_and_model_range_are_inverse():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0])
    assert torch.equal(to_unit_range(x), torch.tensor([0.0, 0.5, 1.0, 1.0]))
    assert torch.equal(to_model_range(to_unit_range(x[:3])), x[:3])


# ---------------------------------------------------------------- IDX


def test_idx_round_trip_maps_pixels_exactly(tmp_path):
    images = np.zeros((3, 4, 4), np.uint8)
    images[0, 0, 0], images[1, 2, 3], images[2] = 255, 128, 7
    root = make_idx_dir(tmp_path / "idx", images, np.array([3, 0, 9], np.uint8))
    ds = open_dataset(root, image_size=4, channels=1, split="test")
    assert len(ds) == 3 and ds.num_classes == 10
    x, label = ds[0]
    assert x.dtype == torch.float32 and x.shape == (1, 4, 4)
    assert x[0, 0, 0].item() == 1.0 and x[0, 1, 1].item() == -1.0
    assert ds[1][0][0, 2, 3].item() == pytest.approx(128 / 127.5 - 1, abs=1e-6)
    assert [ds[i][1] for i in range(3)] == [3, 0, 9] and label == 3
    assert "idx" in ds.describe() and "test" in ds.describe()


def test_idx_bad_magic_names_the_file(tmp_path):
    root = make_idx_dir(tmp_path / "idx", np.zeros((2, 3, 3), np.uint8), np.zeros(2, np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte.gz", 0x803, np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*magic"):
        open_dataset(root, image_size=3, channels=1, split="test")


def test_idx_truncated_names_the_file(tmp_path):
    root = make_idx_dir(tmp_path / "idx", np.zeros((2, 3, 3), np.uint8), np.zeros(2, np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte.gz", 0x803, np.zeros((2, 3, 3), np.uint8), cut=4)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz.*truncated"):
        open_dataset(root, image_size=3, channels=1, split="test")


def test_idx_plain_names_resize_and_rgb(tmp_path):
    root = make_idx_dir(tmp_path / "idx", np.full((1, 4, 4), 255, np.uint8), np.ones(1, np.uint8), "train")
    for gz in root.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    x, label = open_dataset(root, image_size=8, channels=3)[0]
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.ones_like(x)) and label == 1
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz does not exist"):
        open_dataset(root, image_size=8, channels=3, split="test")


def test_shipped_mnist_test_split():
    ds = open_dataset(MNIST, image_size=28, channels=1, split="test", limit=5)
    assert len(ds) == 5 and ds.num_classes == 10
    items = [ds[i] for i in range(5)]
    assert all(x.shape == (1, 28, 28) and 0 <= y <= 9 for x, y in items)
    assert items[0][1] == 7  # the first MNIST test digit is a 7
    assert items[0][0].min() == -1.0 and items[0][0].max() == 1.0
    with pytest.raises(IndexError):
        ds[5]


# ---------------------------------------------------------------- folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Mixed sizes and formats in class sub-folders: cat/a.png (red), cat/deep/b.jpg, dog/c.bmp, d.webp."""
    root = tmp_path / "images"
    red = np.zeros((20, 40, 3), np.uint8)
    red[..., 0] = 255
    save_image(root / "cat" / "a.png", red)
    save_image(root / "cat" / "deep" / "b.jpg", np.full((50, 30, 3), 90, np.uint8))
    save_image(root / "dog" / "c.bmp", np.full((16, 16), 200, np.uint8))
    save_image(root / "dog" / "d.webp", np.full((12, 64, 3), 10, np.uint8), "WEBP")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_mixed_sizes_rgb(folder):
    ds = open_dataset(folder, image_size=16, channels=3)
    assert len(ds) == 4 and ds.num_classes == 0
    items = [ds[i] for i in range(4)]
    assert all(x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == -1 for x, y in items)
    red = items[0][0]  # cat/a.png comes first in sorted order
    assert torch.allclose(red[0], torch.ones(16, 16)) and torch.allclose(red[1:], -torch.ones(2, 16, 16))
    gray = items[2][0]  # dog/c.bmp, a gray image expanded to RGB
    assert torch.allclose(gray, torch.full((3, 16, 16), 200 / 127.5 - 1))


def test_folder_gray_conversion(folder):
    x, _ = open_dataset(folder, image_size=8, channels=1)[0]
    expected = round(0.299 * 255) / 127.5 - 1  # PIL's "L" conversion of pure red
    assert x.shape == (1, 8, 8) and torch.allclose(x, torch.full_like(x, expected), atol=1 / 127.5)


def test_folder_labels_from_folders(folder):
    ds = open_dataset(folder, image_size=8, channels=3, labels="folders")
    assert ds.num_classes == 2 and [ds[i][1] for i in range(4)] == [0, 0, 1, 1]


def test_folder_labels_from_csv(folder, tmp_path):
    names = tmp_path / "names.csv"
    names.write_text("file,label\ncat/a.png,zebra\ncat/deep/b.jpg,ant\ndog/c.bmp,zebra\ndog/d.webp,moth\n")
    ds = open_dataset(folder, image_size=8, channels=3, labels=names)
    assert ds.num_classes == 3 and [ds[i][1] for i in range(4)] == [2, 0, 2, 1]
    numbers = tmp_path / "numbers.csv"
    numbers.write_text("file,label\ncat/a.png,7\ncat/deep/b.jpg,2\ndog/c.bmp,2\ndog/d.webp,0\n")
    ds = open_dataset(folder, image_size=8, channels=3, labels=str(numbers))
    assert ds.num_classes == 8 and [ds[i][1] for i in range(4)] == [7, 2, 2, 0]


def test_folder_csv_missing_row(folder, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\ncat/a.png,1\n")
    with pytest.raises(DataError, match="3 images have no row"):
        open_dataset(folder, image_size=8, channels=3, labels=labels)


ATTRIBUTES_CSV = """file,age,gender,Smiling,name,height
cat/a.png,31,1,-1,zoe,1.5
dog/d.webp,4,0,1,al,0.25
cat/deep/b.jpg,31,0,1,bo,2
dog/c.bmp,77,1,-1,al,1
extra/not-opened.png,5,1,-1,cy,3
"""


def test_folder_csv_with_many_columns(folder, tmp_path):
    attributes = tmp_path / "attributes.csv"
    attributes.write_text(ATTRIBUTES_CSV)
    ds = open_dataset(folder, image_size=8, channels=3, labels=attributes, label_column="gender")
    assert [ds[i][1] for i in range(4)] == [1, 0, 1, 0] and ds.num_classes == 2  # integers kept
    table = ds.label_table()
    assert list(table) == ["age", "gender", "Smiling", "name", "height"]  # the CSV's order, file left out
    assert table["age"].dtype == np.int64 and table["age"].tolist() == [31, 31, 77, 4]
    assert table["Smiling"].tolist() == [-1, 1, -1, 1]  # -1/1 attributes keep their values
    assert table["height"].dtype == np.float64 and table["height"].tolist() == [1.5, 2.0, 1.0, 0.25]
    assert table["name"].tolist() == ["zoe", "bo", "al", "al"]
    assert list(ds.label_table(["name", "age"])) == ["name", "age"] and list(ds.label_table("age")) == ["age"]
    smiling = open_dataset(folder, image_size=8, channels=3, labels=attributes, label_column="Smiling")
    assert [smiling[i][1] for i in range(4)] == [0, 1, 0, 1] and smiling.num_classes == 2  # -1 -> 0, 1 -> 1
    names = open_dataset(folder, image_size=8, channels=3, labels=attributes, label_column="name", limit=3)
    assert [names[i][1] for i in range(3)] == [3, 1, 0] and names.num_classes == 4  # al, bo, cy, zoe
    assert names.label_table("age")["age"].tolist() == [31, 31, 77]  # as long as the dataset


def test_celeba_attribute_files_as_released(folder, tmp_path):
    """list_attr_celeba.txt / CelebAMask-HQ-attribute-anno.txt: count line, names line, space-split rows."""
    released = tmp_path / "list_attr_celeba.txt"
    released.write_text("4\nSmiling Male \ncat/a.png  1 -1\ncat/deep/b.jpg -1 -1\ndog/c.bmp  1  1\n"
                        "dog/d.webp -1  1\n")
    ds = open_dataset(folder, image_size=8, channels=3, labels=released, label_column="Male")
    assert [ds[i][1] for i in range(4)] == [0, 0, 1, 1]
    assert ds.label_table()["Smiling"].tolist() == [1, -1, 1, -1]


def test_label_table_without_a_csv(folder):
    assert open_dataset(folder, image_size=8, channels=3).label_table() == {}
    table = open_dataset(folder, image_size=8, channels=3, labels="folders").label_table()
    assert list(table) == ["label"] and table["label"].tolist() == [0, 0, 1, 1]
    assert open_dataset(MNIST, image_size=28, channels=1, limit=2).label_table()["label"].tolist() == [5, 0]


@pytest.mark.parametrize("text,column,message", [
    (ATTRIBUTES_CSV, None,
     "has several label columns (age, gender, Smiling, name, height): pass a label column"),
    (ATTRIBUTES_CSV, "Male", "has no column 'Male'; its columns: age, gender, Smiling, name, height"),
    (ATTRIBUTES_CSV + "dog/c.bmp,1,1,1,al,1\n", "age",
     "line 7: file dog/c.bmp appears twice (first on line 5)"),
    ("file,age,gender\ncat/a.png,3\n", "age", "line 2: 2 values for the 3 columns file,age,gender"),
    ("name,age\ncat/a.png,3\n", "age", "must start with a header line file,<columns>"),
    ("file,age,age\ncat/a.png,3,3\n", "age", "with distinct names"),
    ("file,age\ncat/a.png,3\n", None, "3 images have no row in"),
])
def test_folder_csv_errors_name_the_file_and_column(folder, tmp_path, text, column, message):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(DataError, match=re.escape(message)) as error:
        open_dataset(folder, image_size=8, channels=3, labels=labels, label_column=column)
    assert str(labels) in str(error.value)


def test_label_column_needs_a_csv(folder, tmp_path):
    with pytest.raises(DataError, match="label column 'age' given without labels"):
        open_dataset(folder, image_size=8, channels=3, label_column="age")
    with pytest.raises(DataError, match="labels='folders' has none"):
        open_dataset(folder, image_size=8, channels=3, labels="folders", label_column="age")
    with pytest.raises(DataError, match="only to image folders"):
        open_dataset(MNIST, image_size=28, channels=1, labels=tmp_path / "x.csv", label_column="age")
    with pytest.raises(DataError, match=r"no label column 'age' in .*; its columns: label"):
        open_dataset(folder, image_size=8, channels=3, labels="folders").label_table(["age"])


def test_one_csv_per_split_beside_the_split_folders(tmp_path):
    """The UTKFace / CelebA layout: train/ and test/ hold the images, train.csv and test.csv bare names."""
    for split, names in (("train", ["1_0_2_x.jpg", "20_1_0_y.jpg"]), ("test", ["9_1_4_z.jpg"])):
        rows = [f"{name},{name.split('_')[0]},{name.split('_')[1]},{name.split('_')[2]}" for name in names]
        (tmp_path / f"{split}.csv").write_text("\n".join(["file,age,gender,race", *rows]) + "\n")
        for name in names:
            save_image(tmp_path / split / name, np.zeros((8, 8, 3), np.uint8))
    labels = tmp_path / "{split}.csv"
    train = open_dataset(tmp_path, image_size=8, channels=3, labels=labels, label_column="race")
    test = open_dataset(tmp_path, image_size=8, channels=3, split="test", labels=str(labels),
                        label_column="gender")
    assert [train[i][1] for i in range(2)] == [2, 0] and train.label_table("age")["age"].tolist() == [1, 20]
    assert test[0][1] == 1 and test.label_table()["race"].tolist() == [4]


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "utkface-64").is_dir() or not (SHARED / "celeba-6k-64").is_dir(),
                    reason="needs ../shared/data (UTKFace and CelebA as released there)")
def test_released_utkface_and_celeba_csvs_open_as_they_are():
    utk = open_dataset(SHARED / "utkface-64", image_size=64, channels=3, split="test",
                       labels=SHARED / "utkface-64" / "{split}.csv", label_column="gender")
    assert len(utk) == 2301 and utk.num_classes == 2 and set(utk.label_table()) == {"age", "gender", "race"}
    celeba = open_dataset(SHARED / "celeba-6k-64", image_size=64, channels=3, split="val",
                          labels=SHARED / "celeba-6k-64" / "{split}.csv", label_column="Male")
    table = celeba.label_table()
    assert len(celeba) == 780 and len(table) == 41 and table["Young"].dtype == np.int64
    assert set(np.unique(table["Smiling"])) <= {0, 1} and celeba[0][1] in (0, 1)


def test_folder_split_subfolders(tmp_path):
    save_image(tmp_path / "train" / "a.png", np.zeros((8, 8), np.uint8))
    save_image(tmp_path / "train" / "b.png", np.zeros((8, 8), np.uint8))
    save_image(tmp_path / "test" / "c.png", np.zeros((8, 8), np.uint8))
    assert len(open_dataset(tmp_path, image_size=8, channels=1)) == 2
    ds = open_dataset(tmp_path, image_size=8, channels=1, split="test")
    assert len(ds) == 1 and "split test" in ds.describe()


def test_empty_folder_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no images found in .*looked for \.png, \.jpg"):
        open_dataset(tmp_path, image_size=8, channels=3)


def test_corrupt_image_raises_naming_it(folder):
    (folder / "dog" / "x.png").write_bytes(b"this is not a png at all")
    ds = open_dataset(folder, image_size=8, channels=3)
    assert len(ds) == 5
    with pytest.raises(DataError, match="x.png"):
        ds[4]


def test_corrupt_image_skipped_with_one_line_each(folder, capsys):
    (folder / "dog" / "x.png").write_bytes(b"\x89PNG garbage")
    (folder / "dog" / "y.png").write_bytes(b"")
    ds = open_dataset(folder, image_size=8, channels=3, skip_bad=True)
    assert len(ds) == 4 and all(ds[i][0].shape == (3, 8, 8) for i in range(4))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("skipping unreadable image ") and "x.png" in lines[0]
    assert "y.png" in lines[1] and lines[2] == f"skipped 2 of 6 images in {folder}"


# ---------------------------------------------------------------- LMDB


def build_lmdb(path: Path, items: dict[bytes, bytes]) -> Path:
    """Write key/value pairs into a fresh LMDB folder."""
    with lmdb.open(str(path), map_size=1 << 22) as env, env.begin(write=True) as txn:
        for key, value in items.items():
            txn.put(key, value)
    return path


def test_lmdb_diffae_layout(tmp_path):
    shades = [0, 100, 255]
    items = {f"256-{str(i).zfill(5)}".encode(): encode(np.full((12, 12, 3), s, np.uint8))
             for i, s in enumerate(shades)}
    items[b"length"] = b"2"  # the database's own count wins over the number of keys
    ds = open_dataset(build_lmdb(tmp_path / "ffhq.lmdb", items), image_size=6, channels=3)
    assert len(ds) == 2 and ds.num_classes == 0 and "lmdb" in ds.describe()
    x, label = ds[1]
    assert x.shape == (3, 6, 6) and label == -1
    assert torch.allclose(x, torch.full_like(x, 100 / 127.5 - 1))


def test_lmdb_pdae_celeba_layout_picks_resolution(tmp_path):
    items = {f"None-{str(i).zfill(7)}".encode(): encode(np.full((10, 14), 60 * i, np.uint8))
             for i in range(3)}
    ds = open_dataset(build_lmdb(tmp_path / "celeba.lmdb", items), image_size=10, channels=1)
    assert len(ds) == 3  # no length key: counted
    assert torch.allclose(ds[2][0], torch.full((1, 10, 10), 120 / 127.5 - 1))
    multi = {f"{r}-{str(i).zfill(5)}".encode(): encode(np.full((r, r), r, np.uint8)) for r in (8, 16)
             for i in range(2)}
    multi[b"length"] = b"2"
    x, _ = open_dataset(build_lmdb(tmp_path / "multi.lmdb", multi), image_size=12, channels=1)[0]
    assert torch.allclose(x, torch.full((1, 12, 12), 16 / 127.5 - 1))  # read from the 16-px group


def test_lmdb_bare_keys_and_missing_key(tmp_path):
    items = {str(i).zfill(7).encode(): encode(np.full((4, 4, 3), 255, np.uint8), "WEBP") for i in range(2)}
    items[b"length"] = b"3"
    ds = open_dataset(build_lmdb(tmp_path / "gen.lmdb", items) / "data.mdb", image_size=4, channels=3)
    assert len(ds) == 3 and ds[0][0].shape == (3, 4, 4)
    with pytest.raises(DataError, match="0000002"):
        ds[2]


def test_lmdb_works_in_forked_and_spawned_workers(tmp_path):
    items = {f"256-{i:05d}".encode(): encode(np.full((4, 4, 3), 50 * i, np.uint8)) for i in range(4)}
    items[b"length"] = b"4"
    ds = open_dataset(build_lmdb(tmp_path / "w.lmdb", items), image_size=4, channels=3)
    first = ds[0][0]  # opens the environment in this process before workers start
    assert torch.equal(pickle.loads(pickle.dumps(ds))[0][0], first)  # what spawned workers receive
    if "fork" in multiprocessing.get_all_start_methods():
        loader = DataLoader(ds, batch_size=2, num_workers=1, multiprocessing_context="fork")
        batches = torch.cat([x for x, _ in loader])
        assert torch.equal(batches, torch.stack([ds[i][0] for i in range(4)]))


# ---------------------------------------------------------------- npz


def test_npz_uint8_nhw_with_labels(tmp_path):
    images = np.zeros((4, 6, 6), np.uint8)
    images[1] = 255
    np.savez(tmp_path / "d.npz", images=images, labels=np.array([0, 5, 2, 1]))
    ds = open_dataset(tmp_path / "d.npz", image_size=6, channels=1)
    assert len(ds) == 4 and ds.num_classes == 6 and [ds[i][1] for i in range(4)] == [0, 5, 2, 1]
    assert torch.equal(ds[1][0], torch.ones(1, 6, 6)) and torch.equal(ds[0][0], -torch.ones(1, 6, 6))
    x, _ = open_dataset(tmp_path / "d.npz", image_size=3, channels=3, limit=2)[1]
    assert x.shape == (3, 3, 3) and torch.allclose(x, torch.ones_like(x))


def test_npz_float_nchw_first_array_to_gray(tmp_path):
    images = np.zeros((2, 3, 8, 8), np.float32)
    images[:, 1] = 1.0  # pure green
    np.savez(tmp_path / "f.npz", pixels=images)
    ds = open_dataset(tmp_path / "f.npz", image_size=4, channels=1)
    x, label = ds[0]
    assert x.shape == (1, 4, 4) and label == -1 and ds.num_classes == 0
    assert torch.allclose(x, torch.full_like(x, 2 * 0.587 - 1), atol=1e-6)


def test_npz_nhwc_and_bad_range(tmp_path):
    np.savez(tmp_path / "c.npz", images=np.full((2, 5, 5, 3), 255, np.uint8))
    assert open_dataset(tmp_path / "c.npz", image_size=5, channels=3)[0][0].shape == (3, 5, 5)
    np.savez(tmp_path / "bad.npz", images=np.full((2, 5, 5), 3.0))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        open_dataset(tmp_path / "bad.npz", image_size=5, channels=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_non_finite_pixels_name_the_file_and_image(tmp_path, bad):
    images = np.full((5, 4, 4), 0.5, np.float32)
    images[3, 1, 2] = bad
    np.savez(tmp_path / "nan.npz", images=images)
    with pytest.raises(DataError, match=r"nan\.npz: images must be finite; image 3 holds NaN or inf"):
        open_dataset(tmp_path / "nan.npz", image_size=4, channels=1)


def test_npz_pixel_checks_run_in_chunks(tmp_path, monkeypatch):
    import pdae.data.npz as npz_source

    monkeypatch.setattr(npz_source, "_CHECK_BYTES", 2 * 4 * 4 * 4)  # two float32 4x4 images a chunk
    images = np.full((7, 4, 4), 0.5, np.float32)
    images[6, 0, 0] = np.nan
    np.savez(tmp_path / "late.npz", images=images)
    with pytest.raises(DataError, match="image 6 holds"):
        open_dataset(tmp_path / "late.npz", image_size=4, channels=1)
    images[6, 0, 0], images[0, 0, 0], images[5, 3, 3] = 0.5, -0.25, 1.5
    np.savez(tmp_path / "range.npz", images=images)
    with pytest.raises(DataError, match=r"found \[-0.25, 1.5\]"):  # over every chunk
        open_dataset(tmp_path / "range.npz", image_size=4, channels=1)


def test_npz_written_by_savez_is_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 5, 7, 3), dtype=np.uint8)
    labels = np.arange(6) % 4
    np.savez(tmp_path / "m.npz", images=images, labels=labels)
    np.savez_compressed(tmp_path / "z.npz", images=images, labels=labels)
    np.save(tmp_path / "a.npy", images)
    mapped, compressed, plain = (open_dataset(tmp_path / name, image_size=4, channels=3)
                                 for name in ("m.npz", "z.npz", "a.npy"))
    assert isinstance(mapped.source.images, np.memmap)
    assert not isinstance(compressed.source.images, np.memmap)  # loaded whole, silently
    assert isinstance(plain.source.images, np.memmap) and plain.describe().startswith("npy dataset")
    eager = [torch.stack([x for x, _ in (ds[i] for i in range(6))]) for ds in (mapped, compressed, plain)]
    assert torch.equal(eager[0], eager[1]) and torch.equal(eager[0], eager[2])
    assert [mapped[i][1] for i in range(6)] == labels.tolist() == [compressed[i][1] for i in range(6)]
    again = pickle.loads(pickle.dumps(mapped))  # what spawned workers receive: the map, not the pixels
    assert mapped.source.__getstate__()["images"] is None and isinstance(again.source.images, np.memmap)
    assert torch.equal(again[5][0], mapped[5][0])


# ---------------------------------------------------------------- common


def test_hflip_is_drawn_from_seed_epoch_and_index(tmp_path):
    images = np.arange(16, dtype=np.uint8).reshape(1, 4, 4) * 16
    np.savez(tmp_path / "h.npz", images=images)
    plain = open_dataset(tmp_path / "h.npz", image_size=4, channels=1)[0][0]
    flipping = open_dataset(tmp_path / "h.npz", image_size=4, channels=1, hflip=True)
    draws = [flipping[0, seed, epoch][0] for seed in range(4) for epoch in range(4)]
    assert any(torch.equal(d, torch.flip(plain, [-1])) for d in draws)
    assert any(torch.equal(d, plain) for d in draws)
    torch.manual_seed(0)  # the global RNG plays no part
    assert all(torch.equal(d, flipping[0, seed, epoch][0])
               for d, (seed, epoch) in zip(draws, [(s, e) for s in range(4) for e in range(4)]))
    assert torch.equal(flipping[0][0], flipping[0, 0, 0][0])  # a plain index is (index, 0, 0)


def test_nonexistent_and_unsupported_sources(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nope", image_size=8, channels=3)
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="accepted sources"):
        open_dataset(tmp_path / "data.csv", image_size=8, channels=3)
    with pytest.raises(DataError, match="only to image folders"):
        open_dataset(MNIST, image_size=28, channels=1, labels="folders")


def test_a_16_bit_image_keeps_its_grey_levels(tmp_path):
    """PIL's own 16-to-8-bit conversion clips at 255, which turns almost every 16-bit pixel white."""
    values = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    x = load_image(tmp_path / "g16.png", 2, 1)
    np.testing.assert_allclose(x[0].numpy(), np.array([[0, 64], [128, 255]]) / 127.5 - 1, atol=1e-6)


def test_a_limited_folder_is_a_spread_out_sample_while_an_idx_file_keeps_its_order(tmp_path):
    """Sorted file names group labels (UTKFace's begin with the age, class folders sort by class): a folder's
    --limit takes a fixed sample spread over it, the same on every call and nested for smaller limits, with
    images, class labels and CSV columns of the same files; an IDX file's limit keeps its first N."""
    rows = ["file,age"]
    for k in range(40):
        name = f"{'cat' if k < 20 else 'dog'}/{k:02d}.png"
        save_image(tmp_path / name, np.full((4, 4), k, np.uint8))
        rows.append(f"{name},{k}")
    (tmp_path / "ages.csv").write_text("\n".join(rows) + "\n")
    by_class = open_dataset(tmp_path, image_size=4, channels=1, labels="folders", limit=10)
    by_age = open_dataset(tmp_path, image_size=4, channels=1, labels=tmp_path / "ages.csv", label_column="age",
                          limit=10)
    files = [round(float(by_class[i][0][0, 0, 0] + 1) / 2 * 255) for i in range(10)]  # pixel value = file k
    assert files == sorted(files) and len(set(files)) == 10 and max(files) - min(files) >= 20
    assert by_class.class_labels().tolist() == [int(k >= 20) for k in files] == [by_class[i][1] for i in range(10)]
    assert by_age.label_table("age")["age"].tolist() == files == [by_age[i][1] for i in range(10)]
    smaller = open_dataset(tmp_path, image_size=4, channels=1, limit=4)
    assert {round(float(smaller[i][0][0, 0, 0] + 1) / 2 * 255) for i in range(4)} <= set(files)
    assert open_dataset(tmp_path, image_size=4, channels=1, limit=40).class_labels() is None  # no labels asked
    assert open_dataset(MNIST, image_size=28, channels=1, limit=3).class_labels().tolist() == [5, 0, 4]
