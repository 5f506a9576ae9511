"""ann-index: an ANN index over the training split, its recall against exact search, the best k, the frontier.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: ann.metric, ann.backend, ann.n_trees, ann.search_k, ann.hnsw_m, ann.hnsw_ef_construction,
ann.hnsw_ef, ann.seed, ann.ks, ann.weights, ann.recall_k, and the frontier's ann.search_k_sweep,
ann.frontier_n_trees, ann.frontier_hnsw_m, ann.frontier_hnsw_ef, ann.frontier_recalls, ann.sweep_queries.
Outputs: ``--index`` (the ann.backend's file: Annoy's, or hnswlib's ``save_index``), ``--metrics``
(recall@k, validation accuracy and recall by k, best k), ``--plots`` (accuracy against k; the
frontier's recall against search_k per n_trees and against ef per M). Not DVC outputs, as they
change every run: ``--timings`` (build seconds, queries per second), ``--frontier`` (every setting's
recall and queries per second on one thread, exact search's, the cheapest setting reaching each
recall) and ``--frontier-figure`` (queries per second against recall).
"""

import argparse
import os
from pathlib import Path

import pandas as pd

from fmproto.search import ann, ann_eval, ann_files
from fmproto.pipeline import io
from fmproto.evaluation import plots
from fmproto.pipeline import guard, inputs, timings
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import ann as ann_params
from fmproto.search.distances import as_rows
from fmproto.search.knn import kneighbors


def check_hnswlib(p: dict, where: str) -> None:
    """ParamError before any work when hnswlib is asked for but missing, or asked for a metric it lacks."""
    if p["backend"] != "hnswlib" and not p["frontier_hnsw_m"]:
        return
    if p["metric"] not in ann.HNSW_METRICS:
        raise P.ParamError(f"{where}: ann.metric {p['metric']!r} has no hnswlib space (euclidean, angular); "
                           "for it set ann.backend: annoy and ann.frontier_hnsw_m: []")
    try:
        ann.import_hnswlib()
    except ValueError as err:
        raise P.ParamError(f"{where}: ann.backend or ann.frontier_hnsw_m asks for hnswlib, but {err}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--index", "--metrics", "--plots"):
        parser.add_argument(flag, required=True)
    for flag in ("--timings", "--frontier", "--frontier-figure"):
        parser.add_argument(flag, help="not a DVC output: queries per second change every run")
    args = parser.parse_args(argv)
    unversioned = [f for f in (args.frontier, args.frontier_figure) if f]
    with guard.stage_errors("ann-index", files=[args.index, args.metrics, *unversioned], folders=[args.plots]):
        p = ann_params.read(args.params)
        check_hnswlib(p, args.params)
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, data)
        X, y, n_classes = as_rows(data["images"]), data["labels"], len(data["classes"])
        X_train, y_train = X[split["train"]], y[split["train"]]
        X_valid, y_valid = X[split["valid"]], y[split["valid"]]
        ks, k_query, k = sorted(p["ks"]), max(max(p["ks"]), p["recall_k"]), p["recall_k"]
        if k_query > len(y_train):
            raise P.ParamError(f"{args.params}: ann.ks and ann.recall_k must not exceed the {len(y_train):,} training images")
        P.check_memory(f"{args.params}: ann.ks", k_query, 2 * len(X_valid) * k_query * 12,
                       "the neighbours of every validation image", P.MEMORY_LIMIT // (24 * len(X_valid)))
        m_max = max([p["hnsw_m"], *p["frontier_hnsw_m"]])
        P.check_memory(f"{args.params}: ann.hnsw_m", m_max, len(X_train) * (4 * X.shape[1] + 8 * m_max + 64),
                       "the hnswlib graph", hint="lower ann.hnsw_m and ann.frontier_hnsw_m")

        watch = timings.Stopwatch()
        with watch("build"):
            index = ann.build(X_train, p["backend"], p["metric"], p["seed"], n_trees=p["n_trees"], m=p["hnsw_m"],
                              ef_construction=p["hnsw_ef_construction"])
        with watch("query"):
            approx_d, approx_i = ann.search(index, X_valid, k_query, search_k=p["search_k"], ef=p["hnsw_ef"])
        exact_d, _ = kneighbors(X_valid, X_train, k_query, metric=ann_eval.ANN_TO_EXACT[p["metric"]])
        exact_d = ann_eval.exact_in_annoy_units(exact_d, p["metric"])
        by_k = ann_eval.accuracy_by_k(approx_d, approx_i, exact_d, y_train, y_valid, n_classes, ks, p["weights"])
        best_k = ann_eval.best_k(by_k)
        recall = round(ann.recall_at_k(approx_d[:, :k], exact_d[:, :k]), 5)

        queries = X_valid[: p["sweep_queries"]]
        exact_q, exact_qps = ann_eval.exact_reference(X_train, queries, k, p["metric"])
        grids = {"annoy": (p["frontier_n_trees"], p["search_k_sweep"]), "hnswlib": (p["frontier_hnsw_m"], p["frontier_hnsw_ef"])}
        points = ann_eval.frontier(X_train, queries, exact_q, k, grids, metric=p["metric"], seed=p["seed"],
                                   ef_construction=p["hnsw_ef_construction"])
        cheapest = ann_eval.crossover(points, exact_qps, p["frontier_recalls"])

        settings = ({"n_trees": p["n_trees"], "search_k": p["search_k"]} if p["backend"] == "annoy" else
                    {"M": p["hnsw_m"], "ef_construction": p["hnsw_ef_construction"], "ef": p["hnsw_ef"]})
        metrics = {"metric": p["metric"], "backend": p["backend"], **settings,
                   "recall_at_k": {"k": k, "recall": recall},
                   "best_k": best_k, "valid_accuracy_best_k": by_k[str(best_k)]["accuracy"], "by_k": by_k}
        plot_dir = Path(args.plots)
        io.write_csv(plot_dir / "accuracy_by_k.csv", pd.DataFrame([{"series": p["backend"], "k": int(kk), **v} for kk, v in by_k.items()]))
        for backend, name in (("annoy", "recall_vs_search_k.csv"), ("hnswlib", "recall_vs_ef.csv")):
            columns = ["series", ann_eval.QUERY_KNOB[backend], "recall"]
            io.write_csv(plot_dir / name, pd.DataFrame(ann_eval.recall_rows(points, backend), columns=columns))
        ann_files.save_index(index, args.index)
        io.write_json(args.metrics, metrics)

        qps = len(X_valid) / max(watch.seconds["query"], 1e-9)
        threads = os.cpu_count() or 1  # fmproto.search.knn queries on a thread a core, each product on one BLAS thread
        exact_name = f"exact search ({threads} threads)"
        timings.write(args.timings, {"build_seconds": round(watch.seconds["build"], 3), "queries_per_second": round(qps, 1),
                                     "exact_queries_per_second": round(exact_qps, 1)})
        timings.write(args.frontier, {
            "k": k, "n_queries": len(queries), "metric": p["metric"], "exact_queries_per_second": round(exact_qps, 1),
            "exact_search": f"fmproto.search.knn.kneighbors, {threads} threads; each ANN setting on one query thread",
            "frontier": points, "cheapest": cheapest})
        if args.frontier_figure:
            lines = ann_eval.frontier_lines(points)
            low = min([1.0, *(pt["recall"] for pt in points)])
            lines[exact_name] = ([low, 1.0], [exact_qps, exact_qps])
            plots.save(plots.lines(lines, xlabel=f"recall@{k}", ylabel="queries per second (log)", logy=True,
                                   dashed=[exact_name],
                                   title=f"ANN frontier: {len(queries):,} validation queries, one query thread"),
                       args.frontier_figure)
    knobs = ", ".join(f"{key} {value}" for key, value in settings.items())
    print(f"{p['backend']} ({p['metric']}, {knobs}): build {watch.seconds['build']:.1f} s, "
          f"{qps:,.0f} queries/s, recall@{k} {recall:.3f}; exact search {exact_qps:,.0f} queries/s")
    print(f"best k {best_k}: valid accuracy {metrics['valid_accuracy_best_k']:.4f}")
    for target, by_backend in cheapest.items():
        if by_backend:
            print(f"cheapest reaching recall {target}: " + "; ".join(describe(b, s) for b, s in by_backend.items()))


def describe(backend: str, setting: dict | None) -> str:
    """``annoy n_trees 50 search_k 1000: 2,044/s (slower than exact)``, or that none reaches the recall."""
    if setting is None:
        return f"{backend} none"
    build, query = ann_eval.BUILD_KNOB[backend], ann_eval.QUERY_KNOB[backend]
    verdict = "beats exact" if setting["beats_exact"] else "slower than exact"
    return f"{backend} {build} {setting[build]} {query} {setting[query]}: {setting['queries_per_second']:,.0f}/s ({verdict})"


if __name__ == "__main__":
    main()
