"""kmeans: several prototypes per class by k-means inside each class, optionally refined by GLVQ.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split). Params: kmeans.n_prototypes (a count for
every class, or a mapping by class name, 1 elsewhere), max_iter, tol, seed, metric, lvq_epochs, lvq_learning_rate,
n_show. Outputs: ``--model`` (.npz: prototypes (n, H, W) float32, prototype_labels), ``--metrics``, ``--plots``
(convergence, confusion counts), ``--figures`` (prototypes, convergence, confusion matrices, error analysis).
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from fmproto.evaluation import plots, reports
from fmproto.pipeline import guard, inputs, io, params as P
from fmproto.pipeline.specs import kmeans as kmeans_params
from fmproto.prototypes.kmeans import fit_class_prototypes, n_prototypes_per_class, rows_by_class


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--model", "--metrics", "--plots", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("kmeans", files=[args.model, args.metrics], folders=[args.plots, args.figures]):
        p = kmeans_params.read(args.params)
        split = inputs.load_split(args.split, data := inputs.load_dataset(args.train))
        images, labels, classes = data["images"], data["labels"], data["classes"].tolist()
        train, valid, figures, plot_dir = split["train"], split["valid"], Path(args.figures), Path(args.plots)
        inputs.check_classes(args.split, labels[train], classes, "in the training split")
        try:
            counts = n_prototypes_per_class(p["n_prototypes"], classes, sizes=np.bincount(labels[train]))
        except ValueError as err:
            raise P.ParamError(f"{args.params}: kmeans.n_prototypes: {err}") from None
        km = fit_class_prototypes(images[train], labels[train], counts, classes, X_valid=images[valid],
                                  y_valid=labels[valid], seed=p["seed"], max_iter=p["max_iter"], metric=p["metric"],
                                  tol=p["tol"], lvq_epochs=p["lvq_epochs"], lvq_learning_rate=p["lvq_learning_rate"])
        km.summary.update(reports.score_prototypes(images, labels, split, km.prototypes, km.prototype_labels, classes,
                                                   p["metric"], p["n_show"], plot_dir, figures, "k-means prototypes"))
        io.write_csv(plot_dir / "convergence.csv", pd.DataFrame(km.history_rows(classes)))
        plots.save(plots.convergence({name: fit.history for name, fit in zip(classes, km.fits)},
                                     "k-means convergence inside each class"), figures / "convergence.png")
        grid = rows_by_class(km.prototypes, km.prototype_labels, len(classes))
        plots.save(plots.image_grid(grid, n_cols=grid.shape[0] // len(classes), row_labels=classes,
                                    suptitle="k-means prototypes, a row per class"), figures / "prototypes.png")
        io.save_arrays(args.model, prototypes=km.prototypes, prototype_labels=km.prototype_labels)
        io.write_json(args.metrics, metrics := km.summary)
    print(f"kmeans: {metrics['n_prototypes']} prototypes; train accuracy {metrics['train']['accuracy']:.3f}, "
          f"valid accuracy {metrics['valid']['accuracy']:.3f} ({metrics['valid']['n']:,} images)")


if __name__ == "__main__":
    main()
