"""evaluate-valid: the method of ``evaluate.*`` on the features of ``features.*``, scored on the validation split.

The score a sweep compares: the final evaluation's choices, fitted on the training split only and
measured on the validation split, so choosing among them never looks at the test set.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split), ``--features`` (.npz from features).
Params: evaluate.method, k, metric, weights, and the kmeans and ann settings the methods use.
Outputs: ``--metrics`` (accuracy, macro F1, fit and query seconds, queries per second, the features used).
"""

import argparse
import time

from fmproto import io, methods
from fmproto.distances import as_rows
from stages import common as c
from stages import reporting
from stages.evaluate_test import fit_data, settings_from_params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--features", "--metrics"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("evaluate-valid", [args.metrics]):
        train, split, feats = io.load_arrays(args.train), io.load_arrays(args.split), io.load_arrays(args.features)
        classes = train["classes"].tolist()
        p, settings = settings_from_params(args.params, classes)
        X_fit, y_fit, _ = fit_data(feats, train["labels"], split["train"], p["method"])
        X_valid, y_valid = as_rows(feats["train"][split["valid"]]), train["labels"][split["valid"]]
        start = time.perf_counter()
        model = methods.fit(p["method"], X_fit, y_fit, len(classes), settings)
        fitted = time.perf_counter()
        predicted = methods.predict(model, X_valid)
        done = time.perf_counter()
        scores = reporting.classification_metrics(y_valid, predicted, classes)
        metrics = {
            "method": p["method"], "k": p["k"], "metric": p["metric"], "weights": p["weights"],
            "features": str(feats["spec_kind"]), "n_features": X_fit.shape[1], "n_fit": len(X_fit),
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "fit_seconds": round(fitted - start, 3), "predict_seconds": round(done - fitted, 3),
            "queries_per_second": round(len(X_valid) / max(done - fitted, 1e-9), 1),
        }
        io.write_json(args.metrics, metrics)
    print(f"valid accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['macro_f1']:.4f} ({p['method']}, k={p['k']}, "
          f"{p['metric']}, {metrics['features']} features x {metrics['n_features']:,}, {len(X_fit):,} fit rows); "
          f"{metrics['queries_per_second']:,.0f} queries/s")


if __name__ == "__main__":
    main()
