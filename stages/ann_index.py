"""ann-index: an Annoy index over the training split, its recall against exact search, and the best k.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: ann.metric, ann.n_trees, ann.search_k, ann.seed, ann.ks, ann.weights, ann.recall_k,
ann.search_k_sweep, ann.sweep_queries.
Outputs: ``--index`` (the Annoy file), ``--metrics`` (build seconds, queries per second, recall@k,
validation accuracy by k, best k), ``--plots`` (accuracy against k; recall and speed against search_k).
Accuracy for every k comes from one query of max(ks) neighbours: with a fixed search_k Annoy ranks
the same candidates, so the first k of them are what a k-neighbour query returns.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fmproto import ann, io
from fmproto.distances import as_rows
from fmproto.knn import kneighbors, vote
from fmproto.methods import ANN_TO_EXACT
from stages import common as c

SPEC = {
    "metric": c.one_of(*ann.ANN_METRICS),
    "n_trees": c.integer(low=1, high=1000),
    "search_k": c.integer(low=1),
    "seed": c.integer(low=0),
    "ks": c.list_of(c.integer(low=1), unique=True),
    "weights": c.one_of("uniform", "distance"),
    "recall_k": c.integer(low=1),
    "search_k_sweep": c.list_of(c.integer(low=1), unique=True),
    "sweep_queries": c.integer(low=1),
}


def exact_distances(distances: np.ndarray, metric: str) -> np.ndarray:
    """Exact-search distances in Annoy's units: angular is sqrt(2 * cosine distance)."""
    return np.sqrt(2.0 * distances) if metric == "angular" else distances


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--index", "--metrics", "--plots"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("ann-index", [args.index, args.metrics, args.plots]):
        p = c.read_params("ann", SPEC, args.params)
        data, split = io.load_arrays(args.train), io.load_arrays(args.split)
        X, y, n_classes = as_rows(data["images"]), data["labels"], len(data["classes"])
        X_train, y_train = X[split["train"]], y[split["train"]]
        X_valid, y_valid = X[split["valid"]], y[split["valid"]]
        ks = sorted(p["ks"])
        if ks[-1] > len(y_train) or p["recall_k"] > len(y_train):
            raise c.ParamError(f"{args.params}: ann.ks and ann.recall_k must not exceed the {len(y_train):,} training images")

        start = time.perf_counter()
        index = ann.build_index(X_train, metric=p["metric"], n_trees=p["n_trees"], seed=p["seed"])
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        approx_d, approx_i = ann.query(index, X_valid, ks[-1], search_k=p["search_k"])
        query_seconds = time.perf_counter() - start
        exact_d, _ = kneighbors(X_valid, X_train, max(ks[-1], p["recall_k"]), metric=ANN_TO_EXACT[p["metric"]])
        exact_d = exact_distances(exact_d, p["metric"])

        by_k = {}
        for k in ks:
            found = approx_i[:, :k]
            labels = np.where(found >= 0, y_train[np.maximum(found, 0)], -1)
            predicted = vote(labels, approx_d[:, :k], n_classes, weights=p["weights"])
            by_k[str(k)] = {"accuracy": round(float(np.mean(predicted == y_valid)), 5),
                            "recall": round(float(ann.recall_at_k(approx_d[:, :k], exact_d[:, :k])), 5)}
        best_k = max(ks, key=lambda k: (by_k[str(k)]["accuracy"], -k))

        sweep_rows = _search_k_sweep(index, X_valid[: p["sweep_queries"]], exact_d[: p["sweep_queries"]], p)
        metrics = {
            "metric": p["metric"], "n_trees": p["n_trees"], "search_k": p["search_k"],
            "build_seconds": round(build_seconds, 3),
            "queries_per_second": round(len(X_valid) / query_seconds, 1),
            "recall_at_k": {"k": p["recall_k"], "recall": _recall_at(approx_d, exact_d, p["recall_k"], index, X_valid, p)},
            "best_k": best_k,
            "valid_accuracy_best_k": by_k[str(best_k)]["accuracy"],
            "by_k": by_k,
        }
        plot_dir = Path(args.plots)
        io.write_csv(plot_dir / "accuracy_by_k.csv",
                     pd.DataFrame([{"series": "annoy", "k": int(k), **v} for k, v in by_k.items()]))
        io.write_csv(plot_dir / "recall_vs_search_k.csv", pd.DataFrame(sweep_rows))
        io.save_annoy_index(index, args.index)
        io.write_json(args.metrics, metrics)
    print(f"annoy ({p['metric']}, {p['n_trees']} trees, search_k {p['search_k']}): build {build_seconds:.1f} s, "
          f"{metrics['queries_per_second']:,.0f} queries/s, recall@{p['recall_k']} {metrics['recall_at_k']['recall']:.3f}")
    print(f"best k {best_k}: valid accuracy {metrics['valid_accuracy_best_k']:.4f}")


def _recall_at(approx_d, exact_d, k, index, X_valid, p) -> float:
    """recall@k from the main query when it returned at least k neighbours, else from a k-query."""
    if approx_d.shape[1] < k:
        approx_d, _ = ann.query(index, X_valid, k, search_k=p["search_k"])
    return round(float(ann.recall_at_k(approx_d[:, :k], exact_d[:, :k])), 5)


def _search_k_sweep(index, X_queries, exact_d, p) -> list[dict]:
    """Recall@recall_k and queries per second for each search_k, on the first sweep_queries images."""
    rows = []
    for search_k in sorted(p["search_k_sweep"]):
        start = time.perf_counter()
        approx_d, _ = ann.query(index, X_queries, p["recall_k"], search_k=search_k)
        seconds = time.perf_counter() - start
        rows.append({"series": f"recall@{p['recall_k']}", "search_k": search_k,
                     "recall": round(float(ann.recall_at_k(approx_d, exact_d[:, : p["recall_k"]])), 5),
                     "queries_per_second": round(len(X_queries) / seconds, 1)})
    return rows


if __name__ == "__main__":
    main()
