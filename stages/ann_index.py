"""ann-index: an ANN index over the training split, its recall against exact search and the best k.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: ann.* (metric, backend, n_trees, search_k, hnsw_*, seed, ks, weights, recall_k).
Outputs: ``--index`` (Annoy's file, or hnswlib's), ``--metrics`` (recall@k, validation accuracy and recall
by k, best k), ``--plots`` (accuracy by k, CSV); ``--timings`` (seconds, queries/s: not a DVC output).
"""

import argparse

import pandas as pd

from fmproto.pipeline import guard, inputs, io, params as P, timings
from fmproto.pipeline.specs import ann as ann_params
from fmproto.search import ann, ann_eval, ann_files
from fmproto.search.distances import as_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--index", "--metrics", "--plots"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="not a DVC output: queries per second change every run")
    args = parser.parse_args(argv)
    with guard.stage_errors("ann-index", files=[args.index, args.metrics, args.plots]):
        p = ann_params.read(args.params)
        if p["backend"] == "hnswlib" and (why := ann.hnswlib_problem(p["metric"])):
            raise P.ParamError(f"{args.params}: ann.backend asks for hnswlib, but {why}")
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, data)
        X, y = as_rows(data["images"]), data["labels"]
        (X_train, y_train), (X_valid, y_valid) = ((X[split[s]], y[split[s]]) for s in ("train", "valid"))
        k_query = max(*p["ks"], p["recall_k"])
        ann_params.check_sizes(args.params, k_query, len(X_train), len(X_valid), X.shape[1], p["hnsw_m"])
        watch = timings.Stopwatch()
        with watch("build"):
            index = ann.build(X_train, p["backend"], p["metric"], p["seed"], n_trees=p["n_trees"], m=p["hnsw_m"],
                              ef_construction=p["hnsw_ef_construction"])
        with watch("query"):
            approx_d, approx_i = ann.query(index, X_valid, k_query, search_k=p["search_k"], ef=p["hnsw_ef"])
        exact_d, exact_qps = ann_eval.exact_reference(X_train, X_valid, k_query, p["metric"])
        scores = ann_eval.scores_by_k(approx_d, approx_i, exact_d, y_train, y_valid, len(data["classes"]),
                                      sorted(p["ks"]), p["recall_k"], p["weights"])
        knobs = ({"n_trees": p["n_trees"], "search_k": p["search_k"]} if p["backend"] == "annoy" else
                 {"M": p["hnsw_m"], "ef_construction": p["hnsw_ef_construction"], "ef": p["hnsw_ef"]})
        io.write_csv(args.plots, pd.DataFrame([{"series": p["backend"], "k": int(k), **v} for k, v in scores["by_k"].items()]))
        ann_files.save_index(index, args.index)
        io.write_json(args.metrics, {"metric": p["metric"], "backend": p["backend"], **knobs, **scores})
        qps = len(X_valid) / max(watch.seconds["query"], 1e-9)
        timings.write(args.timings, {"build_seconds": round(watch.seconds["build"], 3), "queries_per_second": round(qps, 1),
                                     "exact_queries_per_second": round(exact_qps, 1)})
    print(f"{p['backend']} ({p['metric']}, {', '.join(f'{k} {v}' for k, v in knobs.items())}): build "
          f"{watch.seconds['build']:.1f} s, {qps:,.0f} queries/s; exact search {exact_qps:,.0f} queries/s")
    print(f"recall@{p['recall_k']} {scores['recall_at_k']['recall']:.3f}; best k {scores['best_k']}: "
          f"valid accuracy {scores['valid_accuracy_best_k']:.4f}")


if __name__ == "__main__":
    main()
