"""features: the feature transform of ``features.*``, fitted on the training split, applied to every image.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split).
Params: features.kind, hog_cell, hog_orientations, pca_components, pca_whiten, augment_shifts, augment_flip.
Outputs: ``--out`` (.npz): ``train`` and ``test``, the features of every ingested image;
``augmented`` and ``augmented_source``, the features of the augmented copies of every training image
and the image each was made from; the spec and fitted state (for ``fmproto explain``).
Plain pixels (kind raw, no PCA) are stored as the uint8 images themselves.
The output is cached and the stage writes no metrics, so DVC's run-cache can restore it.
"""

import argparse
import time

import numpy as np

from fmproto import features, io
from stages import common as c

SPEC = {
    "kind": c.text(),
    "hog_cell": c.integer(low=1),
    "hog_orientations": c.integer(low=2, high=36),
    "pca_components": c.integer(low=0),
    "pca_whiten": c.boolean(),
    "augment_shifts": c.boolean(),
    "augment_flip": c.boolean(),
}


def spec_from_params(p: dict) -> features.FeatureSpec:
    return features.FeatureSpec(p["kind"], p["hog_cell"], p["hog_orientations"], p["pca_components"], p["pca_whiten"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--out"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("features", [args.out]):
        p = c.read_params("features", SPEC, args.params)
        spec = spec_from_params(p)
        train, test, split = io.load_arrays(args.train), io.load_arrays(args.test), io.load_arrays(args.split)
        try:
            spec.check(train["images"].shape[1:])
        except ValueError as err:
            raise c.ParamError(f"{args.params}: {err}") from None
        start = time.perf_counter()
        state = features.fit(train["images"][split["train"]], spec)
        copies, source = features.augment(train["images"], p["augment_shifts"], p["augment_flip"])
        copies, source = copies[len(train["images"]):], source[len(train["images"]):]  # the copies only
        pixels = spec.kind == "raw" and spec.pca_components == 0  # kept as uint8: lossless and 4x smaller

        def features_of(images: np.ndarray) -> np.ndarray:
            if pixels:
                return images.reshape(len(images), int(np.prod(images.shape[1:])))
            return features.transform(images, spec, state)

        X_train, X_test, X_augmented = (features_of(images) for images in (train["images"], test["images"], copies))
        seconds = time.perf_counter() - start
        io.save_arrays(args.out, train=X_train, test=X_test, augmented=X_augmented, augmented_source=source,
                       **features.to_arrays(spec, state, p["augment_shifts"], p["augment_flip"]))
    print(f"features {spec.kind}" + (f" + PCA {spec.pca_components}{' whitened' if spec.pca_whiten else ''}"
                                     if spec.pca_components else "")
          + f": {X_train.shape[1]:,} per image; {len(X_augmented):,} augmented copies; {seconds:.1f} s")


if __name__ == "__main__":
    main()
