"""dedup-check: exact and near duplicates within train, within test, and between them (leakage).

Inputs: ``--train`` and ``--test`` (.npz from ingest).
Params: dedup.near_threshold (RMS pixel difference, grey levels), dedup.chunk, dedup.n_show.
Outputs: ``--pairs`` (CSV: kind, sets, i, j, labels, classes, distance), ``--metrics`` (pair counts by
kind and sets) and ``--figure`` (the closest pairs side by side, disagreeing labels in red).
"""

import argparse

import numpy as np
import pandas as pd

from fmproto import dedup, io, plots
from stages import common as c

SPEC = {"near_threshold": c.number(low=0), "chunk": c.integer(low=64), "n_show": c.integer(low=1, high=60)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--pairs", "--metrics", "--figure"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("dedup-check", [args.pairs, args.metrics, args.figure]):
        p = c.read_params("dedup", SPEC, args.params)
        train, test = io.load_arrays(args.train), io.load_arrays(args.test)
        sets = {"train": (train, None), "test": (test, None), "train_test": (train, test)}
        frames, metrics = [], {"exact": {}, "near": {}, "near_threshold": p["near_threshold"]}
        for name, (first, second) in sets.items():
            other = None if second is None else second["images"]
            found = {
                "exact": dedup.exact_duplicates(first["images"], other),
                "near": dedup.near_duplicates(first["images"], p["near_threshold"], other, chunk=p["chunk"]),
            }
            for kind, pairs in found.items():
                metrics[kind][name] = len(pairs)
                labels_j = (second or first)["labels"][pairs.j]
                frames.append(pd.DataFrame({
                    "kind": kind, "sets": name, "i": pairs.i, "j": pairs.j,
                    "label_i": first["labels"][pairs.i], "label_j": labels_j,
                    "distance": pairs.distance.round(4),
                }))
        table = pd.concat(frames, ignore_index=True).sort_values(["distance", "sets", "i", "j"], kind="stable")
        classes = train["classes"].tolist()
        table["class_i"] = np.array(classes)[table["label_i"].to_numpy()]
        table["class_j"] = np.array(classes)[table["label_j"].to_numpy()]
        disagree = table["label_i"] != table["label_j"]
        metrics["labels_disagree"] = {kind: int(disagree[table["kind"] == kind].sum()) for kind in ("exact", "near")}

        shown = table.head(p["n_show"])
        images, titles, marks = [], [], []
        for row in shown.itertuples():
            first_set, second_set = ("test", "test") if row.sets == "test" else (
                ("train", "test") if row.sets == "train_test" else ("train", "train"))
            for set_name, index, cls in ((first_set, row.i, row.class_i), (second_set, row.j, row.class_j)):
                images.append((train if set_name == "train" else test)["images"][index])
                titles.append(f"{set_name}[{index}] {cls}\nd={row.distance:.1f}")
                marks.append(row.label_i != row.label_j)
        figure = (plots.image_grid(np.array(images), titles, n_cols=6, highlight=marks,
                                   suptitle=f"closest duplicate pairs (RMS pixel distance < {p['near_threshold']})")
                  if images else plots.image_grid(np.zeros((1, 2, 2)), ["no pairs found"]))
        plots.save(figure, args.figure)
        io.write_csv(args.pairs, table)
        io.write_json(args.metrics, metrics)
    print(f"exact duplicate pairs: train {metrics['exact']['train']}, test {metrics['exact']['test']}, "
          f"train/test {metrics['exact']['train_test']}")
    print(f"near duplicate pairs (< {p['near_threshold']}): train {metrics['near']['train']}, "
          f"test {metrics['near']['test']}, train/test {metrics['near']['train_test']}")


if __name__ == "__main__":
    main()
