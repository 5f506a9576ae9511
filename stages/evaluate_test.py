"""evaluate-test: the one place the test set is used; every method scored, the chosen one explained.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split), ``--features``
(.npz from features: every method works on these; knn and ann also on the augmented copies).
Params: evaluate.* (method, k, fit_on, metric, weights, n_explain, explain_confusions, seed) and the
settings of the other methods: kmeans.n_prototypes/seed/max_iter/tol/metric, ann.metric/n_trees/search_k/seed.
Outputs: ``--metrics`` (accuracy, macro F1, per-class accuracy, seconds, and a summary of every method),
``--plots`` (confusion rows for DVC) and ``--figures`` (confusion matrix, explanations).
"""

import argparse
import time
from pathlib import Path

import numpy as np

from fmproto import features, io, methods, plots
from fmproto.distances import as_rows
from fmproto.explain import explanation_grid, pick_explanations
from fmproto.kmeans import n_prototypes_per_class
from fmproto.knn import kneighbors
from stages import common as c
from stages import reporting
from stages.ann_index import SPEC as ANN_SPEC
from stages.kmeans import SPEC as KMEANS_SPEC

SPEC = {
    "method": c.one_of(*methods.METHODS),
    "k": c.integer(low=1),
    "fit_on": c.one_of("train", "train+valid"),
    "metric": c.one_of("euclidean", "cosine", "manhattan"),
    "weights": c.one_of("uniform", "distance"),
    "n_explain": c.integer(low=0, high=50),
    "explain_confusions": c.list_of(c.list_of(c.text(), min_len=2), min_len=0),
    "seed": c.integer(low=0),
}


# Neighbour methods take the augmented copies as extra prototypes; a class mean or k-means would
# barely move for them and k-means would cost five times as much.
AUGMENTED_METHODS = ("knn", "ann")


def fit_indices(split: dict, fit_on: str) -> np.ndarray:
    """Indices of the ingested training images the final model is fitted on."""
    return split["train"] if fit_on == "train" else np.sort(np.concatenate([split["train"], split["valid"]]))


def fit_data(feats: dict, labels: np.ndarray, fit_idx: np.ndarray, method: str):
    """Features ``(n_rows, n_features)`` float32, labels and augmented-image rows of ``method``'s fit set."""
    X_fit, rows = features.fit_set(feats["train"], feats["augmented"], feats["augmented_source"], fit_idx,
                                   with_augmented=method in AUGMENTED_METHODS)
    return as_rows(X_fit), labels[rows % len(labels)], rows


def fit_images(images: np.ndarray, feats: dict, rows: np.ndarray) -> np.ndarray:
    """The pictures of fit-set ``rows`` (from ``fit_data``): training images or their augmented copies."""
    _, _, (shifts, flip) = features.from_arrays(feats)
    return features.images_of_rows(images, rows, shifts, flip)


def settings_from_params(params_path: str, classes: list[str]) -> tuple[dict, methods.Settings]:
    """The evaluate section and the Settings every method needs, all checked."""
    p = c.read_params("evaluate", SPEC, params_path)
    km = c.read_params("kmeans", KMEANS_SPEC, params_path)
    an = c.read_params("ann", ANN_SPEC, params_path)
    settings = methods.Settings(
        k=p["k"], metric=p["metric"], weights=p["weights"], prototype_metric=km["metric"],
        n_prototypes=n_prototypes_per_class(km["n_prototypes"], classes), kmeans_seed=km["seed"],
        kmeans_max_iter=km["max_iter"], kmeans_tol=km["tol"], lvq_epochs=km["lvq_epochs"],
        lvq_learning_rate=km["lvq_learning_rate"], ann_metric=an["metric"],
        ann_n_trees=an["n_trees"], ann_search_k=an["search_k"], ann_seed=an["seed"])
    return p, settings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--features", "--metrics", "--plots", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("evaluate-test", [args.metrics, args.plots, args.figures]):
        train, test, split = io.load_arrays(args.train), io.load_arrays(args.test), io.load_arrays(args.split)
        feats = io.load_arrays(args.features)
        classes = train["classes"].tolist()
        p, settings = settings_from_params(args.params, classes)
        for true_name, predicted_name, *rest in p["explain_confusions"]:
            if rest or true_name not in classes or predicted_name not in classes:
                raise c.ParamError(f"{args.params}: evaluate.explain_confusions needs [true, predicted] class names "
                                   f"from data.classes; got {[true_name, predicted_name, *rest]}")
        fit_idx = fit_indices(split, p["fit_on"])
        X_test, y_test = as_rows(feats["test"]), test["labels"]

        # knn and ann share the augmented fit set, centroids and kmeans the plain one: build each once.
        plain, augmented = (fit_data(feats, train["labels"], fit_idx, m) for m in ("centroids", "knn"))
        fit_set_of = {m: augmented if m in AUGMENTED_METHODS else plain for m in methods.METHODS}
        summary, predictions = {}, {}
        for method in methods.METHODS:
            X_fit, y_fit, _ = fit_set_of[method]
            start = time.perf_counter()
            model = methods.fit(method, X_fit, y_fit, len(classes), settings)
            predictions[method] = methods.predict(model, X_test)
            scores = reporting.classification_metrics(y_test, predictions[method], classes)
            summary[method] = {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
                               "seconds": round(time.perf_counter() - start, 3)}
        chosen = predictions[p["method"]]
        scores = reporting.classification_metrics(y_test, chosen, classes)
        X_fit, y_fit, rows = fit_set_of[p["method"]]
        metrics = {
            "method": p["method"], "k": p["k"], "fit_on": p["fit_on"], "n_fit": len(X_fit),
            "features": str(feats["spec_kind"]), "n_features": X_fit.shape[1],
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "seconds": summary[p["method"]]["seconds"],
            "per_class_accuracy": {name: v["recall"] for name, v in scores["per_class"].items()},
            "summary": summary,
        }
        figures = Path(args.figures)
        reporting.write_confusion(y_test, chosen, classes, Path(args.plots) / "confusion_test.csv",
                                  figures / "confusion_test.png", f"{p['method']} (k={p['k']}), test")

        # Explanations: each chosen test image beside its k nearest images of the fit set (in feature
        # space; an augmented copy is drawn as the shifted or flipped image it is).
        rng = np.random.default_rng(p["seed"])
        confusions = [(classes.index(t), classes.index(f)) for t, f in p["explain_confusions"]]
        picked = pick_explanations(y_test, chosen, p["n_explain"], confusions, rng)
        distances, neighbours = kneighbors(X_test[picked], X_fit, p["k"], metric=p["metric"])
        grid, titles, marks = explanation_grid(test["images"][picked], picked, y_test[picked], chosen[picked],
                                               fit_images(train["images"], feats, rows[neighbours]),
                                               rows[neighbours] % len(train["labels"]),
                                               y_fit[neighbours], distances, classes)
        plots.save(plots.image_grid(grid, titles, n_cols=p["k"] + 1, highlight=marks,
                                    suptitle=f"test images ({p['method']} prediction) beside their "
                                             f"{p['k']} nearest training images"), figures / "explanations.png")
        io.write_json(args.metrics, metrics)
    print(f"test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} "
          f"({p['method']}, k={p['k']}, {metrics['features']} features, fit on {p['fit_on']}: {len(X_fit):,} images)")
    print("all methods: " + ", ".join(f"{m} {s['accuracy']:.4f}" for m, s in summary.items()))


if __name__ == "__main__":
    main()
