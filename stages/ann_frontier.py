"""ann-frontier: recall against queries per second for every setting of Annoy and hnswlib, beside exact search.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: ann_frontier.* (Annoy's n_trees x search_k, hnswlib's hnsw_m x hnsw_ef, recalls, queries: the
first validation images) and ann.metric, ann.seed, ann.recall_k (the k), ann.hnsw_ef_construction.
Outputs: ``--recall-search-k``, ``--recall-ef`` (each setting's recall, CSV). Not DVC outputs (rates
change every run): ``--frontier`` (every setting's recall and queries/s on one query thread, exact
search's, the cheapest setting reaching each recall) and ``--figure`` (their picture).
"""

import argparse

import pandas as pd

from fmproto.evaluation import plots
from fmproto.pipeline import guard, inputs, io, params as P, progress, timings
from fmproto.pipeline.specs import ann as ann_params, ann_frontier as frontier_params
from fmproto.search import ann, ann_eval
from fmproto.search.distances import as_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--recall-search-k", "--recall-ef"):
        parser.add_argument(flag, required=True)
    for flag in ("--frontier", "--figure"):
        parser.add_argument(flag, help="not a DVC output: queries per second change every run")
    args = parser.parse_args(argv)
    csvs = {"annoy": args.recall_search_k, "hnswlib": args.recall_ef}
    with guard.stage_errors("ann-frontier", files=[*csvs.values(), *filter(None, (args.frontier, args.figure))]):
        p = frontier_params.read(args.params)
        if p["hnsw_m"] and (why := ann.hnswlib_problem(p["metric"])):
            raise P.ParamError(f"{args.params}: ann_frontier.hnsw_m asks for hnswlib (set it to [] to leave it out), but {why}")
        split, k = inputs.load_split(args.split, data := inputs.load_dataset(args.train)), p["recall_k"]
        X_train, queries = as_rows(data["images"][split["train"]]), as_rows(data["images"][split["valid"][: p["queries"]]])
        ann_params.check_sizes(args.params, k, len(X_train), len(queries), X_train.shape[1], max([2, *p["hnsw_m"]]), "ann_frontier.hnsw_m")
        exact, exact_qps = ann_eval.exact_reference(X_train, queries, k, p["metric"])
        grids = {"annoy": (p["n_trees"], p["search_k"]), "hnswlib": (p["hnsw_m"], p["hnsw_ef"])}
        with progress.Progress("ann-frontier: build and query", None, "indexes") as bar:
            points = ann_eval.frontier(X_train, queries, exact, k, grids, metric=p["metric"], seed=p["seed"],
                                       ef_construction=p["hnsw_ef_construction"], on_build=bar.advance_to)
        cheapest = ann_eval.crossover(points, exact_qps, p["recalls"])
        for backend, path in csvs.items():
            columns = ["series", ann_eval.QUERY_KNOB[backend], "recall"]
            io.write_csv(path, pd.DataFrame(ann_eval.recall_rows(points, backend), columns=columns))
        timings.write(args.frontier, {"k": k, "n_queries": len(queries), "metric": p["metric"],
                                      "exact_queries_per_second": round(exact_qps, 1), "frontier": points, "cheapest": cheapest})
        if args.figure:
            title = f"ANN frontier: {len(queries):,} validation queries, one query thread (exact search: every core)"
            plots.save(plots.lines(ann_eval.frontier_lines(points, exact_qps), xlabel=f"recall@{k}", logy=True,
                                   ylabel="queries per second (log)", dashed=["exact search"], title=title), args.figure)
    print(f"{len(points)} settings, recall@{k} on {len(queries):,} queries; exact search {exact_qps:,.0f} queries/s")
    for target, by_backend in cheapest.items():
        if by_backend:
            print(f"cheapest reaching recall {target}: " + "; ".join(ann_eval.describe(b, s) for b, s in by_backend.items()))


if __name__ == "__main__":
    main()
