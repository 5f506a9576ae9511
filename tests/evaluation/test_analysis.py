"""The analysis moved out of the stage scripts: ANN accuracy by k, classification reports, confusion
tables, prototype layout, feature widths and fit sets, each against an independent computation."""

import numpy as np
import pytest
from sklearn import metrics as skm

from fmproto.search import ann, ann_eval
from fmproto.representation import augment, transform, hog
from fmproto.evaluation import scores, fitset
from fmproto.prototypes.kmeans import rows_by_class

CLASSES = ["a", "b", "c"]


def test_scores_by_k_vote_the_first_k_and_mask_missing_neighbours():
    y_train = np.array([0, 1, 1, 2, 2])
    indices = np.array([[1, 2, 0], [3, -1, -1], [0, 4, 3]])  # row 1: Annoy found a single item
    distances = np.array([[1.0, 2.0, 3.0], [1.0, np.inf, np.inf], [1.0, 2.0, 2.5]], dtype=np.float32)
    exact = np.array([[1.0, 2.0, 3.0], [1.0, 1.5, 2.0], [1.0, 2.0, 2.0]])
    y_valid = np.array([1, 2, 2])
    scores = ann_eval.scores_by_k(distances, indices, exact, y_train, y_valid, 3, [1, 3], 2, "uniform")
    by_k = scores["by_k"]
    # k=1: labels 1, 2, 0 -> 2 of 3 right; k=3: [1,1,0] -> 1, [2] -> 2, [0,2,2] -> 2: all right
    assert by_k["1"]["accuracy"] == round(2 / 3, 5) and by_k["3"]["accuracy"] == 1.0
    assert by_k["3"]["recall"] == round(ann.recall_at_k(distances, exact), 5) == round(6 / 9, 5)  # 3 + 1 + 2 hits
    assert scores["recall_at_k"] == {"k": 2, "recall": round(5 / 6, 5)}  # row 1 misses its second
    assert scores["best_k"] == 3 and scores["valid_accuracy_best_k"] == 1.0


def test_scores_by_k_break_ties_to_the_smaller_k():
    y_train, y_valid = np.array([0, 0, 1]), np.array([0])
    indices, distances = np.array([[0, 1, 2]]), np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    scores = ann_eval.scores_by_k(distances, indices, distances, y_train, y_valid, 2, [3, 1], 1, "uniform")
    assert list(scores["by_k"]) == ["3", "1"] and scores["best_k"] == 1  # both right: the smaller k


def test_classification_report_against_scikit_learn():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    report = scores.classification_report(y_true, y_pred, CLASSES)
    assert report["accuracy"] == round(skm.accuracy_score(y_true, y_pred), 5)
    assert report["macro_f1"] == round(skm.f1_score(y_true, y_pred, average="macro"), 5)
    assert report["n"] == 200
    for name, value in zip(CLASSES, skm.recall_score(y_true, y_pred, average=None)):
        assert report["per_class"][name]["recall"] == round(value, 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_report_with_a_class_absent_from_y_true(tmp_path, seed):
    """An absent class has null figures (not 0) and macro F1 is over the classes present, as scikit-learn's."""
    from fmproto.pipeline import io

    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c", "d"]
    y_true = rng.choice([0, 1, 3], size=300)  # no "c"
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 4, 300))  # "c" predicted now and then
    report = scores.classification_report(y_true, y_pred, classes)
    assert report["per_class"]["c"] == {"precision": None, "recall": None, "f1": None}
    present = np.unique(y_true)
    assert report["macro_f1"] == round(skm.f1_score(y_true, y_pred, labels=present, average="macro"), 5)
    for name, value in zip(["a", "b", "d"], skm.f1_score(y_true, y_pred, labels=present, average=None)):
        assert report["per_class"][name]["f1"] == round(value, 5)
    io.write_json(tmp_path / "m.json", report)  # refuses NaN: the nulls are real JSON nulls
    assert io.read_json(tmp_path / "m.json")["per_class"]["c"] == {"precision": None, "recall": None, "f1": None}
    with pytest.raises(ValueError, match="macro F1 of 0 images is undefined"):
        scores.macro_f1(np.zeros((3, 3), int))


def test_confusion_rows_count_every_pair_once():
    y_true, y_pred = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2])
    rows = scores.confusion_rows(scores.confusion_matrix(y_true, y_pred, 3), CLASSES)
    table = list(zip(rows["actual"], rows["predicted"], rows["count"]))
    assert len(table) == 9 and sum(rows["count"]) == 6
    assert table[:3] == [("a", "a", 1), ("a", "b", 1), ("a", "c", 0)]
    assert ("c", "a", 1) in table and ("c", "c", 2) in table
    with pytest.raises(ValueError, match="cm is 3x3 but there are 2 classes"):
        scores.confusion_rows(np.zeros((3, 3)), ["a", "b"])


def test_rows_by_class_pads_short_rows():
    prototypes = np.arange(5 * 2 * 2).reshape(5, 2, 2)
    labels = np.array([1, 0, 1, 1, 0])
    grid = rows_by_class(prototypes, labels, 3).reshape(3, 3, 2, 2)
    np.testing.assert_array_equal(grid[0, :2], prototypes[[1, 4]])
    np.testing.assert_array_equal(grid[1], prototypes[[0, 2, 3]])
    assert not grid[0, 2].any() and not grid[2].any()


def test_block_widths_are_the_transform_widths():
    images = np.random.default_rng(1).integers(0, 256, (4, 12, 10)).astype(np.uint8)
    spec = transform.FeatureSpec("hog+raw", hog_cell=3, hog_orientations=6)
    widths = transform.block_widths(spec, (12, 10))
    assert widths == [hog.hog(images, 3, 6).shape[1], 120]
    assert sum(widths) == transform.transform(images, spec, transform.fit(images, spec)).shape[1]


def test_fit_indices_and_fit_data():
    split = {"train": np.array([0, 2, 5]), "valid": np.array([1, 4])}
    assert fitset.fit_indices(split, "train").tolist() == [0, 2, 5]
    assert fitset.fit_indices(split, "train+valid").tolist() == [0, 1, 2, 4, 5]
    with pytest.raises(ValueError, match="fit_on must be 'train' or 'train\\+valid'"):
        fitset.fit_indices(split, "all")
    images = np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2)
    copies, source = augment.augment(images, shifts=False, flip=True)
    feats = {"train": images.reshape(6, 4), "augmented": copies[6:].reshape(6, 4), "augmented_source": source[6:],
             "spec_kind": np.array("raw"), "spec_numbers": np.array([4, 9, 0, 0]), "augment_flags": np.array([False, True])}
    labels = np.array([0, 1, 0, 1, 2, 2])
    X, y, rows = fitset.fit_data(feats, labels, np.array([0, 5]), "knn")
    assert rows.tolist() == [0, 5, 6, 11] and y.tolist() == [0, 2, 0, 2] and X.dtype == np.float32
    np.testing.assert_array_equal(fitset.fit_images(images, feats, rows)[2], images[0][:, ::-1])
    X, y, rows = fitset.fit_data(feats, labels, np.array([0, 5]), "kmeans")  # no copies for prototypes
    assert rows.tolist() == [0, 5]


def test_top_confusions():
    from fmproto.evaluation.explanations import top_confusions

    cm = np.array([[50, 3, 7], [7, 40, 0], [1, 9, 30]])
    assert top_confusions(cm, 2) == [(2, 1), (0, 2)]  # 9, then the tie of 7s goes to the lower pair
    assert top_confusions(cm, 4) == [(2, 1), (0, 2), (1, 0), (0, 1)]
    assert top_confusions(np.diag([5, 5]), 2) == []  # no confusion at all
