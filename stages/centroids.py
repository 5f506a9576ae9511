"""centroids: one mean image per class from the training split, scored on train and validation.

Inputs: ``--train`` (.npz from ingest), ``--split`` (.npz from split).
Params: centroids.metric, centroids.n_show.
Outputs: ``--model`` (.npz: prototypes (n_classes, H, W) float32, prototype_labels), ``--metrics``,
``--plots`` (confusion rows for DVC) and ``--figures`` (prototypes, confusion matrices, error analysis).
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto import io, plots
from fmproto.distances import METRICS, as_rows
from fmproto.prototypes import class_means, nearest_prototype
from stages import common as c
from stages import reporting

SPEC = {"metric": c.one_of(*METRICS), "n_show": c.integer(low=1, high=50)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--train", "--split", "--model", "--metrics", "--plots", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with c.stage_errors("centroids", [args.model, args.metrics, args.plots, args.figures]):
        p = c.read_params("centroids", SPEC, args.params)
        data, split = io.load_arrays(args.train), io.load_arrays(args.split)
        images, labels, classes = data["images"], data["labels"], data["classes"].tolist()
        X = as_rows(images)
        n_classes = len(classes)
        centroids = class_means(X[split["train"]], labels[split["train"]], n_classes)
        metrics, figures, plot_dir = {"metric": p["metric"]}, Path(args.figures), Path(args.plots)
        for set_name in ("train", "valid"):
            idx = split[set_name]
            result = nearest_prototype(X[idx], centroids, np.arange(n_classes), n_classes, metric=p["metric"])
            metrics[set_name] = reporting.classification_metrics(labels[idx], result.labels, classes)
            reporting.write_confusion(labels[idx], result.labels, classes, plot_dir / f"confusion_{set_name}.csv",
                                      figures / f"confusion_{set_name}.png", f"centroids, {set_name}")
            reporting.error_analysis(images[idx], labels[idx], result, classes, p["n_show"], figures, set_name, idx)
        prototypes = centroids.reshape(n_classes, *images.shape[1:])
        plots.save(plots.image_grid(prototypes, classes, n_cols=n_classes, suptitle="class mean images"),
                   figures / "prototypes.png")
        io.save_arrays(args.model, prototypes=prototypes, prototype_labels=np.arange(n_classes))
        io.write_json(args.metrics, metrics)
    print(f"centroids ({p['metric']}): train accuracy {metrics['train']['accuracy']:.3f}, "
          f"valid accuracy {metrics['valid']['accuracy']:.3f} ({metrics['valid']['n']:,} images)")


if __name__ == "__main__":
    main()
