"""explain-test: misclassified test images, each beside its nearest training images.

Inputs: ``--train``, ``--test`` (.npz from ingest), ``--split`` (.npz from split), ``--features`` (.npz),
``--prototypes`` (.npz from evaluate-test: the prototype methods' models).
Params: evaluate.* and the kmeans, gmlvq and ann params of the chosen method, which is fitted as evaluate-test
fits it to know which test images it gets wrong (and, for ``explain_confusions: auto``, on the training
split alone to find the most frequent confusions on validation, never looking at the test set).
Output: ``--figures`` (``explanations.png``, and ``prototypes/<method>/<n>-<class>.png``: the prototypes of
each class of kmeans and gmlvq as evaluate-test fitted them, each shown by its nearest training images).
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto.evaluation import estimators, explanations, fitset, plots
from fmproto.pipeline import guard, inputs, model_checks
from fmproto.pipeline.settings import method_settings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--test", "--split", "--features", "--prototypes", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("explain-test", folders=[args.figures]):
        train, test = inputs.load_dataset(args.train), inputs.load_dataset(args.test)
        split, classes, labels = inputs.load_split(args.split, train), train["classes"].tolist(), train["labels"]
        feats = inputs.load_features(args.features, train, split, test)
        inputs.check_classes(args.split, labels[split["train"]], classes, "in the training split")
        p, settings = method_settings(args.params, classes, labels[split["train"]])
        confusions = model_checks.check_confusions(args.params, p["explain_confusions"], classes)
        saved = inputs.load_prototypes(args.prototypes, feats["train"].shape[1], len(classes))
        fit_set = fitset.fit_data(feats, labels, fitset.fit_indices(split, p["fit_on"]), p["method"])
        model_checks.check_k(args.params, p["k"], len(fit_set[0]), len(test["labels"]))
        if p["method"] == "gmlvq":
            model_checks.check_query_shifts(args.params, settings, feats, args.features)
        model = estimators.make(p["method"], settings).fit(*fit_set[:2], len(classes))
        predicted = model.predict(feats["test"].astype(np.float32), fitset.shifted_queries(feats, of="test"))
        figure = explanations.explanations_figure(p["method"], settings, train, test, feats, split, predicted,
                                                  fit_set, k=p["k"], metric=p["metric"], n_random=p["n_explain"],
                                                  confusions=confusions, seed=p["seed"])
        plots.save(figure, Path(args.figures) / "explanations.png")
        fit_idx = fitset.fit_indices(split, p["fit_on"])
        for name, grid in explanations.saved_prototype_figures(saved, train, feats, labels, fit_idx).items():
            plots.save(grid, Path(args.figures) / "prototypes" / f"{name}.png", trim=False)
    n_wrong = int(np.count_nonzero(predicted != test["labels"]))
    print(f"explain-test: {Path(args.figures) / 'explanations.png'}: {p['method']} misclassifies {n_wrong:,} "
          f"test images; {p['n_explain']} random ones explained besides the confusions")


if __name__ == "__main__":
    main()
