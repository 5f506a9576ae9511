"""dedup-check: exact and near duplicates within train, within test, and between them (leakage).

Inputs: ``--train`` and ``--test`` (.npz from ingest).
Params: dedup.near_threshold (RMS pixel difference, grey levels), dedup.chunk, dedup.max_pairs, dedup.n_show.
Outputs: ``--pairs`` (CSV: kind, sets, i, j, labels, classes, distance), ``--metrics`` (pair counts by
kind and sets, capped or not) and ``--figure`` (the closest pairs, disagreeing labels in red).
With DASK_SCHEDULER_ADDRESS set, the near-duplicate search runs on that Dask cluster: the same bytes.
"""

import argparse

import numpy as np

from fmproto.data import dedup
from fmproto.evaluation import plots
from fmproto.pipeline import cluster, guard, inputs, io, progress
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import dedup as dedup_params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--pairs", "--metrics", "--figure"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with (guard.stage_errors("dedup-check", files=[args.pairs, args.metrics, args.figure]),
          cluster.exact_search() as engine):
        p = dedup_params.read(args.params)
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        n_pixels = int(np.prod(train["images"].shape[1:]))
        tile = min(p["chunk"], max(len(train["images"]), len(test["images"])))
        largest = dedup.largest_chunk(n_pixels, P.MEMORY_LIMIT)
        if not largest:  # no dedup.chunk could help: the images themselves are too large
            raise io.DataError(f"{args.train}: images of {'x'.join(map(str, train['images'].shape[1:]))} are too "
                               f"large for dedup-check: a tile of one image takes {dedup.tile_bytes(1, n_pixels) / 1e9:.1f} "
                               f"GB, over the {P.MEMORY_LIMIT / 1e9:.1f} GB limit")
        P.check_memory(f"{args.params}: dedup.chunk", p["chunk"], dedup.tile_bytes(tile, n_pixels),
                       "one block of distances", largest)
        P.check_memory(f"{args.params}: dedup.max_pairs", p["max_pairs"], dedup.table_bytes(p["max_pairs"]),
                       "the pairs table", P.MEMORY_LIMIT // dedup.table_bytes(1))
        with progress.Progress("dedup-check: near duplicates", None, "rows") as bar:
            table, metrics = dedup.find_all(train["images"], test["images"], train["labels"], test["labels"],
                                            train["classes"].tolist(), p["near_threshold"], chunk=p["chunk"],
                                            max_pairs=p["max_pairs"], on_chunk=bar.advance_to, engine=engine)
        shown = table.head(p["n_show"])
        images = {"train": train["images"], "test": test["images"]}
        pictures, titles, marks = dedup.closest_pairs_grid(shown, images)
        figure = (plots.image_grid(pictures, titles, n_cols=6, highlight=marks,
                                   suptitle=f"closest duplicate pairs (RMS pixel distance < {p['near_threshold']})")
                  if len(pictures) else plots.image_grid(np.zeros((1, 2, 2)), ["no pairs found"]))
        plots.save(figure, args.figure)
        io.write_csv(args.pairs, table)
        io.write_json(args.metrics, metrics)
    print(dedup.summary(metrics))


if __name__ == "__main__":
    main()
