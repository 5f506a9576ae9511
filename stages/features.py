"""features: the feature transform of ``features.*``, fitted on the training split, applied to every image.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split).
Params: features.kind, hog_cell, hog_orientations, pca_components, pca_whiten, augment_shifts, augment_flip,
cnn_* (the network of kind cnn, trained on the training split's images and labels).
Outputs: ``--out`` (.npz): ``train`` and ``test``, the features of every ingested image (plain pixels as the
uint8 images); ``augmented`` and ``augmented_source``, those of every training image's augmented copies and the
image each was made from; ``test_shifted``, with ``augment_shifts`` those of the test images' four one-pixel
shifts (for ``gmlvq.query_shifts``; the validation images' are among the augmented copies); the spec and
fitted state (for ``fmproto explain``); the fingerprints of the inputs it was made from (its readers compare
them with theirs). ``--curves`` (CSV) and ``--training`` (JSON): the
network's loss and accuracies per epoch and at its end (no rows, ``{}``, without a network); ``--timings``:
its seconds per epoch. Each epoch is shown as it ends (``fmproto.pipeline.progress``).
"""

import argparse
import math
from dataclasses import fields

from fmproto.pipeline import guard, inputs, io, timings
from fmproto.pipeline.progress import Progress
from fmproto.pipeline.specs import features as features_params
from fmproto.representation import curves, transform


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--out", "--curves", "--training"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--timings", help="JSON of the network's seconds per epoch (not a DVC output)")
    args = parser.parse_args(argv)
    with guard.stage_errors("features", files=[args.out, args.curves, args.training]):
        p = features_params.read(args.params)
        spec = transform.FeatureSpec(**{field.name: p[field.name] for field in fields(transform.FeatureSpec)})
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        split = inputs.load_split(args.split, train)
        features_params.check_sizes(args.params, spec, train["images"].shape[1:], len(split["train"]),
                                    len(train["labels"]) * (1 + 4 * p["augment_shifts"] + p["augment_flip"])
                                    + len(test["labels"]) * (1 + 4 * p["augment_shifts"]))
        epochs = []
        # The epoch lines are the plain output; on a terminal a bar counts them too.
        with Progress("features: network", spec.cnn_epochs if "cnn" in spec.blocks else 0, "epochs",
                      interval=math.inf) as shown:
            def on_epoch(record: dict) -> None:
                epochs.append(record)
                shown.line(curves.line(record))
                shown.advance()
            arrays = transform.feature_arrays(train["images"], test["images"], split["train"], train["labels"],
                                              len(train["classes"]), spec, p["augment_shifts"], p["augment_flip"],
                                              valid_rows=split["valid"], on_epoch=on_epoch)
        io.save_arrays(args.out, **arrays, **inputs.provenance(train=train, test=test, split=split))
        io.write_csv(args.curves, curves.table(epochs))
        io.write_json(args.training, curves.summary(epochs))
        timings.write(args.timings, {"seconds_by_epoch": [round(record["seconds"], 2) for record in epochs]})
    print(f"features {spec.kind}" + (f" + PCA {spec.pca_components}{' whitened' if spec.pca_whiten else ''}"
                                     if spec.pca_components else "")
          + f": {arrays['train'].shape[1]:,} per image; {len(arrays['augmented']):,} augmented copies")


if __name__ == "__main__":
    main()
