"""fmproto.evaluation.final: every method scored as its estimator alone scores it; and the explanations figure
(fmproto.evaluation.explanations)."""

import numpy as np

from fmproto.evaluation import estimators, explanations, final, scores
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
        assert deciding == [(c, int(i), float(d[i])) for c, i in by_class]
        assert deciding[0][0] == model.predict(query[None])[0]  # the model's own decision


def test_timing_record_adds_fit_and_predict_and_counts_queries_a_second():
    record = final.timing_record({"knn": {"fit": 1.5, "predict": 0.25}, "centroids": {"fit": 0.0, "predict": 0.0}}, 1000)
    assert record["seconds_by_method"] == {"knn": 1.75, "centroids": 0.0}
    assert record["fit_seconds_by_method"] == {"knn": 1.5, "centroids": 0.0}
    assert record["queries_per_second_by_method"]["knn"] == 4000.0
    assert record["queries_per_second_by_method"]["centroids"] > 1e9  # too fast for the clock: large, never inf
