"""centroids: one mean image per class from the training split, scored on train and validation.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: centroids.metric, centroids.n_show.
Every class needs images in the training split; a class without any is named, with the split file.
Outputs: ``--model`` (.npz: prototypes (n_classes, H, W) float32, prototype_labels), ``--metrics``,
``--plots`` (confusion counts for DVC) and ``--figures`` (prototypes, confusion matrices, error analysis).
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto.evaluation import plots, reports
from fmproto.pipeline import guard, inputs, io
from fmproto.pipeline.specs import centroids as centroids_params
from fmproto.prototypes.centroids import class_means
from fmproto.search.distances import as_rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--model", "--metrics", "--plots", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("centroids", files=[args.model, args.metrics], folders=[args.plots, args.figures]):
        p = centroids_params.read(args.params)
        data = inputs.load_dataset(args.train)
        split = inputs.load_split(args.split, data)
        images, labels, classes = data["images"], data["labels"], data["classes"].tolist()
        X, n_classes = as_rows(images), len(classes)
        inputs.check_classes(args.split, labels[split["train"]], classes, "in the training split")
        centroids = class_means(X[split["train"]], labels[split["train"]], n_classes)
        figures = Path(args.figures)
        metrics = {"metric": p["metric"], **reports.score_prototypes(
            images, labels, split, centroids, np.arange(n_classes), classes, p["metric"], p["n_show"],
            Path(args.plots), figures, "centroids")}
        prototypes = centroids.reshape(n_classes, *images.shape[1:])
        plots.save(plots.image_grid(prototypes, classes, n_cols=n_classes, suptitle="class mean images"),
                   figures / "prototypes.png")
        io.save_arrays(args.model, prototypes=prototypes, prototype_labels=np.arange(n_classes))
        io.write_json(args.metrics, metrics)
    print(f"centroids ({p['metric']}): train accuracy {metrics['train']['accuracy']:.3f}, "
          f"valid accuracy {metrics['valid']['accuracy']:.3f} ({metrics['valid']['n']:,} images)")


if __name__ == "__main__":
    main()
