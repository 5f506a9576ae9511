"""ann-index: an Annoy index over the training split, its recall against exact search, and the best k.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: ann.metric, ann.n_trees, ann.search_k, ann.seed, ann.ks, ann.weights, ann.recall_k,
ann.search_k_sweep, ann.sweep_queries.
Outputs: ``--index`` (the Annoy file), ``--metrics`` (recall@k, validation accuracy and recall by k,
best k), ``--plots`` (accuracy against k; recall against search_k) and ``--timings`` (build seconds,
queries per second, per search_k too).
"""

import argparse
from pathlib import Path

import pandas as pd

from fmproto import ann, ann_eval, io
from fmproto.cli import guard, inputs, timings
from fmproto.cli import params as P
from fmproto.distances import as_rows
from fmproto.knn import kneighbors


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--index", "--metrics", "--plots"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of build and query speed (not a DVC output: it changes every run)")
    args = parser.parse_args(argv)
    with guard.stage_errors("ann-index", files=[args.index, args.metrics], folders=[args.plots]):
        p = P.read_params("ann", P.ANN, args.params)
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, len(data["labels"]))
        X, y, n_classes = as_rows(data["images"]), data["labels"], len(data["classes"])
        X_train, y_train = X[split["train"]], y[split["train"]]
        X_valid, y_valid = X[split["valid"]], y[split["valid"]]
        ks, k_query = sorted(p["ks"]), max(max(p["ks"]), p["recall_k"])
        if k_query > len(y_train):
            raise P.ParamError(f"{args.params}: ann.ks and ann.recall_k must not exceed the {len(y_train):,} training images")
        P.check_memory(f"{args.params}: ann.ks", k_query, 2 * len(X_valid) * k_query * 12,
                       "the neighbours of every validation image", P.MEMORY_LIMIT // (24 * len(X_valid)))

        watch = timings.Stopwatch()
        with watch("build"):
            index = ann.build_index(X_train, metric=p["metric"], n_trees=p["n_trees"], seed=p["seed"])
        with watch("query"):
            approx_d, approx_i = ann.query(index, X_valid, k_query, search_k=p["search_k"])
        exact_d, _ = kneighbors(X_valid, X_train, k_query, metric=ann_eval.ANN_TO_EXACT[p["metric"]])
        exact_d = ann_eval.exact_in_annoy_units(exact_d, p["metric"])
        by_k = ann_eval.accuracy_by_k(approx_d, approx_i, exact_d, y_train, y_valid, n_classes, ks, p["weights"])
        best_k = ann_eval.best_k(by_k)
        sweep, rates = ann_eval.search_k_sweep(index, X_valid[: p["sweep_queries"]], exact_d[: p["sweep_queries"]],
                                               p["recall_k"], p["search_k_sweep"])
        recall = round(ann.recall_at_k(approx_d[:, : p["recall_k"]], exact_d[:, : p["recall_k"]]), 5)
        metrics = {
            "metric": p["metric"], "n_trees": p["n_trees"], "search_k": p["search_k"],
            "recall_at_k": {"k": p["recall_k"], "recall": recall},
            "best_k": best_k, "valid_accuracy_best_k": by_k[str(best_k)]["accuracy"], "by_k": by_k,
        }
        plot_dir = Path(args.plots)
        io.write_csv(plot_dir / "accuracy_by_k.csv", pd.DataFrame([{"series": "annoy", "k": int(k), **v} for k, v in by_k.items()]))
        io.write_csv(plot_dir / "recall_vs_search_k.csv", pd.DataFrame([{"series": f"recall@{p['recall_k']}", **r} for r in sweep]))
        io.save_annoy_index(index, args.index)
        io.write_json(args.metrics, metrics)
        queries_per_second = len(X_valid) / max(watch.seconds["query"], 1e-9)
        timings.write(args.timings, {"build_seconds": round(watch.seconds["build"], 3),
                                     "queries_per_second": round(queries_per_second, 1),
                                     "queries_per_second_by_search_k": {str(s): round(r, 1) for s, r in rates.items()}})
    print(f"annoy ({p['metric']}, {p['n_trees']} trees, search_k {p['search_k']}): build {watch.seconds['build']:.1f} s, "
          f"{queries_per_second:,.0f} queries/s, recall@{p['recall_k']} {recall:.3f}")
    print(f"best k {best_k}: valid accuracy {metrics['valid_accuracy_best_k']:.4f}")


if __name__ == "__main__":
    main()
