"""features: the feature transform of ``features.*``, fitted on the training split, applied to every image.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split).
Params: features.kind, hog_cell, hog_orientations, pca_components, pca_whiten, augment_shifts, augment_flip,
cnn_* (the network of kind cnn, trained on the training split's images and labels).
Outputs: ``--out`` (.npz): ``train`` and ``test``, the features of every ingested image;
``augmented`` and ``augmented_source``, the features of the augmented copies of every training image
and the image each was made from; the spec and fitted state (for ``fmproto explain``); the fingerprints
of the train, test and split inputs it was made from (its readers compare them with theirs).
Plain pixels (kind raw, no PCA) are stored as the uint8 images themselves.
The output is cached and the stage writes no metrics, so DVC's run-cache can restore it.
"""

import argparse
import dataclasses

import numpy as np

from fmproto.representation import augment, transform
from fmproto.pipeline import io
from fmproto.pipeline import guard, inputs
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import features as features_params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--out"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("features", files=[args.out]):
        p = features_params.read(args.params)
        spec = transform.FeatureSpec(**{field.name: p[field.name] for field in dataclasses.fields(transform.FeatureSpec)})
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        split = inputs.load_split(args.split, train)
        try:  # every limit the sizes decide, before a network is trained or a pixel transformed
            widths = transform.check_fit(spec, train["images"].shape[1:], len(split["train"]))
        except ValueError as err:
            raise P.ParamError(f"{args.params}: {err}") from None
        pixels = spec.kind == "raw" and spec.pca_components == 0  # kept as uint8: lossless and 4x smaller
        n_copies = len(train["labels"]) * (4 * p["augment_shifts"] + p["augment_flip"])
        n_rows = len(train["labels"]) + len(test["labels"]) + n_copies
        width = spec.pca_components or sum(widths)
        P.check_memory(f"{args.params}: features.kind", spec.kind, n_rows * width * (1 if pixels else 4),
                       f"the features of {n_rows:,} images x {width:,}",
                       hint="choose fewer features (a larger hog_cell, or pca_components) or no augmentation")
        if spec.pca_components:
            P.check_memory(f"{args.params}: features.kind", spec.kind, 2 * 8 * sum(widths) ** 2,
                           f"the PCA covariance of {sum(widths):,} features",
                           hint=f"at most {int((P.MEMORY_LIMIT / 16) ** 0.5):,} features fit: a larger hog_cell")
        state = transform.fit(train["images"][split["train"]], spec, labels=train["labels"][split["train"]],
                             n_classes=len(train["classes"]))
        copies, source = augment.augment(train["images"], p["augment_shifts"], p["augment_flip"])
        copies, source = copies[len(train["images"]):], source[len(train["images"]):]  # the copies only

        def features_of(images: np.ndarray) -> np.ndarray:
            if pixels:
                return images.reshape(len(images), int(np.prod(images.shape[1:])))
            return transform.transform(images, spec, state)

        X_train, X_test, X_augmented = (features_of(images) for images in (train["images"], test["images"], copies))
        io.save_arrays(args.out, train=X_train, test=X_test, augmented=X_augmented, augmented_source=source,
                       **transform.to_arrays(spec, state, p["augment_shifts"], p["augment_flip"]),
                       **inputs.provenance(train=train, test=test, split=split))
    print(f"features {spec.kind}" + (f" + PCA {spec.pca_components}{' whitened' if spec.pca_whiten else ''}"
                                     if spec.pca_components else "")
          + f": {X_train.shape[1]:,} per image; {len(X_augmented):,} augmented copies")


if __name__ == "__main__":
    main()
