"""Same numbers on any machine: the prototype methods give bit-identical results whatever the BLAS does.

A float32 matrix product is rounded differently by different BLAS builds and thread counts. Two
checks: in this process, the screening products are replaced by copies rounded differently (far
more than any BLAS would); in subprocesses, the real computation runs with 1 and with 2 BLAS threads.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fmproto.prototypes import kmeans as kmeans_module
from fmproto.prototypes import lvq as lvq_module
from fmproto.prototypes import centroids as prototypes_module
from fmproto.search.distances import METRICS, as_rows, squared_norms
from fmproto.prototypes.kmeans import kmeans_per_class
from fmproto.prototypes.lvq import glvq
from fmproto.prototypes.centroids import nearest_prototype

REPO = Path(__file__).resolve().parents[2]


def _other_blas(pairwise_distances, seed, ulps=512):
    """``pairwise_distances`` as another BLAS might round it, and a counter of the row minima that moved.

    Each entry moves by up to ``ulps`` float32 units of its scale: ``|x|^2 + |y|^2`` (sqeuclidean),
    1 (cosine) or the entry itself (manhattan). That is a third of the rounding bound the exact
    search allows for (about 1,600 units at 784 features), and a hundred times what BLAS builds and
    thread counts really differ by.
    """
    rng = np.random.default_rng(seed)
    moved = [0]

    def screen(X, Y, metric="euclidean", **kwargs):
        D = pairwise_distances(X, Y, metric, **kwargs)
        if metric == "sqeuclidean":
            scale = squared_norms(as_rows(X))[:, None] + squared_norms(as_rows(Y))[None, :]
        else:
            scale = 1.0 if metric == "cosine" else D
        other = (D + rng.integers(-ulps, ulps + 1, size=D.shape) * 2.0**-24 * scale).astype(np.float32)
        if D.shape[1]:
            moved[0] += int(np.count_nonzero(other.argmin(axis=1) != D.argmin(axis=1)))
        return other

    return screen, moved


def _images(n_per_class=150, n_classes=3, seed=0):
    """Integer 'images' (784 pixels): noisy copies of one template per class, so clusters inside a
    class have no clear borders and many rows sit near one."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(40, 216, size=(n_classes, 784))
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = np.clip(templates[y] + rng.normal(0, 40, size=(len(y), 784)), 0, 255).round()
    return X.astype(np.float32), y


def test_kmeans_per_class_ignores_screening_rounding(monkeypatch):
    X, y = _images()
    counts = np.array([6, 4, 5])
    reference = kmeans_per_class(X, y, counts, seed=0, tol=0)
    screen, moved = _other_blas(kmeans_module.pairwise_distances, seed=0)
    monkeypatch.setattr(kmeans_module, "pairwise_distances", screen)
    other = kmeans_per_class(X, y, counts, seed=0, tol=0)
    assert moved[0] > 0  # the float32 argmin did change
    np.testing.assert_array_equal(other[0], reference[0])
    for a, b in zip(other[2], reference[2]):
        np.testing.assert_array_equal(a.assignments, b.assignments)
        np.testing.assert_array_equal(a.history, b.history)
        assert (a.inertia, a.n_iter) == (b.inertia, b.n_iter)


# manhattan has no matrix product: its float32 screening is the same on every BLAS.
@pytest.mark.parametrize("metric", [m for m in METRICS if m != "manhattan"])
def test_nearest_prototype_ignores_screening_rounding(metric, monkeypatch):
    X, y = _images(seed=1)
    # Prototypes near the middle between classes, so that rows sit near class borders.
    rng = np.random.default_rng(1)
    prototypes = (X[rng.choice(len(X), 12, replace=False)] + X[rng.choice(len(X), 12, replace=False)]) / 2
    labels = np.arange(12) % 3
    reference = nearest_prototype(X, prototypes, labels, 3, metric=metric, chunk=100)
    screen, moved = _other_blas(prototypes_module.pairwise_distances, seed=1)
    monkeypatch.setattr(prototypes_module, "pairwise_distances", screen)
    other = nearest_prototype(X, prototypes, labels, 3, metric=metric, chunk=100)
    assert moved[0] > 0
    np.testing.assert_array_equal(other.labels, reference.labels)
    np.testing.assert_array_equal(other.class_distances, reference.class_distances)
    np.testing.assert_array_equal(other.distances, reference.distances)


def test_glvq_ignores_screening_rounding(monkeypatch):
    X, y = _images(seed=2)
    prototypes, labels, _ = kmeans_per_class(X, y, np.full(3, 4), seed=2)
    reference = glvq(prototypes, labels, X, y, epochs=2, batch_size=32, seed=2)
    screen, moved = _other_blas(lvq_module.pairwise_distances, seed=2)
    monkeypatch.setattr(lvq_module, "pairwise_distances", screen)
    other = glvq(prototypes, labels, X, y, epochs=2, batch_size=32, seed=2)
    assert moved[0] > 0
    assert not np.array_equal(reference, prototypes)
    np.testing.assert_array_equal(other, reference)


# What the kmeans stage computes, on the arrays in argv[1]; every figure printed to the last bit.
_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from fmproto.prototypes.kmeans import kmeans_per_class
from fmproto.prototypes.lvq import glvq
from fmproto.prototypes.centroids import class_means, nearest_prototype

def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

data = np.load(sys.argv[1])
X, y, X_valid = data["X_train"], data["y_train"], data["X_valid"]
prototypes, labels, fits = kmeans_per_class(X, y, np.full(10, 5), seed=0, max_iter=100, tol=1e-3)
valid = nearest_prototype(X_valid, prototypes, labels, 10)
refined = glvq(prototypes, labels, X, y, epochs=1, seed=0)
after = nearest_prototype(X_valid, refined, labels, 10)
means = class_means(X, y, 10)
centroid = nearest_prototype(X_valid, means, np.arange(10), 10)
try:
    from threadpoolctl import threadpool_info
    blas_threads = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
except ImportError:
    blas_threads = []
print(json.dumps({
    "blas_threads": blas_threads,
    "inertia": [repr(fit.inertia) for fit in fits],
    "history": [[repr(value) for value in fit.history] for fit in fits],
    "prototypes": digest(prototypes),
    "predictions": digest(valid.labels),
    "class_distances": digest(valid.class_distances),
    "glvq_prototypes": digest(refined),
    "glvq_predictions": digest(after.labels),
    "glvq_class_distances": digest(after.class_distances),
    "class_means": digest(means),
    "centroid_predictions": digest(centroid.labels),
    "centroid_class_distances": digest(centroid.class_distances),
}))
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_one_and_two_blas_threads_give_the_same_figures(fashion_train, tmp_path):
    images, labels = fashion_train
    pick = np.random.default_rng(0).choice(len(images), 4000, replace=False)
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, X_train=as_rows(images[pick[:3000]]), y_train=labels[pick[:3000]],
             X_valid=as_rows(images[pick[3000:]]))
    runs = {}
    for threads in (1, 2):
        env = os.environ | {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        done = subprocess.run([sys.executable, "-c", _SCRIPT, str(arrays)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs[threads] = json.loads(done.stdout)
    one, two = runs[1].pop("blas_threads"), runs[2].pop("blas_threads")
    if one and (os.cpu_count() or 1) >= 2:  # the setting took: the comparison means something
        assert max(one) == 1 and max(two) == 2
    for key in runs[1]:
        assert runs[1][key] == runs[2][key], f"{key} differs between 1 and 2 BLAS threads"


STAGE_SCRIPT = """
import sys
from stages import centroids, features, kmeans
ws, out, params = sys.argv[1:4]
common = ["--params", params, "--train", f"{ws}/train.npz", "--split", f"{ws}/split.npz"]
for name, stage in (("centroids", centroids), ("kmeans", kmeans)):
    stage.main([*common, "--model", f"{out}/{name}.npz", "--metrics", f"{out}/{name}.json",
                "--plots", f"{out}/{name}-plots", "--figures", f"{out}/{name}-figures"])
features.main([*common, "--test", f"{ws}/test.npz", "--out", f"{out}/features.npz", "--curves", f"{out}/curves.csv",
               "--training", f"{out}/training.json"])
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_stages_write_the_same_bytes_with_one_or_two_threads(fashion_train, tmp_path):
    """The centroids, kmeans and features (a trained network joined with HOG) stages themselves, on
    6,000 real images with 1 and with 2 BLAS and OpenMP threads: the same metrics, plot tables,
    models and features, byte for byte."""
    import yaml

    from fmproto.pipeline import io
    from fmproto.pipeline.inputs import fingerprint

    images, labels = fashion_train[0][:6000], fashion_train[1][:6000]
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    io.save_arrays(tmp_path / "train.npz", images=images, labels=labels, classes=np.array(classes))
    io.save_arrays(tmp_path / "test.npz", images=fashion_train[0][6000:7000], labels=fashion_train[1][6000:7000],
                   classes=np.array(classes))
    order = np.random.default_rng(0).permutation(6000)
    io.save_arrays(tmp_path / "split.npz", train=np.sort(order[:4800]), valid=np.sort(order[4800:]),
                   dropped=np.empty(0, np.int64), train_fingerprint=np.array(fingerprint(images, labels)))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["kmeans"].update(n_prototypes=10, lvq_epochs=1)
    params["features"].update(kind="cnn+hog", pca_components=32, cnn_width=4, cnn_embedding=16, cnn_epochs=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    written = {}
    for threads in ("1", "2"):
        out = tmp_path / f"threads{threads}"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        subprocess.run([sys.executable, "-c", STAGE_SCRIPT, tmp_path, out, tmp_path / "params.yaml"], cwd=REPO,
                       env=env, check=True, capture_output=True)
        written[threads] = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
                            if p.is_file() and p.suffix in (".json", ".csv", ".npz")}
    assert "kmeans.json" in written["1"] and "kmeans-plots/convergence.csv" in written["1"] and "features.npz" in written["1"]
    assert written["1"] == written["2"]
