"""fmproto.evaluation.estimators: each method by name, fitted and scored against scikit-learn."""

import numpy as np
import pytest
import yaml
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neighbors import NearestCentroid as SkNearestCentroid

from conftest import REPO
from fmproto.evaluation import estimators
from fmproto.pipeline import params as P
from fmproto.pipeline.settings import method_settings

RNG = np.random.default_rng(5)
CENTRES = RNG.normal(scale=4.0, size=(3, 8))
y_fit = np.repeat(np.arange(3), 40)
X_fit = (CENTRES[y_fit] + RNG.normal(size=(120, 8))).astype(np.float32)
y_query = np.repeat(np.arange(3), 10)
X_query = (CENTRES[y_query] + RNG.normal(size=(30, 8))).astype(np.float32)


def test_the_registry_names_every_method():
    assert estimators.METHODS == ("centroids", "kmeans", "gmlvq", "knn", "ann")
    with pytest.raises(ValueError, match="method must be one of 'centroids', 'kmeans', 'gmlvq', 'knn', 'ann'; got 'svm'"):
        estimators.make("svm", {})


def test_centroids_match_scikit_learn():
    ours = estimators.make("centroids", {"centroids": {"metric": "euclidean"}}).fit(X_fit, y_fit, 3)
    theirs = SkNearestCentroid().fit(X_fit.astype(np.float64), y_fit)
    assert np.array_equal(ours.predict(X_query), theirs.predict(X_query.astype(np.float64)))


def test_kmeans_with_one_prototype_a_class_is_the_centroid_classifier():
    kmeans = estimators.make("kmeans", {"kmeans": {"n_prototypes": np.ones(3, np.int64), "metric": "euclidean"}})
    centroids = estimators.make("centroids", {"centroids": {"metric": "euclidean"}})
    assert np.allclose(kmeans.fit(X_fit, y_fit, 3).prototypes_, centroids.fit(X_fit, y_fit, 3).prototypes_, atol=1e-5)
    assert np.array_equal(kmeans.predict(X_query), centroids.predict(X_query))


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_exact_knn_matches_scikit_learn(weights):
    ours = estimators.make("knn", {"knn": {"k": 7, "weights": weights}}).fit(X_fit, y_fit, 3)
    theirs = KNeighborsClassifier(7, weights=weights, algorithm="brute").fit(X_fit.astype(np.float64), y_fit)
    assert np.array_equal(ours.predict(X_query), theirs.predict(X_query.astype(np.float64)))
    distances, indices = ours.kneighbors(X_query, 3)
    sk_distances, sk_indices = theirs.kneighbors(X_query.astype(np.float64), 3)
    assert np.array_equal(indices, sk_indices)
    assert np.allclose(distances, sk_distances, rtol=1e-6)


@pytest.mark.parametrize("backend", ["annoy", "hnswlib"])
def test_ann_with_a_wide_search_finds_the_exact_neighbours(backend):
    """On 120 rows, every tree or graph node visited: the approximate answer is the exact one."""
    settings = {"ann": {"k": 5, "backend": backend, "search_k": 100_000, "hnsw_ef": 200, "n_trees": 20}}
    ours = estimators.make("ann", settings).fit(X_fit, y_fit, 3)
    exact = estimators.make("knn", {"knn": {"k": 5}}).fit(X_fit, y_fit, 3)
    assert np.array_equal(ours.kneighbors(X_query)[1], exact.kneighbors(X_query)[1])
    assert np.array_equal(ours.predict(X_query), exact.predict(X_query))


def write_params(tmp_path, **changes):
    params = P.load(REPO / "params.yaml")
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        params[section][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_the_final_model_honours_ann_backend(tmp_path):
    path = write_params(tmp_path, **{"evaluate.method": "ann", "ann.backend": "hnswlib", "ann.hnsw_ef": 77,
                                     "data.classes": ["a", "b", "c"], "kmeans.n_prototypes": 2})
    p, settings = method_settings(path, ["a", "b", "c"])
    model = estimators.make(p["method"], settings)
    assert (model.backend, model.hnsw_ef, model.k) == ("hnswlib", 77, p["k"])
    assert model.fit(X_fit, y_fit, 3).predict(X_query).shape == (30,)


def test_hnswlib_without_its_metric_is_one_line(tmp_path):
    path = write_params(tmp_path, **{"evaluate.method": "ann", "ann.backend": "hnswlib", "ann.metric": "manhattan",
                                     "data.classes": ["a", "b", "c"], "kmeans.n_prototypes": 2})
    with pytest.raises(P.ParamError, match="ann.backend asks for hnswlib, but metric 'manhattan' has no hnswlib space"):
        method_settings(path, ["a", "b", "c"])
