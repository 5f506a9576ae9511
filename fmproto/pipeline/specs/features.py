"""``features``: what evaluate-valid and evaluate-test classify: the features stage's transform."""

from fmproto.pipeline.params import MEMORY_LIMIT, ParamError, check_memory, read_params, integer, number, boolean, text, SEED
from fmproto.representation import transform

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


def check_sizes(path, spec: transform.FeatureSpec, image_shape: tuple[int, ...], n_fit: int, n_rows: int) -> None:
    """``ParamError`` naming ``path`` for every limit the sizes decide, before a network is trained or a pixel
    transformed: the transform fitted on ``n_fit`` images, then the features of ``n_rows`` images in memory."""
    try:
        widths = transform.check_fit(spec, image_shape, n_fit)
    except ValueError as err:
        raise ParamError(f"{path}: {err}") from None
    width = spec.pca_components or sum(widths)
    check_memory(f"{path}: features.kind", spec.kind, n_rows * width * (1 if spec.plain_pixels else 4),
                 f"the features of {n_rows:,} images x {width:,}",
                 hint="choose fewer features (a larger hog_cell, or pca_components) or no augmentation")
    if spec.pca_components:
        check_memory(f"{path}: features.kind", spec.kind, 2 * 8 * sum(widths) ** 2,
                     f"the PCA covariance of {sum(widths):,} features",
                     hint=f"at most {int((MEMORY_LIMIT / 16) ** 0.5):,} features fit: a larger hog_cell")
