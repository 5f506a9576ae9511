"""knn-scaling: exact kNN validation error against training-set size, with a log-log fit.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: knn_scaling.sizes ('auto': doubling from 200 up to and including the whole training split,
or a list), knn_scaling.ks, knn_scaling.repeats, knn_scaling.metric, knn_scaling.weights,
knn_scaling.seed.
Outputs: ``--metrics`` (fit of log2(error) = intercept - slope * log2(n) on the sizes below the
full one, its prediction at full size beside the measured error, best k), ``--rows`` (CSV: n, k,
repeat, error, seconds; ``series`` names the k for DVC's plot) and ``--figures`` (error against n on log-log axes, time against n).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fmproto import io, plots
from fmproto.distances import as_rows
from fmproto.knn import kneighbors, predict_for_ks
from fmproto.scaling import fit_power_law, predict_error, sample_indices, training_sizes
from stages import common as c

SPEC = {
    "sizes": c.either(c.one_of("auto"), c.list_of(c.integer(low=1), unique=True), "'auto' or a list of sizes"),
    "ks": c.list_of(c.integer(low=1), unique=True),
    "repeats": c.integer(low=1, high=20),
    "metric": c.one_of("euclidean", "cosine", "manhattan"),
    "weights": c.one_of("uniform", "distance"),
    "seed": c.integer(low=0),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--metrics", "--rows", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("knn-scaling", [args.metrics, args.rows, args.figures]):
        p = c.read_params("knn_scaling", SPEC, args.params)
        data, split = io.load_arrays(args.train), io.load_arrays(args.split)
        X, y, n_classes = as_rows(data["images"]), data["labels"], len(data["classes"])
        X_train, y_train = X[split["train"]], y[split["train"]]
        X_valid, y_valid = X[split["valid"]], y[split["valid"]]
        n_full = len(y_train)
        sizes = training_sizes(n_full) if p["sizes"] == "auto" else sorted(p["sizes"])
        if sizes[-1] > n_full:
            raise c.ParamError(f"{args.params}: knn_scaling.sizes has {sizes[-1]} but the training split has {n_full:,}")
        ks = sorted(p["ks"])
        rows = []
        for n in sizes:
            for repeat in range(p["repeats"] if n < n_full else 1):  # the full split is one fixed sample
                sample = sample_indices(n_full, n, seed=p["seed"], repeat=repeat)
                start = time.perf_counter()
                distances, indices = kneighbors(X_valid, X_train[sample], min(ks[-1], n), metric=p["metric"])
                predictions = predict_for_ks(indices, distances, y_train[sample], n_classes,
                                             [k for k in ks if k <= n], weights=p["weights"])
                seconds = time.perf_counter() - start
                rows += [{"series": f"k={k}", "n": n, "k": k, "repeat": repeat, "error": float(np.mean(pred != y_valid)),
                          "seconds": round(seconds, 4)} for k, pred in predictions.items()]
        table = pd.DataFrame(rows)
        metrics, series = _fit_each_k(table, ks, n_full)
        plots.save(plots.lines(series, xlabel="training images", ylabel="validation error", loglog=True,
                               title=f"kNN ({p['metric']}) error against training size; dashed: fit",
                               dashed=[name for name in series if name.startswith("fit")],
                               colour_of={name: name.removeprefix("fit ") for name in series}),
                   Path(args.figures) / "error_vs_n.png")
        timing = table.groupby("n")["seconds"].mean()
        plots.save(plots.lines({"seconds": (timing.index.to_numpy(), timing.to_numpy())}, xlabel="training images",
                               ylabel="seconds (12k queries, all ks)" if len(y_valid) == 12000 else "seconds",
                               title="kNN time against training size"), Path(args.figures) / "seconds_vs_n.png")
        io.write_csv(args.rows, table)
        io.write_json(args.metrics, metrics)
    fit = metrics["fit"]
    predicted = (f"predicted {fit['predicted_error_full']:.4f} (slope {fit['slope']:.3f})"
                 if fit["slope"] is not None else "no fit (an error of 0 below full size)")
    print(f"best k {metrics['best_k']}: measured full-size error {metrics['measured_error_full']:.4f}, {predicted}")
    print(f"{len(rows)} runs over sizes {sizes[0]:,}..{n_full:,}; full-size search {table['seconds'].iloc[-1]:.1f} s")


def _fit_each_k(table: pd.DataFrame, ks: list[int], n_full: int) -> tuple[dict, dict]:
    """Fit each k on the sizes below ``n_full``; the best k has the lowest measured full-size error."""
    by_k, series = {}, {}
    mean_error = table.groupby(["k", "n"])["error"].mean()
    for k in ks:
        curve = mean_error.loc[k]
        n, error = curve.index.to_numpy(), curve.to_numpy()
        below = n < n_full
        # log2(0) has no fit: a perfect small sample (toy data) leaves that k unfitted.
        fittable = below.sum() >= 2 and np.all(error[below] > 0)
        fit = fit_power_law(n[below], error[below]) if fittable else None
        by_k[str(k)] = {
            "measured_error_full": round(float(curve.get(n_full, np.nan)), 5),
            "predicted_error_full": round(float(predict_error(fit, n_full)), 5) if fit else None,
            "slope": round(fit.slope, 5) if fit else None,
            "intercept": round(fit.intercept, 5) if fit else None,
            "r2": round(fit.r2, 5) if fit else None,
        }
        series[f"k={k}"] = (n, error)
        if fit:
            grid = np.array([n[0], n_full])
            series[f"fit k={k}"] = (grid, predict_error(fit, grid))
    best = min(ks, key=lambda k: (by_k[str(k)]["measured_error_full"], k))
    chosen = by_k[str(best)]
    metrics = {
        "best_k": best,
        "n_full": n_full,
        "measured_error_full": chosen["measured_error_full"],
        "fit": {key: chosen[key] for key in ("slope", "intercept", "r2", "predicted_error_full")},
        "by_k": by_k,
    }
    return metrics, series


if __name__ == "__main__":
    main()
