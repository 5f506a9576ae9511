"""split: seeded train/validation split of the ingested training set, written as indices.

Inputs: ``--train`` (.npz from ingest), ``--pairs`` (CSV from dedup-check).
Params: split.valid_pct, split.seed, split.stratify, split.drop (none | duplicates | leaks | both:
drop the later image of each exact or near duplicate pair inside train, and/or every train image
with an exact or near copy in test).
Outputs: ``--out`` (.npz: train, valid, dropped index arrays) and ``--metrics`` (counts per class).
"""

import argparse

import numpy as np

from fmproto import io
from fmproto.split import later_of_pairs, validation_split
from fmproto.summary import class_counts
from stages import common as c

SPEC = {
    "valid_pct": c.number(low=0, high=1, open_low=True),
    "seed": c.integer(low=0),
    "stratify": c.boolean(),
    "drop": c.one_of("none", "duplicates", "leaks", "both"),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--pairs", "--out", "--metrics"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("split", [args.out, args.metrics]):
        p = c.read_params("split", SPEC, args.params)
        train = io.load_arrays(args.train)
        labels, classes = train["labels"], train["classes"].tolist()
        pairs = io.read_csv(args.pairs)
        drop = [np.empty(0, np.int64)]
        if p["drop"] in ("duplicates", "both"):
            inside = pairs[pairs["sets"] == "train"]
            drop.append(later_of_pairs(inside["i"].to_numpy(), inside["j"].to_numpy()))
        if p["drop"] in ("leaks", "both"):
            drop.append(pairs.loc[pairs["sets"] == "train_test", "i"].to_numpy(np.int64))
        split = validation_split(labels, p["valid_pct"], seed=p["seed"], stratify=p["stratify"],
                                 drop=np.concatenate(drop))
        metrics = {
            name: {"n": len(idx), "class_counts": dict(zip(classes, class_counts(labels[idx], len(classes)).tolist()))}
            for name, idx in (("train", split.train), ("valid", split.valid), ("dropped", split.dropped))
        }
        io.save_arrays(args.out, train=split.train, valid=split.valid, dropped=split.dropped)
        io.write_json(args.metrics, metrics)
    print(f"train {len(split.train):,}, valid {len(split.valid):,}, dropped {len(split.dropped):,} "
          f"({'stratified' if p['stratify'] else 'random'}, seed {p['seed']})")


if __name__ == "__main__":
    main()
