"""knn-scaling: exact kNN validation error against the number of training images, on log-log axes.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: knn_scaling.sizes (``auto``: 200, 400, ... doubling, then the whole training split),
knn_scaling.ks, repeats, metric, weights, seed.
Each k is measured on the sizes of at least k images: a k's curve (and its fit) starts at the first
size that reaches it, with no warning. A k above the training split is refused, as is a listed size
below every k (nothing could be measured on it); ``auto`` leaves such sizes out.
Outputs: ``--metrics`` (fit of log2(error) = intercept - slope * log2(n) on the sizes below the
full one, its prediction at full size beside the measured error, best k; the full-size figures only
when the sizes reach the whole split), ``--rows`` (CSV: n, k, repeat, error; ``series`` names the k
for DVC's plot), ``--figures`` (error against n on log-log axes) and ``--timings`` (seconds per size).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from fmproto.pipeline import io
from fmproto.evaluation import plots
from fmproto.pipeline import guard, inputs, timings
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import knn_scaling as knn_scaling_params
from fmproto.search.distances import as_rows
from fmproto.search.scaling import error_curve, summarize_curve, training_sizes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--metrics", "--rows", "--figures"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of seconds per size (not a DVC output: it changes every run)")
    args = parser.parse_args(argv)
    with guard.stage_errors("knn-scaling", files=[args.metrics, args.rows], folders=[args.figures]):
        p = knn_scaling_params.read(args.params)
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, data)
        X, y, n_classes = as_rows(data["images"]), data["labels"], len(data["classes"])
        n_full = len(split["train"])
        too_large = [k for k in p["ks"] if k > n_full]
        if too_large:
            raise P.ParamError(f"{args.params}: knn_scaling.ks: {', '.join(map(str, too_large))} "
                               f"exceed{'s' * (len(too_large) == 1)} the {n_full:,} training images of the split")
        sizes = ([n for n in training_sizes(n_full) if n >= min(p["ks"])] if p["sizes"] == "auto"
                 else sorted(p["sizes"]))
        if sizes[-1] > n_full:
            raise P.ParamError(f"{args.params}: knn_scaling.sizes has {sizes[-1]} but the training split has {n_full:,}")
        if sizes[0] < min(p["ks"]):
            raise P.ParamError(f"{args.params}: knn_scaling.sizes: {sizes[0]} is below every k of knn_scaling.ks "
                               f"(the smallest is {min(p['ks'])}): no k can be measured on it")
        rows, seconds = error_curve(X[split["train"]], y[split["train"]], X[split["valid"]], y[split["valid"]],
                                    n_classes, sizes, p["ks"], repeats=p["repeats"], metric=p["metric"],
                                    weights=p["weights"], seed=p["seed"])
        metrics, series = summarize_curve(rows, sorted(p["ks"]), n_full)
        plots.save(plots.lines(series, xlabel="training images", ylabel="validation error", loglog=True,
                               title=f"kNN ({p['metric']}) error against training size; dashed: fit",
                               dashed=[name for name in series if name.startswith("fit")],
                               colour_of={name: name.removeprefix("fit ") for name in series}),
                   Path(args.figures) / "error_vs_n.png")
        table = pd.DataFrame([{"series": f"k={r['k']}", **r, "error": round(r["error"], 6)} for r in rows])
        io.write_csv(args.rows, table)
        io.write_json(args.metrics, metrics)
        timings.write(args.timings, {"seconds_by_n": {str(n): round(float(np.mean([t["seconds"] for t in seconds
                                                                                   if t["n"] == n])), 4)
                                                      for n in sizes}})
    if "best_k" in metrics:
        fit = metrics["fit"]
        predicted = (f"predicted {fit['predicted_error_full']:.4f} (slope {fit['slope']:.3f})"
                     if fit["slope"] is not None else "no fit (an error of 0 below full size)")
        print(f"best k {metrics['best_k']}: measured full-size error {metrics['measured_error_full']:.4f}, {predicted}")
    else:
        print(f"sizes stop at {sizes[-1]:,} below the full split ({n_full:,}): no full-size figures")
    print(f"{len(seconds)} runs over sizes {sizes[0]:,}..{sizes[-1]:,}; largest search {seconds[-1]['seconds']:.1f} s")


if __name__ == "__main__":
    main()
