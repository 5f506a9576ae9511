"""features: the feature transform of ``features.*``, fitted on the training split, applied to every image.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split).
Params: features.kind, hog_cell, hog_orientations, pca_components, pca_whiten, augment_shifts, augment_flip,
cnn_* (the network of kind cnn, trained on the training split's images and labels).
Outputs: ``--out`` (.npz): ``train`` and ``test``, the features of every ingested image (plain pixels as the
uint8 images); ``augmented`` and ``augmented_source``, those of every training image's augmented copies and the
image each was made from; the spec and fitted state (for ``fmproto explain``); the fingerprints of the inputs
it was made from (its readers compare them with theirs). No metrics, so DVC's run-cache can restore it.
"""

import argparse
from dataclasses import fields

from fmproto.pipeline import guard, inputs, io, params as P
from fmproto.pipeline.specs import features as features_params
from fmproto.representation import transform


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--out"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("features", files=[args.out]):
        p = features_params.read(args.params)
        spec = transform.FeatureSpec(**{field.name: p[field.name] for field in fields(transform.FeatureSpec)})
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        split = inputs.load_split(args.split, train)
        try:  # every limit the sizes decide, before a network is trained or a pixel transformed
            widths = transform.check_fit(spec, train["images"].shape[1:], len(split["train"]))
        except ValueError as err:
            raise P.ParamError(f"{args.params}: {err}") from None
        n_rows = len(train["labels"]) * (1 + 4 * p["augment_shifts"] + p["augment_flip"]) + len(test["labels"])
        width = spec.pca_components or sum(widths)
        P.check_memory(f"{args.params}: features.kind", spec.kind, n_rows * width * (1 if spec.plain_pixels else 4),
                       f"the features of {n_rows:,} images x {width:,}",
                       hint="choose fewer features (a larger hog_cell, or pca_components) or no augmentation")
        if spec.pca_components:
            P.check_memory(f"{args.params}: features.kind", spec.kind, 2 * 8 * sum(widths) ** 2,
                           f"the PCA covariance of {sum(widths):,} features",
                           hint=f"at most {int((P.MEMORY_LIMIT / 16) ** 0.5):,} features fit: a larger hog_cell")
        arrays = transform.feature_arrays(train["images"], test["images"], split["train"], train["labels"],
                                          len(train["classes"]), spec, p["augment_shifts"], p["augment_flip"])
        io.save_arrays(args.out, **arrays, **inputs.provenance(train=train, test=test, split=split))
    print(f"features {spec.kind}" + (f" + PCA {spec.pca_components}{' whitened' if spec.pca_whiten else ''}"
                                     if spec.pca_components else "")
          + f": {arrays['train'].shape[1]:,} per image; {len(arrays['augmented']):,} augmented copies")


if __name__ == "__main__":
    main()
