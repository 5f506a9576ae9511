"""fmproto.evaluation.final: every method scored as its estimator alone scores it; and the explanations figure
(fmproto.evaluation.explanations)."""

import numpy as np
import pytest

from fmproto.evaluation import estimators, explanations, final, fitset, scores
from fmproto.evaluation.explanations import top_confusions

CLASSES = ["a", "b", "c"]
_rng = np.random.default_rng(0)
Y = np.arange(90) % 3
X = (_rng.normal(size=(90, 4)) + 3 * Y[:, None]).astype(np.float32)
SETTINGS = {"knn": {"k": 3}, "ann": {"k": 3, "n_trees": 2, "search_k": 100}}


def test_score_methods_matches_each_estimator_and_skips():
    fit_sets = {m: (X[:60], Y[:60], np.arange(60)) for m in estimators.METHODS}
    summary, predictions, seconds, _ = final.score_methods(fit_sets, X[60:], Y[60:], CLASSES, SETTINGS, skip=["kmeans"],
                                                        clock=iter(range(100)).__next__)
    assert summary["kmeans"] is None and "kmeans" not in predictions and list(summary) == list(estimators.METHODS)
    for method in ("centroids", "knn", "ann"):
        expected = estimators.make(method, SETTINGS).fit(X[:60], Y[:60], 3).predict(X[60:])
        np.testing.assert_array_equal(predictions[method], expected)
        report = scores.classification_report(Y[60:], expected, CLASSES)
        assert summary[method] == {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        assert seconds[method] == {"fit": 1, "predict": 1}  # one tick of the fake clock for each


def test_explanations_figure_draws_the_picked_images(tmp_path):
    images = np.zeros((90, 2, 2), np.uint8)
    feats = {"train": X[:60], "test": X[60:], "augmented": np.zeros((0, 4), np.float32),
             "augmented_source": np.zeros(0, np.int64), "spec_kind": np.array("raw"),
             "spec_numbers": np.array([4, 9, 0, 0]), "augment_flags": np.array([False, False])}
    train = {"images": images[:60], "labels": Y[:60], "classes": np.array(CLASSES)}
    test = {"images": images[60:], "labels": Y[60:]}
    split = {"train": np.arange(40), "valid": np.arange(40, 60)}
    y_pred = np.roll(Y[60:], 1)  # every test image wrong
    figure = explanations.explanations_figure("knn", SETTINGS, train, test, feats, split, y_pred, (X[:60], Y[:60], np.arange(60)),
                                       k=2, metric="euclidean", n_random=3, confusions="auto", seed=0)
    valid_pred = estimators.make("knn", SETTINGS).fit(X[:40], Y[:40], 3).predict(X[40:60])
    auto = top_confusions(scores.confusion_matrix(Y[40:60], valid_pred, 3), 2)
    occurring = [(t, f) for t, f in auto if np.any((Y[60:] == t) & (y_pred == f))]
    rows = [ax.get_title() for ax in figure.axes[::3]]
    assert len(figure.axes) == 3 * (len(occurring) + 3)  # the auto confusions first, then three random; 2 neighbours each
    assert all(title.startswith("#") for title in rows) and figure.axes[1].get_title().startswith("train #")


def test_prototype_figures_show_each_prototypes_nearest_training_rows():
    images = np.arange(60 * 4, dtype=np.uint8).reshape(60, 2, 2)
    feats = {"train": X[:60], "augmented": np.zeros((0, 4), np.float32), "augmented_source": np.zeros(0, np.int64),
             "spec_kind": np.array("raw"), "spec_numbers": np.array([4, 9, 0, 0]), "augment_flags": np.array([False, False])}
    train = {"images": images, "labels": Y[:60], "classes": np.array(CLASSES)}
    rows = np.arange(10, 50)  # a fit set that is not the first rows
    model = estimators.make("kmeans", SETTINGS).fit(X[rows], Y[rows], 3)
    figures = explanations.prototype_figures(model.prototypes_, model.prototype_labels_, train, feats,
                                             (X[rows], Y[rows], rows), n_shown=3)
    assert sorted(figures) == [f"{c}-{name.replace('/', '-')}" for c, name in enumerate(CLASSES)
                               if c in model.prototype_labels_]
    for c, name in enumerate(CLASSES):
        figure, mine = figures[f"{c}-{name.replace('/', '-')}"], model.prototypes_[model.prototype_labels_ == c]
        (ax,) = figure.axes  # one Axes: images by extent, titles as text
        shown = [int(text.get_text().split("#")[1].split("\n")[0]) for text in ax.texts
                 if text.get_text().startswith("train #")]
        d2 = ((mine[:, None].astype(np.float64) - X[rows][None].astype(np.float64)) ** 2).sum(-1)
        expected = rows[np.argsort(d2, axis=1, kind="stable")[:, :3]]  # an independent brute-force search
        assert shown == expected.ravel().tolist()
        assert len(ax.images) == expected.size
        np.testing.assert_array_equal(ax.images[0].get_array(), images[expected[0, 0]])


def test_deciding_prototypes_are_the_nearest_of_the_two_nearest_classes():
    model = estimators.make("kmeans", SETTINGS).fit(X[:60], Y[:60], 3)
    for query in X[60:]:
        deciding = explanations.deciding_prototypes(model.prototypes_, model.prototype_labels_, query)
        d = np.sqrt(((model.prototypes_.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1))
        nearest = {c: min(np.flatnonzero(model.prototype_labels_ == c), key=lambda i: (d[i], i)) for c in range(3)}
        by_class = sorted(nearest.items(), key=lambda item: (d[item[1]], item[1]))[:2]
        assert deciding == [(c, int(i), float(d[i]), float(d[i])) for c, i in by_class]
        assert deciding[0][0] == model.predict(query[None])[0]  # the model's own decision


def shifted_views(rng, queries):
    """Four views near each query, shaped as ``fitset.shifted_queries`` gives them."""
    return (queries[None] + rng.normal(scale=4.0, size=(4, *queries.shape))).astype(np.float32)


def test_gmlvq_with_query_shifts_takes_the_class_nearest_on_average_over_the_views():
    settings = {"gmlvq": {"n_prototypes": np.full(3, 2), "rank": 3, "epochs": 2, "query_shifts": True}}
    model = estimators.make("gmlvq", settings).fit(X[:60], Y[:60], 3)
    shifted = shifted_views(np.random.default_rng(1), X[60:])
    P, Q = model.transform(model.prototypes_).astype(np.float64), np.stack([model.transform(view) for view in (X[60:], *shifted)])
    d = np.sqrt(((Q.astype(np.float64)[:, :, None] - P[None, None]) ** 2).sum(-1))  # (views, queries, prototypes)
    by_class = np.stack([d[:, :, model.prototype_labels_ == c].min(-1) for c in range(3)], axis=-1)
    expected = by_class.sum(axis=0).argmin(axis=1)
    alone = by_class[0].argmin(axis=1)
    np.testing.assert_array_equal(model.predict(X[60:], shifted), expected)
    assert (expected != alone).any()  # the views decide some images
    plain = estimators.make("gmlvq", {"gmlvq": {**settings["gmlvq"], "query_shifts": False}}).fit(X[:60], Y[:60], 3)
    np.testing.assert_array_equal(plain.predict(X[60:], shifted), alone)  # without query_shifts the views are ignored
    for query, views, label in zip(X[60:], shifted.transpose(1, 0, 2), expected):
        deciding = explanations.deciding_prototypes(P, model.prototype_labels_, model.transform(query[None])[0],
                                                    shifted=model.transform(views))
        assert deciding[0][0] == label
        assert deciding[0][3] <= deciding[1][3]
    with pytest.raises(ValueError, match="set features.augment_shifts: true"):
        model.predict(X[60:])


def test_shifted_queries_are_the_four_shifted_copies_of_each_image():
    n_train, n_test = 6, 3
    feats = {"train": np.arange(n_train)[:, None] * np.ones(2, np.float32), "test": -np.ones((n_test, 2), np.float32),
             "augmented": (100 * np.arange(1, 6)[:, None] + np.arange(n_train)).reshape(-1, 1) * np.ones(2, np.float32),
             "test_shifted": (100 * np.arange(1, 5)[:, None] + np.arange(n_test)).reshape(-1, 1) * np.ones(2, np.float32),
             "augment_flags": np.array([True, True])}  # shifts, then a flip: five copies of each training image
    views = fitset.shifted_queries(feats, np.array([4, 1]))
    np.testing.assert_array_equal(views[..., 0], [[104, 101], [204, 201], [304, 301], [404, 401]])
    np.testing.assert_array_equal(fitset.shifted_queries(feats, [2], of="test")[..., 0], [[102], [202], [302], [402]])
    np.testing.assert_array_equal(fitset.shifted_queries(feats, of="test")[..., 0],  # every test image
                                  100 * np.arange(1, 5)[:, None] + np.arange(n_test))
    feats["augment_flags"] = np.array([False, True])
    assert fitset.shifted_queries(feats, [0]) is None


def test_timing_record_adds_fit_and_predict_and_counts_queries_a_second():
    record = final.timing_record({"knn": {"fit": 1.5, "predict": 0.25}, "centroids": {"fit": 0.0, "predict": 0.0}}, 1000)
    assert record["seconds_by_method"] == {"knn": 1.75, "centroids": 0.0}
    assert record["fit_seconds_by_method"] == {"knn": 1.5, "centroids": 0.0}
    assert record["queries_per_second_by_method"]["knn"] == 4000.0
    assert record["queries_per_second_by_method"]["centroids"] > 1e9  # too fast for the clock: large, never inf
