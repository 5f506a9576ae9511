"""Every section of ``params.yaml``, checked completely before a stage does any work.

A spec maps each key of a section to a checker; a checker takes ``(name, value)`` and returns the
value (converted where that is safe) or raises ``ParamError`` naming the key and what is allowed.
Floats must be finite and every count that sizes memory has an upper bound here; bounds that depend
on the data (k against the fit rows, a tile against the images) are checked by the stage with
``check_memory`` before it allocates.

The allowed names (metrics, methods) are spelled here rather than imported from the core, so that
reading params does not import the numerical modules: a stage's DVC deps stay what it really uses.
``tests/test_params.py`` checks they match the core's own lists.
"""

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Checker = Callable[[str, Any], Any]

# One allocation that a param sizes may take at most this much; the message says how far off it is.
MEMORY_LIMIT = 2 * 1024**3
MAX_SEED = 2**32 - 1
_QUOTE = 80  # characters of a bad value quoted in a message


class ParamError(ValueError):
    """A missing, unknown, mistyped or out-of-range param; the message names it."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def load(path: str | Path = "params.yaml") -> dict:
    """The whole params file as a mapping with string keys, or a one-line ``ParamError``."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            params = yaml.safe_load(f)
    except OSError as err:
        raise ParamError(f"{path}: cannot read ({err.strerror or err})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ParamError(f"{path}: not valid YAML ({str(err).splitlines()[0][:_QUOTE]})") from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ParamError(f"{path}: must be a mapping of sections; got {type(params).__name__}")
    bad = [key for key in params if not isinstance(key, str)]
    if bad:
        raise ParamError(f"{path}: section names must be strings; got {_shown(bad[0])}")
    return params


def read_params(section: str, spec: dict[str, Checker], path: str | Path = "params.yaml", *,
                partial: bool = False) -> dict:
    """Return ``params.yaml[section]`` with every key checked by ``spec``; nothing else allowed.

    ``partial``: read just the keys of ``spec`` and leave the section's other keys to their readers.
    """
    path = Path(path)
    values = load(path).get(section)
    if not isinstance(values, dict):
        raise ParamError(f"{path}: section {section!r} is missing or not a mapping")
    bad = [key for key in values if not isinstance(key, str)]
    if bad:
        raise ParamError(f"{path}: param names in {section} must be strings; got {_shown(bad[0])}")
    unknown = sorted(set(values) - set(spec))
    if unknown and not partial:
        raise ParamError(f"{path}: unknown param {section}.{_shown(unknown[0])[1:-1]} (known: {', '.join(spec)})")
    checked = {}
    for key, check in spec.items():
        name = f"{section}.{key}"
        if key not in values:
            raise ParamError(f"{path}: param {name} is missing")
        checked[key] = check(f"{path}: {name}", values[key])
    return checked


def check_memory(name: str, value: Any, n_bytes: float, what: str, largest: int | None = None,
                 hint: str = "") -> None:
    """``ParamError`` when ``n_bytes`` (what ``value`` of param ``name`` would allocate) exceeds the limit.

    ``largest`` is the biggest value that fits, for the message, e.g. ``dedup.chunk 100000000 needs
    14.4 GB for one block of distances; at most 23,170 fits in 2.1 GB``; without it, ``hint`` ends it.
    """
    if n_bytes > MEMORY_LIMIT:
        advice = f"at most {largest:,} fits in {MEMORY_LIMIT / 1e9:.1f} GB" if largest is not None else hint
        raise ParamError(f"{name} {_shown(value)} needs {n_bytes / 1e9:.1f} GB for {what}; {advice}")


# ---------------------------------------------------------------------------------------------------- checkers


def integer(low: int | None = None, high: int | None = None) -> Checker:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{name} must be an integer; got {_shown(value)}")
        _check_range(name, value, low, high)
        return value

    return check


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Checker:
    """A finite int or float within the bounds (``open_*``: the bound itself is excluded)."""

    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{name} must be a number; got {_shown(value)}")
        if not math.isfinite(value):
            raise ParamError(f"{name} must be a finite number; got {_shown(value)}")
        if open_low and low is not None and value <= low:
            raise ParamError(f"{name} must be greater than {low}; got {_shown(value)}")
        if open_high and high is not None and value >= high:
            raise ParamError(f"{name} must be less than {high}; got {_shown(value)}")
        _check_range(name, value, low, high)
        return float(value)

    return check


def boolean() -> Checker:
    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError(f"{name} must be true or false; got {_shown(value)}")
        return value

    return check


def one_of(*choices: Any) -> Checker:
    def check(name: str, value: Any) -> Any:
        if isinstance(value, (list, dict)) or value not in choices:
            raise ParamError(f"{name} must be one of {', '.join(map(repr, choices))}; got {_shown(value)}")
        return value

    return check


def text(max_len: int = 4096) -> Checker:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise ParamError(f"{name} must be a non-empty string of at most {max_len} characters; got {_shown(value)}")
        return value

    return check


def list_of(item: Checker, *, min_len: int = 1, max_len: int = 1000, unique: bool = False) -> Checker:
    def check(name: str, value: Any) -> list:
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            raise ParamError(f"{name} must be a list of {min_len} to {max_len} items; got {_shown(value)}")
        items = [item(f"{name}[{i}]", v) for i, v in enumerate(value)]
        if unique and len(set(map(repr, items))) != len(items):
            raise ParamError(f"{name} must not repeat items; got {_shown(value)}")
        return items

    return check


def mapping(value: Checker, max_len: int = 1000) -> Checker:
    """A non-empty mapping from string names to values that ``value`` accepts."""

    def check(name: str, given: Any) -> dict:
        if not isinstance(given, dict) or not 1 <= len(given) <= max_len:
            raise ParamError(f"{name} must be a mapping of 1 to {max_len} names; got {_shown(given)}")
        for key in given:
            if not isinstance(key, str):
                raise ParamError(f"{name} must map names (strings) to values; got the key {_shown(key)}")
        return {key: value(f"{name}.{key}", v) for key, v in given.items()}

    return check


def optional(inner: Checker) -> Checker:
    """``null`` or a value ``inner`` accepts."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def either(first: Checker, second: Checker, what: str) -> Checker:
    """A value that ``first`` or ``second`` accepts; ``what`` describes both in the error."""

    def check(name: str, value: Any) -> Any:
        for inner in (first, second):
            try:
                return inner(name, value)
            except ParamError:
                pass
        raise ParamError(f"{name} must be {what}; got {_shown(value)}")

    return check


def _check_range(name: str, value: float, low: float | None, high: float | None) -> None:
    if low is not None and value < low:
        raise ParamError(f"{name} must be at least {low}; got {_shown(value)}")
    if high is not None and value > high:
        raise ParamError(f"{name} must be at most {high}; got {_shown(value)}")


# ---------------------------------------------------------------------------------------------------- sections

PROTOTYPE_METRICS = ("sqeuclidean", "euclidean", "mse", "cosine", "manhattan")  # fmproto.distances.METRICS
KNN_METRICS = ("euclidean", "cosine", "manhattan")
ANN_METRICS = ("euclidean", "angular", "manhattan")  # fmproto.ann.ANN_METRICS
METHODS = ("centroids", "kmeans", "knn", "ann")  # fmproto.methods.METHODS
WEIGHTS = ("uniform", "distance")  # fmproto.knn.WEIGHTS
SEED = integer(low=0, high=MAX_SEED)

DATA = {
    "dir": text(),
    "verify": one_of("fashion-mnist", "none"),
    "classes": list_of(text(200), min_len=2, unique=True),
    "image_shape": optional(list_of(integer(low=1, high=4096), min_len=2, max_len=2)),
}
INGEST = {"n_samples": integer(low=1, high=400), "per_class": integer(low=1, high=40), "seed": SEED}
DEDUP = {
    "near_threshold": number(low=0, high=255),  # RMS difference of 8-bit pixels is at most 255
    "chunk": integer(low=64, high=65536),
    "max_pairs": integer(low=1, high=1_000_000),
    "n_show": integer(low=1, high=60),
}
SPLIT = {
    "valid_pct": number(low=0, high=1, open_low=True, open_high=True),
    "seed": SEED,
    "stratify": boolean(),
    "drop": one_of("none", "duplicates", "leaks", "both"),
}
CENTROIDS = {"metric": one_of(*PROTOTYPE_METRICS), "n_show": integer(low=1, high=50)}
KMEANS = {
    "n_prototypes": either(integer(low=1, high=10_000), mapping(integer(low=1, high=10_000)),
                           "a count (1..10000), or a mapping from class name to count"),
    "max_iter": integer(low=1, high=10_000),
    "tol": number(low=0, high=1),  # a fraction of the inertia
    "seed": SEED,
    "metric": one_of(*PROTOTYPE_METRICS),
    "lvq_epochs": integer(low=0, high=1000),
    "lvq_learning_rate": number(low=0, high=10, open_low=True),
    "n_show": integer(low=1, high=50),
}
KNN_SCALING = {
    "sizes": either(one_of("auto"), list_of(integer(low=1), max_len=64, unique=True), "'auto' or a list of sizes"),
    "ks": list_of(integer(low=1, high=10_000), max_len=64, unique=True),
    "repeats": integer(low=1, high=20),
    "metric": one_of(*KNN_METRICS),
    "weights": one_of(*WEIGHTS),
    "seed": SEED,
}
ANN = {
    "metric": one_of(*ANN_METRICS),
    "n_trees": integer(low=1, high=1000),
    "search_k": integer(low=1, high=100_000_000),
    "seed": integer(low=0, high=2**31 - 1),  # Annoy's set_seed takes a C int
    "ks": list_of(integer(low=1, high=10_000), max_len=64, unique=True),
    "weights": one_of(*WEIGHTS),
    "recall_k": integer(low=1, high=10_000),
    "search_k_sweep": list_of(integer(low=1, high=100_000_000), max_len=64, unique=True),
    "sweep_queries": integer(low=1, high=1_000_000),
    "backend": one_of("annoy", "hnswlib"),  # fmproto.ann.BACKENDS
    "hnsw_m": integer(low=2, high=256),  # sizes the graph: about n * (4 * n_features + 8 * M) bytes
    "hnsw_ef_construction": integer(low=1, high=10_000),
    "hnsw_ef": integer(low=1, high=100_000),
    "frontier_n_trees": list_of(integer(low=1, high=1000), min_len=0, max_len=16, unique=True),
    "frontier_hnsw_m": list_of(integer(low=2, high=256), min_len=0, max_len=16, unique=True),
    "frontier_hnsw_ef": list_of(integer(low=1, high=100_000), max_len=64, unique=True),
    "frontier_recalls": list_of(number(low=0, high=1, open_low=True), max_len=10, unique=True),
}
FEATURES = {
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
EVALUATE = {
    "method": one_of(*METHODS),
    "k": integer(low=1, high=10_000),
    "fit_on": one_of("train", "train+valid"),
    "metric": one_of(*KNN_METRICS),
    "weights": one_of(*WEIGHTS),
    "n_explain": integer(low=0, high=50),
    "explain_confusions": either(one_of("auto"), list_of(list_of(text(200), min_len=2, max_len=2), min_len=0, max_len=50),
                                 "'auto' or a list of [true, predicted] class-name pairs"),
    "seed": SEED,
}
# The keys of other sections that the final model reads (evaluate-valid, evaluate-test, explain).
KMEANS_MODEL_KEYS = ("n_prototypes", "max_iter", "tol", "seed", "metric", "lvq_epochs", "lvq_learning_rate")
ANN_MODEL_KEYS = ("metric", "n_trees", "search_k", "seed")
