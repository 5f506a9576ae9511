"""split: seeded train/validation split of the ingested training set, written as indices.

Inputs: ``--train`` (.npz from ingest), ``--pairs`` (CSV from dedup-check).
Params: split.valid_pct, split.seed, split.stratify, split.drop (none | duplicates | leaks | both:
drop the later image of each exact or near duplicate pair inside train, and/or every train image
with an exact or near copy in test).
Outputs: ``--out`` (.npz: train, valid, dropped index arrays, and the fingerprint of the training set they
index) and ``--metrics`` (counts per class).
"""

import argparse

from fmproto.pipeline import io
from fmproto.pipeline import guard, inputs
from fmproto.pipeline.specs import split as split_params
from fmproto.data.holdout import drop_for_policy, validation_split
from fmproto.data.summary import class_counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--pairs", "--out", "--metrics"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("split", files=[args.out, args.metrics]):
        p = split_params.read(args.params)
        train = inputs.load_dataset(args.train)
        labels, classes = train["labels"], train["classes"].tolist()
        pairs = io.read_csv(args.pairs)
        missing = {"sets", "i", "j"} - set(pairs.columns)
        if missing:
            raise io.DataError(f"{args.pairs}: no column {sorted(missing)[0]!r}; is it dedup-check's pairs table?")
        drop = drop_for_policy(pairs["sets"].to_numpy(str), pairs["i"].to_numpy(), pairs["j"].to_numpy(), p["drop"])
        inputs.check_indices(args.pairs, {"i": drop}, len(labels), f"{len(labels):,} training images")
        split = validation_split(labels, p["valid_pct"], seed=p["seed"], stratify=p["stratify"], drop=drop)
        metrics = {
            name: {"n": len(idx), "class_counts": dict(zip(classes, class_counts(labels[idx], len(classes)).tolist()))}
            for name, idx in (("train", split.train), ("valid", split.valid), ("dropped", split.dropped))
        }
        io.save_arrays(args.out, train=split.train, valid=split.valid, dropped=split.dropped,
                       **inputs.provenance(train=train))
        io.write_json(args.metrics, metrics)
    print(f"train {len(split.train):,}, valid {len(split.valid):,}, dropped {len(split.dropped):,} "
          f"({'stratified' if p['stratify'] else 'random'}, seed {p['seed']})")


if __name__ == "__main__":
    main()
