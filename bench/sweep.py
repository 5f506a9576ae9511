"""The feature and method sweep: queued DVC experiments, each scored on the validation split only.

Every configuration below becomes ``dvc exp run evaluate-valid --queue -S ...`` (so it runs the
features and evaluate-valid stages, and never evaluate-test), the queue runs them one after another,
and the table of ``metrics/valid.json`` (accuracy, macro F1) is printed as
Markdown, best first. The experiments stay in the repository: ``dvc exp show`` lists them, and
``dvc exp apply sweep-NAME`` brings one into the workspace.

Run from the repository root after ``make repro`` with the ``cnn`` lock installed (``make sweep`` does both;
three configurations train the network); about 25 minutes on 2 cores.
Speed is not in the table: a queued run's timings stay in its temporary workspace, and
``bench/knn.py`` measures query speed against peers in one run.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from fmproto.pipeline.progress import Progress

# name: params overrides. The baseline params.yaml is raw pixels, exact kNN, k=5, euclidean.
HOG3 = ["features.kind=hog", "features.hog_cell=3"]
HOG3_PCA = HOG3 + ["features.pca_components=192"]
CONFIGS: dict[str, list[str]] = {
    "raw": [],
    "raw-cosine-distance": ["evaluate.metric=cosine", "evaluate.weights=distance"],
    "standard": ["features.kind=standard"],
    "raw-pca50": ["features.pca_components=50"],
    "raw-pca50-whiten": ["features.pca_components=50", "features.pca_whiten=true"],
    "raw-shifts": ["features.augment_shifts=true"],
    "raw-flip": ["features.augment_flip=true"],
    "hog4": ["features.kind=hog"],
    "hog3": HOG3,
    "hog3-pca192-k10-distance": HOG3_PCA + ["evaluate.k=10", "evaluate.weights=distance"],
    "hog3+raw-pca192-k10-distance": ["features.kind=hog+raw", "features.hog_cell=3", "features.pca_components=192",
                                     "evaluate.k=10", "evaluate.weights=distance"],
    "hog3-pca192-shifts-k10-distance": HOG3_PCA + ["features.augment_shifts=true", "evaluate.k=10",
                                                   "evaluate.weights=distance"],
    "hog3-pca192-shifts-flip-k10-distance": HOG3_PCA + ["features.augment_shifts=true", "features.augment_flip=true",
                                                        "evaluate.k=10", "evaluate.weights=distance"],
    "hog3-pca192-shifts-k10-cosine": HOG3_PCA + ["features.augment_shifts=true", "evaluate.k=10",
                                                 "evaluate.metric=cosine", "evaluate.weights=distance"],
    "ann-hog3-pca192-shifts-k10": HOG3_PCA + ["features.augment_shifts=true", "evaluate.method=ann",
                                              "evaluate.k=10", "evaluate.weights=distance"],
    "kmeans20-hog3-pca192": HOG3_PCA + ["evaluate.method=kmeans"],
    "kmeans20-glvq3-hog3-pca192": HOG3_PCA + ["evaluate.method=kmeans", "kmeans.lvq_epochs=3"],
    "centroids-hog3-pca192": HOG3_PCA + ["evaluate.method=centroids"],
    # A small convolutional network trained on the training split (fmproto.representation.cnn), its last hidden
    # layer as features, alone and joined with HOG (each block at unit mean norm, then one PCA).
    "cnn-k10-distance": ["features.kind=cnn", "evaluate.k=10", "evaluate.weights=distance"],
    "cnn+hog3-pca192-k10-distance": ["features.kind=cnn+hog", "features.hog_cell=3", "features.pca_components=192",
                                     "evaluate.k=10", "evaluate.weights=distance"],
    "cnn+hog3-pca192-shifts-k20-distance": ["features.kind=cnn+hog", "features.hog_cell=3",
                                            "features.pca_components=192", "features.augment_shifts=true",
                                            "evaluate.k=20", "evaluate.weights=distance"],
    # Learned prototypes on the same features: 20 a class and a rank-64 metric, learned from the shifted copies too.
    "gmlvq20-cnn+hog3-pca192-shifts": ["features.kind=cnn+hog", "features.hog_cell=3", "features.pca_components=192",
                                       "features.augment_shifts=true", "evaluate.method=gmlvq"],
    # ... each validation image classified with its four one-pixel shifts too, at 10 epochs (make best's gmlvq).
    "gmlvq20-cnn+hog3-pca192-shifts-queryshifts": ["features.kind=cnn+hog", "features.hog_cell=3",
                                                   "features.pca_components=192", "features.augment_shifts=true",
                                                   "evaluate.method=gmlvq", "gmlvq.query_shifts=true", "gmlvq.epochs=10"],
}
PREFIX = "sweep-"


# The dvc beside this Python (the project's .venv), so the sweep runs without activating it.
DVC = str(Path(sys.executable).parent / "dvc") if (Path(sys.executable).parent / "dvc").exists() else "dvc"


def dvc(*args: str, check: bool = True) -> str:
    try:
        result = subprocess.run([DVC, *args], capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("sweep: dvc not found; run `make env` and use .venv/bin/python")
    if check and result.returncode != 0:
        sys.exit(f"sweep: dvc {' '.join(args)} failed: {(result.stderr or result.stdout).strip().splitlines()[-1]}")
    return result.stdout


def queue_and_run(names: list[str]) -> None:
    listed = set(dvc("exp", "list", "--name-only", check=False).split())
    existing = [name for name in names if name in listed]
    if existing:
        dvc("exp", "remove", *existing)
    with Progress("sweep: queueing", len(names), "configurations") as bar:
        for name in names:
            overrides = [arg for value in CONFIGS[name[len(PREFIX):]] for arg in ("-S", value)]
            dvc("exp", "run", "evaluate-valid", "--queue", "--name", name, *overrides)
            bar.advance(note=name[len(PREFIX):])
    dvc("queue", "start")
    with Progress("sweep: running", len(names), "configurations") as bar:
        while True:  # `dvc queue start` returns at once; the worker runs the experiments in turn
            status = dvc("queue", "status")
            # Rows: Task, Name, Created (one or more words), Status. An earlier sweep's finished tasks may be
            # listed under the same names, so what is done is what is no longer waiting.
            waiting = {row[1]: row[-1] for row in map(str.split, status.splitlines())
                       if len(row) >= 4 and row[1] in names and row[-1] in ("Queued", "Running")}
            running = [name[len(PREFIX):] for name, state in waiting.items() if state == "Running"]
            bar.advance_to(len(names) - len(waiting), note=", ".join(running))
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(5)
    failed = [line.split()[1] for line in status.splitlines() if "Failed" in line and line.split()[1] in names]
    if failed:
        print(f"sweep: failed: {', '.join(failed)} (see `dvc queue logs NAME`)", file=sys.stderr)


def table(names: list[str]) -> str:
    """Markdown table of the sweep experiments' validation metrics, best accuracy first."""
    shown = json.loads(dvc("exp", "show", "--json", "--all-commits"))  # the sweep may predate HEAD
    rows = []
    for rev in shown:
        for group in rev.get("experiments") or []:
            for exp in group["revs"]:
                if exp.get("name") not in names or not exp.get("data"):
                    continue
                valid = exp["data"]["metrics"].get("metrics/valid.json", {}).get("data")
                if valid:
                    rows.append((exp["name"][len(PREFIX):], valid))
    rows.sort(key=lambda row: -row[1]["accuracy"])
    lines = ["| configuration | method | k | metric | weights | features | fit rows | valid accuracy | "
             "macro F1 |", "|---|---|---|---|---|---|---|---|---|"]
    for name, v in rows:
        lines.append(f"| {name} | {v['method']} | {v['k']} | {v['metric']} | {v['weights']} | {v['features']} "
                     f"x {v['n_features']} | {v['n_fit']:,} | {v['accuracy']:.4f} | {v['macro_f1']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="configuration names to run (default: all)")
    parser.add_argument("--table-only", action="store_true", help="print the table of experiments already run")
    args = parser.parse_args()
    unknown = set(args.only or []) - set(CONFIGS)
    if unknown:
        sys.exit(f"sweep: unknown configuration(s) {', '.join(sorted(unknown))}; known: {', '.join(CONFIGS)}")
    names = [PREFIX + name for name in (args.only or CONFIGS)]
    if not args.table_only:
        queue_and_run(names)
    print(table(names))


if __name__ == "__main__":
    main()
