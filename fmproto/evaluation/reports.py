"""What the classifying stages write alike: confusion tables and pictures, error-analysis pictures, and the
nearest-prototype stages' scores on the training and validation splits."""

from pathlib import Path

import numpy as np
import pandas as pd

from fmproto.evaluation import scores, plots
from fmproto.pipeline import io
from fmproto.prototypes.centroids import nearest_prototype


def write_confusion(y_true, y_pred, classes: list[str], csv_path: str | Path, png_path: str | Path, title: str) -> None:
    """The confusion matrix twice: counts per (actual, predicted) pair for ``dvc plots``, and a PNG."""
    cm = scores.confusion_matrix(y_true, y_pred, len(classes))
    io.write_csv(csv_path, pd.DataFrame(scores.confusion_rows(cm, classes)))
    plots.save(plots.confusion_matrix(cm, classes, title), png_path)


def labelled_grid(images, y_true, y_pred, distances, classes: list[str], title: str, path: str | Path,
                  indices=None) -> None:
    """Images titled ``true -> predicted (distance)``; wrong predictions in red."""
    names = np.asarray(classes)
    titles = [
        f"{'#' + str(i) + ' ' if i is not None else ''}{names[t]}\n-> {names[p]} ({d:.3g})"
        for i, t, p, d in zip(indices if indices is not None else [None] * len(y_true), y_true, y_pred, distances)
    ]
    plots.save(plots.image_grid(images, titles, n_cols=min(10, max(1, len(images))),
                                suptitle=title, highlight=np.asarray(y_true) != np.asarray(y_pred)), path)


def error_analysis(images, y_true, result, classes: list[str], n_show: int, figures: Path, set_name: str,
                   ids: np.ndarray) -> None:
    """The images furthest from their own class's prototype, and the confidently wrong ones, titled by ``ids``."""
    own = result.class_distances[np.arange(len(y_true)), y_true]
    far = scores.furthest_from_own_prototype(result.class_distances, y_true, n_show)
    labelled_grid(images[far], y_true[far], result.labels[far], own[far], classes,
                  f"{set_name}: furthest from their own prototype (distance to own)", figures / f"{set_name}_furthest.png", ids[far])
    wrong = scores.confidently_wrong(result.class_distances, y_true, result.labels, n_show)
    labelled_grid(images[wrong], y_true[wrong], result.labels[wrong], result.distances[wrong], classes,
                  f"{set_name}: confidently wrong (largest margin own - wrong; distance to the wrong prototype)",
                  figures / f"{set_name}_confidently_wrong.png", ids[wrong])


def score_prototypes(images, labels, split, prototypes, prototype_labels, classes: list[str], metric: str,
                     n_show: int, plot_dir: Path, figures: Path, title: str) -> dict[str, dict]:
    """Each image of ``split``'s ``train`` and ``valid`` rows classified by its nearest prototype: a
    classification report by set name, and for each set its confusion table and picture and error analysis."""
    reports = {}
    for set_name in ("train", "valid"):
        idx = split[set_name]
        result = nearest_prototype(images[idx], prototypes, prototype_labels, len(classes), metric=metric)
        reports[set_name] = scores.classification_report(labels[idx], result.labels, classes)
        write_confusion(labels[idx], result.labels, classes, plot_dir / f"confusion_{set_name}.csv",
                        figures / f"confusion_{set_name}.png", f"{title}, {set_name}")
        error_analysis(images[idx], labels[idx], result, classes, n_show, figures, set_name, idx)
    return reports
