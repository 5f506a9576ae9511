"""ingest: read and validate the raw dataset, write canonical arrays, counts and sample pictures.

Inputs: the folder ``--data-dir`` (IDX pairs, gzipped or plain, or Kaggle-layout CSVs).
Params: data.classes, data.image_shape, ingest.n_samples, ingest.per_class, ingest.seed.
Every class needs training images (the test set may lack one); images over ``MAX_IMAGE_PIXELS`` are refused.
Outputs: ``--train-out`` / ``--test-out`` (.npz: images uint8 (n, H, W), labels int64, classes, the
fingerprint that later stages record of what they were made from),
``--metrics`` (counts per class, image shape) and ``--figures`` (a folder of PNGs).
"""

import argparse
from pathlib import Path

import numpy as np

from fmproto.data import folder
from fmproto.evaluation import plots
from fmproto.pipeline import guard, inputs, io
from fmproto.pipeline.specs import data as data_params, ingest as ingest_params
from fmproto.data.summary import class_counts, per_class_samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    for flag in ("--data-dir", "--train-out", "--test-out", "--metrics", "--figures"):
        parser.add_argument(flag, required=True)
    args = parser.parse_args(argv)
    with guard.stage_errors("ingest", files=[args.train_out, args.test_out, args.metrics], folders=[args.figures]):
        data, p = data_params.read(args.params), ingest_params.read(args.params)
        classes = data["classes"]
        splits = folder.read_dataset(args.data_dir, len(classes), image_shape=data["image_shape"],
                                       class_names=classes)

        rng = np.random.default_rng(p["seed"])
        metrics = {"image_shape": list(splits["train"][0].shape[1:])}
        figures = Path(args.figures)
        for name, (images, labels) in splits.items():
            metrics[name] = {"n": len(labels), "class_counts": dict(zip(classes, class_counts(labels, len(classes)).tolist()))}
            chosen = rng.choice(len(labels), size=min(p["n_samples"], len(labels)), replace=False)
            plots.save(plots.image_grid(images[chosen], [classes[k] for k in labels[chosen]], n_cols=10,
                                        suptitle=f"{name}: random samples"), figures / f"{name}_samples.png")
            grid = per_class_samples(labels, len(classes), p["per_class"], rng)
            rows = np.concatenate([images, np.zeros_like(images[:1])])[grid.ravel()]  # index -1 picks the blank image
            plots.save(plots.image_grid(rows, n_cols=p["per_class"], row_labels=classes,
                                        suptitle=f"{name}: {p['per_class']} samples per class"),
                       figures / f"{name}_per_class.png")
        for name, out in (("train", args.train_out), ("test", args.test_out)):
            images, labels = splits[name]
            io.save_arrays(out, images=images, labels=labels, classes=np.array(classes),
                           fingerprint=np.array(inputs.fingerprint(images, labels)))
        io.write_json(args.metrics, metrics)
    for name in ("train", "test"):
        counts = metrics[name]["class_counts"].values()
        print(f"{name}: {metrics[name]['n']:,} images of {'x'.join(map(str, metrics['image_shape']))}, "
              f"{min(counts):,}..{max(counts):,} per class")


if __name__ == "__main__":
    main()
