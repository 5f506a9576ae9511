"""Feature transforms fitted on the training split (``fit``), applied to any images (``transform``).

``kind`` joins blocks with ``+``: ``raw`` pixels, ``standard`` (standardised) pixels, ``hog``, ``cnn``
(a network trained on the training labels). Combined blocks are scaled to unit mean row norm each, so
none dominates by its size; then, if ``pca_components > 0``, PCA, optionally whitened.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from fmproto.representation import augment, cnn
from fmproto.representation.hog import hog, hog_size

BLOCKS: tuple[str, ...] = ("raw", "standard", "hog", "cnn")
_CHUNK = 8192  # rows at once: 8192 x 2304 HOG features x 8 bytes = 150 MB of float64
# ``spec_numbers``' order in ``to_arrays``; files from before the cnn block hold the first four.
_NUMBERS = ("hog_cell", "hog_orientations", "pca_components", "pca_whiten", "cnn_width", "cnn_embedding", "cnn_epochs",
            "cnn_seed", "cnn_threads")


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute; see the module docstring. ``kind`` is ``+``-joined names from ``BLOCKS``."""

    kind: str = "raw"
    hog_cell: int = 4
    hog_orientations: int = 9
    pca_components: int = 0
    pca_whiten: bool = False
    cnn_width: int = 16
    cnn_embedding: int = 128
    cnn_epochs: int = 15
    cnn_learning_rate: float = 3e-3
    cnn_seed: int = 0
    cnn_threads: int = 2

    @property
    def blocks(self) -> list[str]:
        return self.kind.split("+")

    @property
    def plain_pixels(self) -> bool:
        """Raw pixels without PCA: stored as the uint8 images themselves, lossless and 4x smaller."""
        return self.kind == "raw" and self.pca_components == 0

    def check(self, image_shape: tuple[int, ...]) -> None:
        """``ValueError`` naming the bad setting for images of ``image_shape`` (H, W)."""
        if not set(self.blocks) <= set(BLOCKS) or len(set(self.blocks)) != len(self.blocks):
            raise ValueError(f"features.kind must be one or more of {', '.join(BLOCKS)} joined with '+', "
                             f"each once; got {self.kind!r}")
        if "hog" in self.blocks:
            height, width = image_shape
            if self.hog_cell < 1 or height // self.hog_cell < 2 or width // self.hog_cell < 2:
                raise ValueError(f"features.hog_cell must leave at least 2x2 cells in {height}x{width} images; "
                                 f"got {self.hog_cell}")
            if self.hog_orientations < 2:
                raise ValueError(f"features.hog_orientations must be >= 2; got {self.hog_orientations}")
        if "cnn" in self.blocks:
            cnn.check_shape(image_shape)
        if self.pca_components < 0:
            raise ValueError(f"features.pca_components must be >= 0 (0: no PCA); got {self.pca_components}")


def block_widths(spec: FeatureSpec, image_shape: tuple[int, int]) -> list[int]:
    """Features each block of ``spec`` makes from one image of ``image_shape``, before PCA."""
    spec.check(image_shape)
    widths = {"hog": hog_size(image_shape, spec.hog_cell, spec.hog_orientations), "cnn": spec.cnn_embedding}
    return [widths.get(b, int(np.prod(image_shape))) for b in spec.blocks]


def check_fit(spec: FeatureSpec, image_shape: tuple[int, int], n_images: int) -> list[int]:
    """``block_widths``, or the ``ValueError`` ``fit`` would raise on ``n_images`` images, before any work."""
    widths = block_widths(spec, image_shape)
    n_features = sum(widths)
    if n_images < 2:
        raise ValueError(f"features need at least 2 training images to fit; got {n_images}")
    if spec.pca_components > min(n_images, n_features):
        raise ValueError(f"features.pca_components must be at most {min(n_images, n_features):,} (kind "
                         f"{spec.kind!r} makes {n_features:,} features; {n_images:,} training images); "
                         f"got {spec.pca_components}")
    return widths


def fit(images: np.ndarray, spec: FeatureSpec, labels: np.ndarray | None = None, n_classes: int | None = None,
        *, valid: tuple[np.ndarray, np.ndarray] | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> dict[str, np.ndarray]:
    """The state ``transform`` needs, fitted on training ``images (n, H, W)`` (and for a ``cnn`` block their
    ``labels`` in ``0..n_classes-1``): one pass over chunks of rows, so memory stays bounded however wide HOG is.
    ``valid`` and ``on_epoch``: the network's, as in ``cnn.fit``."""
    widths = check_fit(spec, images.shape[1:], len(images))
    state: dict[str, np.ndarray] = {}
    if "cnn" in spec.blocks:
        if labels is None or n_classes is None:
            raise ValueError("features.kind cnn is trained on labels: pass the training images' labels and n_classes")
        state.update(cnn.fit(images, labels, n_classes, width=spec.cnn_width, embedding=spec.cnn_embedding,
                             epochs=spec.cnn_epochs, learning_rate=spec.cnn_learning_rate, seed=spec.cnn_seed,
                             threads=spec.cnn_threads, valid=valid, on_epoch=on_epoch))
    if "standard" in spec.blocks:
        pixels = images.reshape(len(images), -1).astype(np.float64)
        mean, var = pixels.mean(axis=0), pixels.var(axis=0)
        del pixels  # 8 bytes a pixel of every training image
        state["standard_mean"] = mean.astype(np.float32)
        # Pixels that never vary (a constant border) keep their scale rather than divide by zero.
        state["standard_scale"] = np.where(var > 0, np.sqrt(var), 1.0).astype(np.float32)
    norm_sums = np.zeros(len(spec.blocks))
    total = scatter = None
    for i in range(0, len(images), _CHUNK):
        blocks = _blocks(images[i : i + _CHUNK], spec, state)
        norm_sums += [np.sqrt(np.einsum("ij,ij->i", b, b)).sum() for b in blocks]
        if spec.pca_components > 0:
            X = np.concatenate(blocks, axis=1).astype(np.float64)
            total = X.sum(axis=0) if total is None else total + X.sum(axis=0)
            scatter = X.T @ X if scatter is None else scatter + X.T @ X
    # An all-zero block keeps scale 1.
    mean_norms = norm_sums / len(images)
    scales = 1.0 / np.where(mean_norms > 0, mean_norms, 1.0) if len(spec.blocks) > 1 else np.ones(1)
    state.update({f"scale_{block}": np.float32(scale) for block, scale in zip(spec.blocks, scales)})
    if spec.pca_components > 0:
        d = np.repeat(scales, widths)  # each feature's block scale
        mean = total / len(images)
        covariance = d[:, None] * ((scatter - len(images) * np.outer(mean, mean)) / (len(images) - 1)) * d[None, :]
        state["pca_mean"], state["pca_components"], state["pca_scale"] = _fit_pca(d * mean, covariance, spec)
    return state


def transform(images: np.ndarray, spec: FeatureSpec, state: dict[str, np.ndarray]) -> np.ndarray:
    """Features ``(n, n_features)`` float32 of ``images (n, H, W)`` under a fitted ``state``."""
    spec.check(images.shape[1:])
    starts = range(0, len(images), _CHUNK) or [0]  # no images still give (0, n_features)
    chunks = [_transform_chunk(images[i : i + _CHUNK], spec, state) for i in starts]
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def feature_arrays(train: np.ndarray, test: np.ndarray, fit_rows: np.ndarray, labels: np.ndarray, n_classes: int,
                   spec: FeatureSpec, shifts: bool, flip: bool, *, valid_rows: np.ndarray | None = None,
                   on_epoch: Callable[[dict], None] | None = None) -> dict[str, np.ndarray]:
    """The features stage's arrays: ``train``, ``test``, ``augmented`` (every training image's copies),
    ``augmented_source``, ``test_shifted`` (with ``shifts``, the test images' four one-pixel shifts in
    ``augment``'s order, for queries classified with their shifts; else no rows) and ``to_arrays``'s, the
    transform fitted on ``train[fit_rows]``, ``labels[fit_rows]``; a network is scored on ``train[valid_rows]``
    after each epoch (``on_epoch``)."""
    valid = None if valid_rows is None else (train[valid_rows], labels[valid_rows])
    state = fit(train[fit_rows], spec, labels=labels[fit_rows], n_classes=n_classes, valid=valid, on_epoch=on_epoch)
    copies, source = augment.augment(train, shifts, flip)

    def features(images: np.ndarray) -> np.ndarray:
        if spec.plain_pixels:
            return images.reshape(len(images), int(np.prod(images.shape[1:])))
        return transform(images, spec, state)

    return {"train": features(train), "test": features(test), "augmented": features(copies[len(train):]),
            "augmented_source": source[len(train):],
            "test_shifted": features(augment.augment(test, shifts, False)[0][len(test):]),
            **to_arrays(spec, state, shifts, flip)}


def _transform_chunk(images: np.ndarray, spec: FeatureSpec, state: dict[str, np.ndarray]) -> np.ndarray:
    blocks = [values * state[f"scale_{block}"] for block, values in zip(spec.blocks, _blocks(images, spec, state))]
    X = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
    if "pca_components" in state:
        return ((X - state["pca_mean"]) @ state["pca_components"]) * state["pca_scale"]
    return X


def to_arrays(spec: FeatureSpec, state: dict[str, np.ndarray], shifts: bool, flip: bool) -> dict[str, np.ndarray]:
    """The spec, fitted state and augmentation flags as named arrays."""
    return {**{f"state_{name}": np.asarray(value) for name, value in state.items()}, "spec_kind": np.array(spec.kind),
            "spec_numbers": np.array([int(getattr(spec, name)) for name in _NUMBERS], dtype=np.int64),
            "spec_cnn_learning_rate": np.float64(spec.cnn_learning_rate),
            "augment_flags": np.array([shifts, flip], dtype=bool)}


def from_arrays(arrays: dict[str, np.ndarray]) -> tuple[FeatureSpec, dict[str, np.ndarray], tuple[bool, bool]]:
    """``to_arrays`` inverted: the spec, the fitted state and the (shifts, flip) flags."""
    numbers = {name: int(value) for name, value in zip(_NUMBERS, arrays["spec_numbers"])}
    numbers["pca_whiten"] = bool(numbers["pca_whiten"])
    if "spec_cnn_learning_rate" in arrays:
        numbers["cnn_learning_rate"] = float(arrays["spec_cnn_learning_rate"])
    state = {name.removeprefix("state_"): value for name, value in arrays.items() if name.startswith("state_")}
    return FeatureSpec(str(arrays["spec_kind"]), **numbers), state, tuple(bool(v) for v in arrays["augment_flags"])


def _blocks(images: np.ndarray, spec: FeatureSpec, state: dict) -> list[np.ndarray]:
    rows = images.reshape(len(images), int(np.prod(images.shape[1:]))).astype(np.float32)  # not -1: fails for n=0
    make = {"raw": lambda: rows, "standard": lambda: (rows - state["standard_mean"]) / state["standard_scale"],
            "cnn": lambda: cnn.embed(images, state), "hog": lambda: hog(images, spec.hog_cell, spec.hog_orientations)}
    return [make[block]() for block in spec.blocks]


def _fit_pca(mean: np.ndarray, covariance: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, top components ``(n_features, n_components)``, each with its largest entry positive (whatever
    LAPACK's sign), and per-component scale, float32."""
    # One BLAS thread: threaded reductions sum in another order, changing the last bits by core count.
    with threadpool_limits(1, user_api="blas"):
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1][: spec.pca_components]
    components = eigenvectors[:, order]
    signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(components.shape[1])])
    components *= np.where(signs == 0, 1.0, signs)
    variances = np.maximum(eigenvalues[order], 0.0)
    floor = 1e-12 * max(float(variances.max()), 1e-30)
    scale = 1.0 / np.sqrt(variances + floor) if spec.pca_whiten else np.ones_like(variances)
    return mean.astype(np.float32), components.astype(np.float32), scale.astype(np.float32)
