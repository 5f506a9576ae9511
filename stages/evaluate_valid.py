"""evaluate-valid: the method of ``evaluate.*`` on the features of ``features.*``, scored on the validation split.

The score a sweep compares: the final evaluation's choices, fitted on the training split only and
measured on the validation split, so choosing among them never looks at the test set.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split), ``--features`` (.npz from features).
Params: evaluate.method, k, metric, weights, and the kmeans and ann settings the methods use
(kmeans.n_prototypes is checked against the training split only when evaluate.method is kmeans).
Outputs: ``--metrics`` (accuracy, macro F1, the features used) and ``--timings`` (fit and predict seconds).
With DASK_SCHEDULER_ADDRESS set, kNN searches on that Dask cluster: the same bytes.
"""

import argparse

from fmproto.evaluation import fitset, estimators
from fmproto.pipeline import io
from fmproto.pipeline import cluster, model_checks, guard, inputs, timings
from fmproto.pipeline.settings import method_settings
from fmproto.evaluation.scores import classification_report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--features", "--metrics"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of fit and predict seconds (not a DVC output: it changes every run)")
    args = parser.parse_args(argv)
    with guard.stage_errors("evaluate-valid", files=[args.metrics]), cluster.exact_search() as engine:
        train = inputs.load_dataset(args.train)
        split, classes = inputs.load_split(args.split, train), train["classes"].tolist()
        feats = inputs.load_features(args.features, train, split)
        inputs.check_classes(args.split, train["labels"][split["train"]], classes, "in the training split")
        p, settings = method_settings(args.params, classes, train["labels"][split["train"]], engine=engine)
        if p["method"] == "gmlvq":
            model_checks.check_query_shifts(args.params, settings, feats, args.features)
        X_fit, y_fit, _ = fitset.fit_data(feats, train["labels"], split["train"], p["method"])
        X_valid, y_valid = feats["train"][split["valid"]].astype("float32"), train["labels"][split["valid"]]
        model_checks.check_k(args.params, p["k"], len(X_fit), len(X_valid))
        watch = timings.Stopwatch()
        with watch("fit"):
            model = estimators.make(p["method"], settings).fit(X_fit, y_fit, len(classes))
        with watch("predict"):
            predicted = model.predict(X_valid, fitset.shifted_queries(feats, split["valid"]))
        scores = classification_report(y_valid, predicted, classes)
        metrics = {
            "method": p["method"], "k": p["k"], "metric": p["metric"], "weights": p["weights"],
            "features": str(feats["spec_kind"]), "n_features": X_fit.shape[1], "n_fit": len(X_fit),
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
        }
        io.write_json(args.metrics, metrics)
        queries_per_second = len(X_valid) / max(watch.seconds["predict"], 1e-9)
        timings.write(args.timings, {"fit_seconds": round(watch.seconds["fit"], 3),
                                     "predict_seconds": round(watch.seconds["predict"], 3),
                                     "queries_per_second": round(queries_per_second, 1)})
    print(f"valid accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} ({p['method']}, k={p['k']}, "
          f"{p['metric']}, {metrics['features']} features x {metrics['n_features']:,}, {len(X_fit):,} fit rows); "
          f"{queries_per_second:,.0f} queries/s")


if __name__ == "__main__":
    main()
