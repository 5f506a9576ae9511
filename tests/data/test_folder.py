"""Finding a dataset's files in a folder and reading both sets together (fmproto.data.folder)."""

from pathlib import Path

import numpy as np
import pytest

from fmproto.data import folder
from conftest import raises_one_line
from test_datasets import HEADER, IMAGES_5x7, LABELS_4, RNG, csv_text, idx_bytes, write

def write_idx_set(directory: Path, names=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")) -> None:
    directory.mkdir(exist_ok=True)
    for name in names:
        array = IMAGES_5x7 if "images" in name else LABELS_4
        write(directory / name, idx_bytes(array), compress=name.endswith(".gz"))


def test_find_and_read_idx_dataset(tmp_path):
    write_idx_set(tmp_path)
    (tmp_path / "fashion-mnist_train.csv").write_text("ignored: IDX files come first\n")
    found = folder.find_dataset(tmp_path)
    assert found == {
        "format": "idx",
        "train": (tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz"),
        "test": (tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"),
    }
    for split in ("train", "test"):
        images, labels = folder.read_dataset_split(found, split)
        np.testing.assert_array_equal(images, IMAGES_5x7)
        np.testing.assert_array_equal(labels, LABELS_4)
    assert folder.read_dataset_split(found, "test", image_shape=[5, 7])[0].shape == (4, 5, 7)
    raises_one_line(found["test"][0], "images are 5x7 but image_shape is 7x5",
                    folder.read_dataset_split, found, "test", image_shape=(7, 5))
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'valid'"):
        folder.read_dataset_split(found, "valid")


def test_find_and_read_csv_dataset(tmp_path):
    write(tmp_path / "fashion-mnist_train.csv", csv_text(IMAGES_5x7, LABELS_4))
    write(tmp_path / "Fashion-MNIST_Test.csv.gz", csv_text(IMAGES_5x7[:2], LABELS_4[:2]), compress=True)
    (tmp_path / "notes.txt").write_text("not a candidate")
    found = folder.find_dataset(tmp_path)
    assert found == {"format": "csv", "train": tmp_path / "fashion-mnist_train.csv",
                     "test": tmp_path / "Fashion-MNIST_Test.csv.gz"}
    images, labels = folder.read_dataset_split(found, "test", image_shape=(5, 7))
    np.testing.assert_array_equal(images, IMAGES_5x7[:2])
    np.testing.assert_array_equal(labels, LABELS_4[:2])


def test_find_dataset_errors(tmp_path):
    raises_one_line(tmp_path / "nowhere", "dataset folder not found", folder.find_dataset, tmp_path / "nowhere")
    file = write(tmp_path / "file", "x")
    raises_one_line(file, "not a folder", folder.find_dataset, file)

    empty = tmp_path / "empty"
    empty.mkdir()
    raises_one_line(empty, r"no dataset found: expected the four IDX files .* or one \*train\*.csv",
                    folder.find_dataset, empty)

    partial = tmp_path / "partial"
    write_idx_set(partial, names=("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"))
    raises_one_line(partial, r"incomplete IDX dataset: missing t10k-images-idx3-ubyte\[.gz\], "
                             r"t10k-labels-idx1-ubyte\[.gz\]$", folder.find_dataset, partial)

    both = tmp_path / "both"
    write_idx_set(both)
    write(both / "t10k-labels-idx1-ubyte.gz", idx_bytes(LABELS_4), compress=True)
    raises_one_line(both, "both t10k-labels-idx1-ubyte and t10k-labels-idx1-ubyte.gz are present",
                    folder.find_dataset, both)

    several = tmp_path / "several"
    several.mkdir()
    for name in ("a_train.csv", "b_train.csv.gz", "test.csv"):
        (several / name).write_text(HEADER)
    raises_one_line(several, "several train CSV candidates: a_train.csv, b_train.csv.gz; keep one",
                    folder.find_dataset, several)

    no_test = tmp_path / "no_test"
    no_test.mkdir()
    (no_test / "train.csv").write_text(HEADER)
    raises_one_line(no_test, r"no \*test\*.csv \(or .csv.gz\) next to train.csv", folder.find_dataset, no_test)


def test_check_labels(tmp_path):
    folder.check_labels(np.array([0, 9, 4]), 10, source="x")
    source = tmp_path / "train-labels-idx1-ubyte.gz"
    raises_one_line(source, r"label 12 outside the 10 classes \(0..9\) at index 1; 2 labels out of range",
                    folder.check_labels, np.array([0, 12, 3, -1]), 10, source)
    raises_one_line(source, "labels must be 1-D integers", folder.check_labels, np.array([0.5]), 10, source)


CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.mark.parametrize("layout", ["idx", "csv"])
def test_read_dataset_refuses_a_training_class_with_no_images_by_name(tmp_path, layout):
    labels = np.array([0, 1, 2, 4, 5, 6, 7, 8, 9, 9], dtype=np.uint8)  # no Dress (3)
    images = RNG.integers(0, 256, size=(10, 5, 7), dtype=np.uint8)
    if layout == "idx":
        write_idx_set(tmp_path)  # then the training pair replaced
        write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(images), compress=True)
        source = write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(labels), compress=True)
    else:
        source = write(tmp_path / "x-train.csv", csv_text(images, labels))
        write(tmp_path / "x-test.csv", csv_text(images[:2], labels[:2]))
    message = raises_one_line(source, "has no images", folder.read_dataset, tmp_path, 10, image_shape=(5, 7),
                              class_names=CLASS_NAMES)
    assert message == f"{source}: class 'Dress' (label 3) has no images; every class needs at least one training image"
    raises_one_line(source, r": class 3 has no images;", folder.read_dataset, tmp_path, 10, image_shape=(5, 7))


def test_check_every_class_names_the_first_missing_and_counts_the_rest(tmp_path):
    folder.check_every_class(np.arange(10), 10, "x", CLASS_NAMES)
    raises_one_line(tmp_path, r"class 'T-shirt/top' \(label 0\) has no images \(2 more classes have none\)",
                    folder.check_every_class, np.array([1, 2, 3, 5, 6, 7, 9]), 10, tmp_path, CLASS_NAMES)


def test_read_dataset_accepts_a_test_set_without_some_classes(tmp_path):
    write(tmp_path / "x-train.csv", csv_text(IMAGES_5x7, np.array([0, 1, 2, 3])))
    write(tmp_path / "x-test.csv", csv_text(IMAGES_5x7[:2], np.array([0, 0])))  # classes 1..3 absent
    splits = folder.read_dataset(tmp_path, 4, image_shape=(5, 7), class_names=["a", "b", "c", "d"])
    np.testing.assert_array_equal(splits["test"][1], [0, 0])
    with pytest.raises(ValueError, match=r"class_names must hold n_classes \(4\) names; got 2"):
        folder.read_dataset(tmp_path, 4, image_shape=(5, 7), class_names=["a", "b"])
