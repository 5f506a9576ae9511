"""kmeans: several prototypes per class by k-means inside each class, optionally refined by GLVQ.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: kmeans.n_prototypes (one count for every class, or a mapping by class name with 1
elsewhere; each at most its class's images in the training split), kmeans.max_iter, kmeans.tol,
kmeans.seed, kmeans.metric, kmeans.lvq_epochs, kmeans.lvq_learning_rate, kmeans.n_show.
Outputs: ``--model`` (.npz: prototypes (n_prototypes, H, W) float32, prototype_labels), ``--metrics``,
``--plots`` (convergence and confusion counts for DVC) and ``--figures`` (prototypes, convergence,
confusion matrices, error analysis).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from fmproto.pipeline import io
from fmproto.evaluation import plots
from fmproto.pipeline import guard, inputs, outputs
from fmproto.pipeline import params as P
from fmproto.pipeline.specs import kmeans as kmeans_params
from fmproto.search.distances import as_rows
from fmproto.evaluation.scores import classification_report
from fmproto.prototypes.kmeans import kmeans_per_class, n_prototypes_per_class, rows_by_class
from fmproto.prototypes.lvq import glvq
from fmproto.prototypes.centroids import nearest_prototype


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--model", "--metrics", "--plots", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("kmeans", files=[args.model, args.metrics], folders=[args.plots, args.figures]):
        p = kmeans_params.read(args.params)
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, data)
        images, labels, classes = data["images"], data["labels"], data["classes"].tolist()
        X, n_classes = as_rows(images), len(classes)
        X_train, y_train = X[split["train"]], labels[split["train"]]
        inputs.check_classes(args.split, y_train, classes, "in the training split")
        try:
            counts = n_prototypes_per_class(p["n_prototypes"], classes, sizes=np.bincount(y_train, minlength=n_classes))
        except ValueError as err:
            raise P.ParamError(f"{args.params}: kmeans.n_prototypes: {err}") from None
        prototypes, prototype_labels, fits = kmeans_per_class(
            X_train, y_train, counts, seed=p["seed"], max_iter=p["max_iter"], tol=p["tol"])
        metrics = {"metric": p["metric"], "n_prototypes": int(counts.sum()), "classes": {
            name: {"n_prototypes": int(k), "inertia": round(float(fit.inertia), 2), "iterations": int(fit.n_iter)}
            for name, k, fit in zip(classes, counts, fits)}}
        if p["lvq_epochs"] > 0:
            before = nearest_prototype(X[split["valid"]], prototypes, prototype_labels, n_classes, metric=p["metric"])
            prototypes = glvq(prototypes, prototype_labels, X_train, y_train, epochs=p["lvq_epochs"],
                              learning_rate=p["lvq_learning_rate"], seed=p["seed"])
            metrics["lvq"] = {"epochs": p["lvq_epochs"],
                              "valid_accuracy_before": round(float(np.mean(before.labels == labels[split["valid"]])), 5)}

        figures, plot_dir = Path(args.figures), Path(args.plots)
        for set_name in ("train", "valid"):
            idx = split[set_name]
            result = nearest_prototype(X[idx], prototypes, prototype_labels, n_classes, metric=p["metric"])
            metrics[set_name] = classification_report(labels[idx], result.labels, classes)
            outputs.write_confusion(labels[idx], result.labels, classes, plot_dir / f"confusion_{set_name}.csv",
                                    figures / f"confusion_{set_name}.png", f"k-means prototypes, {set_name}")
            outputs.error_analysis(images[idx], labels[idx], result, classes, p["n_show"], figures, set_name, idx)

        history = pd.DataFrame([{"series": name, "iteration": step + 1, "mean_distance": round(float(value), 4)}
                                for name, fit in zip(classes, fits) for step, value in enumerate(fit.history)])
        io.write_csv(plot_dir / "convergence.csv", history)
        plots.save(plots.lines({name: (np.arange(1, len(fit.history) + 1), fit.history) for name, fit in zip(classes, fits)},
                               xlabel="iteration", ylabel="mean squared distance to centre",
                               title="k-means convergence inside each class"), figures / "convergence.png")
        shape = images.shape[1:]
        grid = rows_by_class(prototypes.reshape(-1, *shape), prototype_labels, n_classes)
        plots.save(plots.image_grid(grid, n_cols=grid.shape[0] // n_classes, row_labels=classes,
                                    suptitle="k-means prototypes, a row per class"), figures / "prototypes.png")
        io.save_arrays(args.model, prototypes=prototypes.reshape(-1, *shape), prototype_labels=prototype_labels)
        io.write_json(args.metrics, metrics)
    lvq = f"{metrics['lvq']['valid_accuracy_before']:.3f} before GLVQ, " if "lvq" in metrics else ""
    print(f"kmeans: {metrics['n_prototypes']} prototypes; train accuracy {metrics['train']['accuracy']:.3f}, "
          f"valid accuracy {lvq}{metrics['valid']['accuracy']:.3f} ({metrics['valid']['n']:,} images)")


if __name__ == "__main__":
    main()
