"""knn-scaling: exact kNN validation error against the number of training images, on log-log axes.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: knn_scaling.sizes (``auto``: 200, 400, ... doubling, then the whole split; none below every k),
ks (each from the first size that holds it; none above the split), repeats, metric, weights, seed.
Outputs: ``--metrics`` (fit of log2(error) = intercept - slope * log2(n) below full size, its prediction
beside the measured full-size error, best k), ``--rows`` (CSV: n, k, repeat, error, series),
``--figures`` (error against n, log-log) and ``--timings`` (seconds per size).
With DASK_SCHEDULER_ADDRESS set, the searches run on that Dask cluster: the same bytes.
"""

import argparse
from pathlib import Path

import pandas as pd

from fmproto.evaluation import plots
from fmproto.pipeline import cluster, guard, inputs, io, progress, timings
from fmproto.pipeline.specs import knn_scaling as knn_scaling_params
from fmproto.search.distances import as_rows
from fmproto.search.scaling import curve_figure, error_curve, seconds_by_n, summary, summarize_curve


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--metrics", "--rows", "--figures"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of seconds per size (not a DVC output: it changes every run)")
    args = parser.parse_args(argv)
    with (guard.stage_errors("knn-scaling", files=[args.metrics, args.rows], folders=[args.figures]),
          cluster.exact_search() as engine):
        p = knn_scaling_params.read(args.params)
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, data)
        X, y, n_classes, n_full = as_rows(data["images"]), data["labels"], len(data["classes"]), len(split["train"])
        sizes = knn_scaling_params.sizes_for(args.params, p, n_full)
        with progress.Progress("knn-scaling: error against training size", None, "searches") as bar:
            rows, seconds = error_curve(X[split["train"]], y[split["train"]], X[split["valid"]], y[split["valid"]],
                                        n_classes, sizes, p["ks"], repeats=p["repeats"], metric=p["metric"],
                                        weights=p["weights"], seed=p["seed"], on_search=bar.advance_to, engine=engine)
        metrics, series = summarize_curve(rows, sorted(p["ks"]), n_full)
        plots.save(curve_figure(series, p["metric"]), Path(args.figures) / "error_vs_n.png")
        io.write_csv(args.rows, pd.DataFrame([{"series": f"k={r['k']}", **r, "error": round(r["error"], 6)}
                                              for r in rows]))
        io.write_json(args.metrics, metrics)
        timings.write(args.timings, {"seconds_by_n": seconds_by_n(seconds)})
    print(summary(metrics, seconds))


if __name__ == "__main__":
    main()
