"""evaluate-test: the one place the test set is used; every method scored, the chosen one explained.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split), ``--features``
(.npz from features: every method works on these; knn and ann also on the augmented copies).
Params: evaluate.* (method, k, fit_on, metric, weights, n_explain, explain_confusions (a list of
[true, predicted] class names, or auto: the chosen method's most frequent confusions on validation), seed) and the
settings of the other methods: kmeans.n_prototypes/seed/max_iter/tol/metric/lvq_*, ann.backend/metric/n_trees/search_k/seed/hnsw_*.
A class with no test images gets null per-class figures and is left out of macro F1. The summary
leaves kmeans out (null, with one warning line) when kmeans.n_prototypes does not fit the training
split and evaluate.method is another; for the chosen method that is an error.
Outputs: ``--metrics`` (accuracy, macro F1, per-class accuracy, and a summary of every method),
``--plots`` (confusion counts for DVC), ``--figures`` (confusion matrix, explanations) and
``--timings`` (seconds per method).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from fmproto.evaluation import scores, fitset, estimators, plots
from fmproto.pipeline import io
from fmproto.pipeline import model_checks, guard, inputs, outputs, timings
from fmproto.pipeline.settings import kmeans_problem, method_settings
from fmproto.evaluation.scores import classification_report
from fmproto.evaluation.explanations import MAX_SHOWN, explanation_grid, pick_explanations, top_confusions
from fmproto.search.knn import kneighbors

AUTO_CONFUSIONS = 2  # explain_confusions: auto explains this many of the most frequent confusions


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--features", "--metrics", "--plots", "--figures"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of seconds per method (not a DVC output: it changes every run)")
    args = parser.parse_args(argv)
    with guard.stage_errors("evaluate-test", files=[args.metrics], folders=[args.plots, args.figures]):
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        split = inputs.load_split(args.split, train)
        feats = inputs.load_features(args.features, train, split, test)
        classes = train["classes"].tolist()
        inputs.check_classes(args.split, train["labels"][split["train"]], classes, "in the training split")
        p, settings = method_settings(args.params, classes, train["labels"][split["train"]])
        # The summary scores every method; kmeans is left out (null) when its counts do not fit the data.
        skipped = {"kmeans": kmeans_problem(args.params, classes, train["labels"][split["train"]])}
        confusions = model_checks.check_confusions(args.params, p["explain_confusions"], classes)
        fit_idx = fitset.fit_indices(split, p["fit_on"])
        X_test, y_test = feats["test"].astype(np.float32), test["labels"]

        # knn and ann share the augmented fit set, centroids and kmeans the plain one: build each once.
        plain, augmented = (fitset.fit_data(feats, train["labels"], fit_idx, m) for m in ("centroids", "knn"))
        fit_set_of = {m: augmented if m in fitset.AUGMENTED_METHODS else plain for m in estimators.METHODS}
        model_checks.check_k(args.params, p["k"], min(len(plain[0]), len(augmented[0])), len(X_test))
        summary, predictions, watch = {}, {}, timings.Stopwatch()
        for method in estimators.METHODS:
            if skipped.get(method):
                summary[method] = None
                continue
            X_fit, y_fit, _ = fit_set_of[method]
            with watch(method):
                model = estimators.make(method, settings).fit(X_fit, y_fit, len(classes))
                predictions[method] = model.predict(X_test)
            report = classification_report(y_test, predictions[method], classes)
            summary[method] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
        chosen = predictions[p["method"]]
        report = classification_report(y_test, chosen, classes)
        X_fit, y_fit, rows = fit_set_of[p["method"]]
        metrics = {
            "method": p["method"], "k": p["k"], "fit_on": p["fit_on"], "n_fit": len(X_fit),
            "features": str(feats["spec_kind"]), "n_features": X_fit.shape[1],
            "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "per_class_accuracy": {name: v["recall"] for name, v in report["per_class"].items()},
            "summary": summary,
        }
        figures = Path(args.figures)
        outputs.write_confusion(y_test, chosen, classes, Path(args.plots) / "confusion_test.csv",
                                figures / "confusion_test.png", f"{p['method']} (k={p['k']}), test")

        # Explanations: each chosen test image beside its k nearest images of the fit set (in feature
        # space; an augmented copy is drawn as the shifted or flipped image it is).
        if confusions == "auto":  # the chosen model's own worst confusions, on validation (never the test set)
            X_train_fit, y_train_fit, _ = fitset.fit_data(feats, train["labels"], split["train"], p["method"])
            model = estimators.make(p["method"], settings).fit(X_train_fit, y_train_fit, len(classes))
            valid = split["valid"]
            y_valid_pred = model.predict(feats["train"][valid].astype(np.float32))
            cm = scores.confusion_matrix(train["labels"][valid], y_valid_pred, len(classes))
            confusions = top_confusions(cm, AUTO_CONFUSIONS)
        picked = pick_explanations(y_test, chosen, p["n_explain"], confusions, np.random.default_rng(p["seed"]))
        named = ", ".join(f"{classes[t]} as {classes[f]}" for t, f in confusions)
        shown = min(p["k"], MAX_SHOWN)
        distances, neighbours = kneighbors(X_test[picked], X_fit, shown, metric=p["metric"])
        grid, titles, marks = explanation_grid(test["images"][picked], picked, y_test[picked], chosen[picked],
                                               fitset.fit_images(train["images"], feats, rows[neighbours]),
                                               rows[neighbours] % len(train["labels"]),
                                               y_fit[neighbours], distances, classes)
        plots.save(plots.image_grid(grid, titles, n_cols=shown + 1, highlight=marks,
                                    suptitle=f"test images ({p['method']} prediction) beside their {shown} nearest "
                                             f"training images; confusions explained first: {named or 'none'}"),
                   figures / "explanations.png")
        io.write_json(args.metrics, metrics)
        timings.write(args.timings, {"seconds_by_method": {m: round(s, 3) for m, s in watch.seconds.items()}})
    for method, why in skipped.items():
        if why:
            print(f"evaluate-test: warning: {guard.one_line(ValueError(why))}; the summary leaves {method} out (null)",
                  file=sys.stderr)
    print(f"test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} "
          f"({p['method']}, k={p['k']}, {metrics['features']} features, fit on {p['fit_on']}: {len(X_fit):,} images)")
    print("all methods: " + ", ".join(f"{m} {s['accuracy']:.4f}" if s else f"{m} skipped" for m, s in summary.items()))


if __name__ == "__main__":
    main()
