"""``fmproto explain TARGET``: why did the final model predict what it did?

TARGET is a test-set index or an image file (.png, or .npy of the dataset's image size). The model
is the one evaluate-test scores (params ``evaluate.*``, fitted on ``evaluate.fit_on``); the answer
is the predicted class and its nearest training images with their labels and distances, printed
and drawn beside the image in ``--out``. Run it from the project folder after ``make repro``.
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto.data.images import read_image_file
from fmproto.representation import transform
from fmproto.evaluation import fitset, estimators, plots
from fmproto.pipeline import model_checks, guard, inputs
from fmproto.pipeline.settings import method_settings
from fmproto.evaluation.explanations import MAX_SHOWN, explanation_grid
from fmproto.search.knn import kneighbors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a test-set index, or an image file (.png or .npy)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--train", default="data/ingested/train.npz")
    parser.add_argument("--test", default="data/ingested/test.npz")
    parser.add_argument("--split", default="data/split/split.npz")
    parser.add_argument("--features", default="data/features/features.npz")
    parser.add_argument("--out", default="reports/explain.png", help="the picture to write (a file, not a folder)")


def run(args: argparse.Namespace) -> None:
    """Predict TARGET with the final model; print and draw its nearest training images."""
    with guard.stage_errors("fmproto explain", files=[args.out]):
        train = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, train)
        classes = train["classes"].tolist()
        p, settings = method_settings(args.params, classes, train["labels"][split["train"]])
        if args.target.isascii() and args.target.isdigit():
            test = inputs.load_dataset(args.test)
            index = int(args.target)
            if index >= len(test["labels"]):
                raise ValueError(f"test index {index} is outside 0..{len(test['labels']) - 1}")
            image, y_true, name = test["images"][index], int(test["labels"][index]), f"test #{index}"
        elif Path(args.target).exists() or Path(args.target).suffix.lower() in (".png", ".npy"):
            test, image = None, read_image_file(args.target, train["images"].shape[1:])
            y_true, name = -1, args.target
        else:  # -1, 4.0, a typo: "file not found" would hide that it was meant as an index
            n_test = len(inputs.load_dataset(args.test)["labels"])
            raise ValueError(f"{args.target} is not a test-set index (0..{n_test - 1}) nor an existing image file")
        feats = inputs.load_features(args.features, train, split, test)
        spec, state, _ = transform.from_arrays(feats)
        X_fit, y_fit, rows = fitset.fit_data(feats, train["labels"], fitset.fit_indices(split, p["fit_on"]), p["method"])
        model_checks.check_k(args.params, p["k"], len(X_fit), 1)
        # A test image's features as evaluate-test saw them; an image file's computed here (the same
        # bytes, PCA apart: its product may sum a lone image's terms in another order).
        query = feats["test"][index][None] if test is not None else transform.transform(image[None], spec, state)
        model = estimators.make(p["method"], settings).fit(X_fit, y_fit, len(classes))
        predicted = int(model.predict(query)[0])
        shown = min(p["k"], MAX_SHOWN)
        distances, neighbours = kneighbors(query, X_fit, shown, metric=p["metric"])
        sources = rows[neighbours] % len(train["labels"])  # the training image each neighbour is, or was made from
        grid, titles, marks = explanation_grid(
            image[None], np.array([-1]), np.array([y_true]), np.array([predicted]),
            fitset.fit_images(train["images"], feats, rows[neighbours]), sources, y_fit[neighbours], distances, classes)
        titles[0] = f"{name}\n-> {classes[predicted]}"
        plots.save(plots.image_grid(grid, titles, n_cols=shown + 1, highlight=marks,
                                    suptitle=f"{p['method']} predicts {classes[predicted]}"), args.out)
    truth = f" (true: {classes[y_true]})" if y_true >= 0 else ""
    print(f"{name}: predicted {classes[predicted]}{truth} by {p['method']} on {spec.kind} features; "
          f"nearest training images ({p['metric']}):")
    copies = rows[neighbours[0]] >= len(train["labels"])
    for rank, (j, d, copy) in enumerate(zip(sources[0], distances[0], copies), start=1):
        what = " (augmented copy)" if copy else ""
        print(f"  {rank}. train #{j:<6} {classes[train['labels'][j]]:<12} distance {d:.4g}{what}")
    print(f"picture: {args.out}")
