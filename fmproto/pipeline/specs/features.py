"""``features``: what evaluate-valid and evaluate-test classify: the features stage's transform."""

from fmproto.pipeline.params import read_params, integer, number, boolean, text, SEED

SPEC = {
    "kind": text(200),
    "hog_cell": integer(low=1, high=1024),
    "hog_orientations": integer(low=2, high=36),
    "pca_components": integer(low=0, high=4096),
    "pca_whiten": boolean(),
    "augment_shifts": boolean(),
    "augment_flip": boolean(),
    "cnn_width": integer(low=1, high=256),
    "cnn_embedding": integer(low=1, high=4096),
    "cnn_epochs": integer(low=1, high=1000),
    "cnn_learning_rate": number(low=0, high=1, open_low=True),
    "cnn_seed": SEED,
    "cnn_threads": integer(low=1, high=256),
}


def read(path) -> dict:
    return read_params("features", SPEC, path)
