"""The ``fmproto`` command: ``fmproto explain TARGET`` and ``fmproto report``.

``fmproto explain TARGET``: why did the final model predict what it did? TARGET is a test-set index or an image file (.png, or .npy of the dataset's image size). The model
is the one evaluate-test scores (params ``evaluate.*``, fitted on ``evaluate.fit_on``); the answer
is the predicted class and the k nearest training images with their labels and distances, printed
and drawn beside the image in ``--out``. Run it from the project folder after ``make repro``.
"""

import argparse

import numpy as np

from fmproto import features, io, methods, plots
from fmproto.distances import as_rows
from fmproto.explain import explanation_grid
from fmproto.knn import kneighbors
from stages import common as c
from stages import report
from stages.evaluate_test import fit_data, fit_images, fit_indices, settings_from_params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="fmproto", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    explain = commands.add_parser("explain", help="explain one prediction with its nearest training images")
    explain.add_argument("target", help="a test-set index, or an image file (.png or .npy)")
    explain.add_argument("--params", default="params.yaml")
    explain.add_argument("--train", default="data/ingested/train.npz")
    explain.add_argument("--test", default="data/ingested/test.npz")
    explain.add_argument("--split", default="data/split/split.npz")
    explain.add_argument("--features", default="data/features/features.npz")
    explain.add_argument("--out", default="reports/explain.png", help="where to write the picture")
    report.add_arguments(commands.add_parser("report", help="Markdown report of metrics and params against a base"))
    args = parser.parse_args(argv)
    if args.command == "report":
        report.run(args)
    else:
        explain_one(args)


def explain_one(args: argparse.Namespace) -> None:
    """Predict TARGET with the final model; print and draw its nearest training images."""
    with c.stage_errors("fmproto explain", [args.out]):
        train, split = io.load_arrays(args.train), io.load_arrays(args.split)
        classes = train["classes"].tolist()
        p, settings = settings_from_params(args.params, classes)
        if args.target.isdigit():
            test = io.load_arrays(args.test)
            index = int(args.target)
            if index >= len(test["labels"]):
                raise ValueError(f"test index {index} is outside 0..{len(test['labels']) - 1}")
            image, y_true, name = test["images"][index], int(test["labels"][index]), f"test #{index}"
        else:
            image, y_true, name = io.read_image_file(args.target, train["images"].shape[1:]), -1, args.target
        feats = io.load_arrays(args.features)
        spec, state, _ = features.from_arrays(feats)
        X_fit, y_fit, rows = fit_data(feats, train["labels"], fit_indices(split, p["fit_on"]), p["method"])
        query = as_rows(features.transform(image[None], spec, state))
        model = methods.fit(p["method"], X_fit, y_fit, len(classes), settings)
        predicted = int(methods.predict(model, query)[0])
        distances, neighbours = kneighbors(query, X_fit, p["k"], metric=p["metric"])
        sources = rows[neighbours] % len(train["labels"])  # the training image each neighbour is, or was made from
        grid, titles, marks = explanation_grid(
            image[None], np.array([-1]), np.array([y_true]), np.array([predicted]),
            fit_images(train["images"], feats, rows[neighbours]), sources, y_fit[neighbours], distances, classes)
        titles[0] = f"{name}\n-> {classes[predicted]}"
        plots.save(plots.image_grid(grid, titles, n_cols=p["k"] + 1, highlight=marks,
                                    suptitle=f"{p['method']} predicts {classes[predicted]}"), args.out)
    truth = f" (true: {classes[y_true]})" if y_true >= 0 else ""
    print(f"{name}: predicted {classes[predicted]}{truth} by {p['method']} on {spec.kind} features; "
          f"nearest training images ({p['metric']}):")
    copies = rows[neighbours[0]] >= len(train["labels"])
    for rank, (j, d, copy) in enumerate(zip(sources[0], distances[0], copies), start=1):
        what = " (augmented copy)" if copy else ""
        print(f"  {rank}. train #{j:<6} {classes[train['labels'][j]]:<12} distance {d:.4g}{what}")
    print(f"picture: {args.out}")


if __name__ == "__main__":
    main()
