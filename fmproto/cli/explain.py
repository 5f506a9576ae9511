"""``fmproto explain TARGET``: why did the final model predict what it did?

TARGET is a test-set index or an image file (.png, or .npy of the dataset's image size). The model
is the one evaluate-test scores (params ``evaluate.*``, fitted on ``evaluate.fit_on``); the answer
is the predicted class and its nearest training images with their labels and distances, printed
and drawn beside the image in ``--out``. A prototype model (centroids, kmeans, gmlvq) decides by its prototypes:
then the answer is the nearest prototype of the predicted class and of the runner-up class, with their
distances, each shown by its nearest training images (a prototype in feature space is no picture); gmlvq
measures all of these after its learned projection, as it decides, and with ``gmlvq.query_shifts`` ranks the
classes by the mean distance over the image and its four one-pixel shifts, which it prints too.
Run it from the project folder after ``make repro``.
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto.data.images import read_image_file
from fmproto.representation import augment, transform
from fmproto.evaluation import fitset, estimators, plots
from fmproto.pipeline import model_checks, guard, inputs
from fmproto.pipeline.settings import method_settings
from fmproto.evaluation.explanations import MAX_SHOWN, deciding_prototypes, explanation_grid
from fmproto.search.knn import kneighbors

PROTOTYPE_SHOWN = 5  # training images drawn for each deciding prototype
_SPACES = {"gmlvq": "euclidean after the learned projection"}


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
        shifted = None
        if p["method"] == "gmlvq" and settings["gmlvq"]["query_shifts"]:
            model_checks.check_query_shifts(args.params, settings, feats, args.features)
            shifted = (fitset.shifted_queries(feats, [index], of="test") if test is not None else
                       transform.transform(augment.augment(image[None], True, False)[0][1:], spec, state)[:, None])
        model = estimators.make(p["method"], settings).fit(X_fit, y_fit, len(classes))
        predicted = int(model.predict(query, shifted)[0])
        deciding = deciding_prototypes(model.transform(model.prototypes_), model.prototype_labels_,
                                       model.transform(query)[0],
                                       shifted=None if shifted is None else model.transform(shifted[:, 0])
                                       ) if hasattr(model, "prototypes_") else []
        shown = min(p["k"], MAX_SHOWN) if not deciding else min(PROTOTYPE_SHOWN, len(X_fit))
        if deciding:  # each deciding prototype by the training images nearest to it, where the model measures
            distances, neighbours = kneighbors(model.transform(model.prototypes_[[i for _, i, _, _ in deciding]]),
                                               model.transform(X_fit), shown)
        else:
            distances, neighbours = kneighbors(query, X_fit, shown, metric=p["metric"])
        sources = rows[neighbours] % len(train["labels"])  # the training image each neighbour is, or was made from
        n_rows = len(neighbours)
        grid, titles, marks = explanation_grid(
            np.repeat(image[None], n_rows, axis=0), np.full(n_rows, -1), np.full(n_rows, y_true),
            np.full(n_rows, predicted), fitset.fit_images(train["images"], feats, rows[neighbours]), sources,
            y_fit[neighbours], distances, classes)
        numbers = [int(np.count_nonzero(model.prototype_labels_[:i] == c)) + 1 for c, i, _, _ in deciding]  # as the grids
        mean = (lambda score: f", mean {score:.4g}") if shifted is not None else (lambda score: "")
        for row in range(n_rows):
            titles[row * (shown + 1)] = (f"{classes[deciding[row][0]]} prototype {numbers[row]}\n"
                                         f"d={deciding[row][2]:.4g}{mean(deciding[row][3])}"
                                         if deciding else f"{name}\n-> {classes[predicted]}")
        plots.save(plots.image_grid(grid, titles, n_cols=shown + 1, highlight=marks,
                                    suptitle=f"{p['method']} predicts {classes[predicted]} for {name}"), args.out)
    truth = f" (true: {classes[y_true]})" if y_true >= 0 else ""
    print(f"{name}: predicted {classes[predicted]}{truth} by {p['method']} on {spec.kind} features; "
          + (f"the nearest prototype of each of the two nearest classes ({_SPACES.get(p['method'], 'euclidean')}"
             + ("; classes ranked by the mean distance over the image and its four one-pixel shifts" if shifted is not None
                else "") + "):" if deciding else f"nearest training images ({p['metric']}):"))
    for row in range(len(neighbours)):
        if deciding:
            c, _, d, score = deciding[row]
            over_shifts = f" (the class's mean over the shifts {score:.4g})" if shifted is not None else ""
            print(f"  {classes[c]} prototype {numbers[row]}{' (the runner-up)' if row else ''}, distance {d:.4g}"
                  f"{over_shifts}; its nearest training images:")
        copies = rows[neighbours[row]] >= len(train["labels"])
        for rank, (j, d, copy) in enumerate(zip(sources[row], distances[row], copies), start=1):
            what = " (augmented copy)" if copy else ""
            print(f"  {'  ' if deciding else ''}{rank}. train #{j:<6} {classes[train['labels'][j]]:<12} distance {d:.4g}{what}")
    print(f"picture: {args.out}")
