"""ingest: read and validate the raw dataset, write canonical arrays, counts and sample pictures.

Inputs: the folder ``--data-dir`` (IDX pairs, gzipped or plain, or Kaggle-layout CSVs).
Params: data.classes, data.image_shape, ingest.n_samples, ingest.per_class, ingest.seed.
Outputs: ``--train-out`` / ``--test-out`` (.npz: images uint8 (n, H, W), labels int64, classes),
``--metrics`` (counts per class, image shape) and ``--figures`` (a folder of PNGs).
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto import io, plots
from fmproto.summary import class_counts, per_class_samples
from stages import common as c

DATA_SPEC = {
    "dir": c.text(),
    "verify": c.one_of("fashion-mnist", "none"),
    "classes": c.list_of(c.text(), min_len=2, unique=True),
    "image_shape": c.optional(c.list_of(c.integer(low=1), min_len=2)),
}
INGEST_SPEC = {"n_samples": c.integer(low=1, high=400), "per_class": c.integer(low=1, high=40), "seed": c.integer(low=0)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--params", "--data-dir", "--train-out", "--test-out", "--metrics", "--figures"):
        parser.add_argument(flag, required=flag != "--params", default="params.yaml")
    args = parser.parse_args(argv)
    with c.stage_errors("ingest", [args.train_out, args.test_out, args.metrics, args.figures]):
        data = c.read_params("data", DATA_SPEC, args.params)
        p = c.read_params("ingest", INGEST_SPEC, args.params)
        if data["image_shape"] is not None and len(data["image_shape"]) != 2:
            raise c.ParamError(f"{args.params}: data.image_shape must be [height, width]; got {data['image_shape']}")
        classes = data["classes"]
        found = io.find_dataset(args.data_dir)
        splits = {}
        for name in ("train", "test"):
            images, labels = io.read_dataset_split(found, name, image_shape=data["image_shape"])
            io.check_labels(labels, len(classes), source=found[name][-1] if found["format"] == "idx" else found[name])
            splits[name] = (images, labels)
        if splits["train"][0].shape[1:] != splits["test"][0].shape[1:]:
            raise ValueError(f"{args.data_dir}: train images are {splits['train'][0].shape[1:]} "
                             f"but test images are {splits['test'][0].shape[1:]}")

        rng = np.random.default_rng(p["seed"])
        metrics = {"image_shape": list(splits["train"][0].shape[1:])}
        figures = Path(args.figures)
        for name, (images, labels) in splits.items():
            counts = class_counts(labels, len(classes))
            metrics[name] = {"n": len(labels), "class_counts": dict(zip(classes, counts.tolist()))}
            chosen = rng.choice(len(labels), size=min(p["n_samples"], len(labels)), replace=False)
            plots.save(plots.image_grid(images[chosen], [classes[k] for k in labels[chosen]],
                                        n_cols=10, suptitle=f"{name}: random samples"),
                       figures / f"{name}_samples.png")
            grid = per_class_samples(labels, len(classes), p["per_class"], rng)
            blank = np.zeros_like(images[:1])
            rows = np.concatenate([images, blank])[grid.ravel()]  # index -1 picks the blank image
            plots.save(plots.image_grid(rows, n_cols=p["per_class"], row_labels=classes,
                                        suptitle=f"{name}: {p['per_class']} samples per class"),
                       figures / f"{name}_per_class.png")
        for name, out in (("train", args.train_out), ("test", args.test_out)):
            images, labels = splits[name]
            io.save_arrays(out, images=images, labels=labels, classes=np.array(classes))
        io.write_json(args.metrics, metrics)
    for name in ("train", "test"):
        print(f"{name}: {metrics[name]['n']:,} images of {'x'.join(map(str, metrics['image_shape']))}, "
              f"{min(metrics[name]['class_counts'].values()):,}..{max(metrics[name]['class_counts'].values()):,} per class")


if __name__ == "__main__":
    main()
