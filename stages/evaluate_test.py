"""evaluate-test: the one place the test set is scored: the chosen method, and every method for a summary.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split), ``--features`` (.npz).
Params: evaluate.method, k, fit_on, metric, weights, and the kmeans, gmlvq and ann params the methods use
(a prototype method is null in the summary, with a warning, when its n_prototypes does not fit the training split).
Outputs: ``--metrics`` (accuracy, macro F1, per class, by method), ``--plots`` and ``--figures`` (the
confusion matrix), ``--prototypes`` (the prototype methods' fitted models, for explain-test),
``--timings`` (seconds per method). DASK_SCHEDULER_ADDRESS set: kNN on that Dask cluster.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from fmproto.evaluation import final, fitset, reports
from fmproto.evaluation.scores import classification_report
from fmproto.pipeline import cluster, guard, inputs, io, model_checks, progress, timings
from fmproto.pipeline.settings import method_settings, prototype_problems


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--features", "--metrics", "--plots", "--figures", "--prototypes"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of seconds per method (not a DVC output: it changes every run)")
    args = parser.parse_args(argv)
    with (guard.stage_errors("evaluate-test", files=[args.metrics, args.prototypes], folders=[args.plots, args.figures]),
          cluster.exact_search() as engine):
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        split, classes, labels = inputs.load_split(args.split, train), train["classes"].tolist(), train["labels"]
        feats = inputs.load_features(args.features, train, split, test)
        inputs.check_classes(args.split, labels[split["train"]], classes, "in the training split")
        p, settings = method_settings(args.params, classes, labels[split["train"]], engine=engine)
        unfit = prototype_problems(args.params, classes, labels[split["train"]])  # methods that can't be fitted
        if "gmlvq" not in unfit:
            model_checks.check_query_shifts(args.params, settings, feats, args.features)
        fit_sets = final.fit_sets(feats, labels, fitset.fit_indices(split, p["fit_on"]))
        X_fit, X_test, y_test = fit_sets[p["method"]][0], feats["test"].astype(np.float32), test["labels"]
        model_checks.check_k(args.params, p["k"], min(len(s[0]) for s in fit_sets.values()), len(y_test))
        shifted_test = fitset.shifted_queries(feats, of="test")
        with progress.Progress("evaluate-test: fit and predict", None, "methods") as bar:
            summary, predictions, seconds, models = final.score_methods(fit_sets, X_test, y_test, classes, settings,
                                                                        skip=list(unfit), on_method=bar.advance_to,
                                                                        shifted_test=shifted_test)
        report = classification_report(y_test, predictions[p["method"]], classes)
        metrics = {"method": p["method"], "k": p["k"], "fit_on": p["fit_on"], "n_fit": len(X_fit),
                   "features": str(feats["spec_kind"]), "n_features": X_fit.shape[1],
                   "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
                   "per_class_accuracy": {c: v["recall"] for c, v in report["per_class"].items()}, "summary": summary}
        reports.write_confusion(y_test, predictions[p["method"]], classes, Path(args.plots) / "confusion_test.csv",
                                Path(args.figures) / "confusion_test.png", f"{p['method']} (k={p['k']}), test")
        io.write_json(args.metrics, metrics)
        io.save_arrays(args.prototypes, **final.prototype_arrays(models))
        timings.write(args.timings, final.timing_record(seconds, len(y_test)))
    for method, why in unfit.items():
        print(f"evaluate-test: warning: {guard.one_line(ValueError(why))}; the summary leaves {method} out (null)",
              file=sys.stderr)
    print(f"test accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} ({p['method']}, k={p['k']}, "
          f"{metrics['features']} features, fit on {p['fit_on']}: {len(X_fit):,} images)")
    print("all methods: " + ", ".join(f"{m} {s['accuracy']:.4f}" if s else f"{m} skipped" for m, s in summary.items()))


if __name__ == "__main__":
    main()
