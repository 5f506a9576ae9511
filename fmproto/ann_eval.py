"""What the ann-index stage measures: validation accuracy for each k, and recall against search_k.

Accuracy for every k comes from one query of max(ks) neighbours: with a fixed search_k Annoy ranks
the same candidates, so the first k of them are what a k-neighbour query returns.
"""

import time

import numpy as np

from fmproto import ann
from fmproto.knn import vote

# Annoy names the cosine-like metric 'angular'; exact search calls it 'cosine'.
ANN_TO_EXACT = {"euclidean": "euclidean", "angular": "cosine", "manhattan": "manhattan"}


def exact_in_annoy_units(distances: np.ndarray, metric: str) -> np.ndarray:
    """Exact-search distances in Annoy's units: angular is sqrt(2 * cosine distance)."""
    return np.sqrt(2.0 * distances) if metric == "angular" else distances


def accuracy_by_k(
    approx_distances: np.ndarray,
    approx_indices: np.ndarray,
    exact_distances: np.ndarray,
    y_train: np.ndarray,
    y_valid: np.ndarray,
    n_classes: int,
    ks: list[int],
    weights: str,
) -> dict[str, dict]:
    """Validation accuracy and recall@k for each k, from one Annoy query of ``max(ks)`` neighbours.

    Parameters
    ----------
    approx_distances, approx_indices : ndarray of shape (n_valid, max(ks))
        From ``ann.query``; a missing neighbour (index -1) gets no vote.
    exact_distances : ndarray of shape (n_valid, >= max(ks))
        Exact search's distances in Annoy's units, nearest first.

    Returns
    -------
    ``{str(k): {"accuracy": ..., "recall": ...}}`` rounded to 5 decimals, in the order of ``ks``.
    """
    by_k = {}
    for k in ks:
        found = approx_indices[:, :k]
        labels = np.where(found >= 0, y_train[np.maximum(found, 0)], -1)
        predicted = vote(labels, approx_distances[:, :k], n_classes, weights=weights)
        by_k[str(k)] = {"accuracy": round(float(np.mean(predicted == y_valid)), 5),
                        "recall": round(ann.recall_at_k(approx_distances[:, :k], exact_distances[:, :k]), 5)}
    return by_k


def best_k(by_k: dict[str, dict]) -> int:
    """The k of the highest accuracy; the smaller k on ties."""
    return min((int(k) for k in by_k), key=lambda k: (-by_k[str(k)]["accuracy"], k))


def search_k_sweep(index, X_queries: np.ndarray, exact_distances: np.ndarray, k: int,
                   search_ks: list[int]) -> tuple[list[dict], dict[int, float]]:
    """Recall@k for each ``search_k`` on ``X_queries``, and the queries per second of each.

    Returns
    -------
    rows : list of dict
        ``{"search_k", "recall"}`` per setting, ascending ``search_k``; deterministic.
    queries_per_second : dict mapping search_k to the measured rate (varies run to run).
    """
    rows, rates = [], {}
    for search_k in sorted(search_ks):
        start = time.perf_counter()
        approx, _ = ann.query(index, X_queries, k, search_k=search_k)
        rates[search_k] = len(X_queries) / max(time.perf_counter() - start, 1e-9)
        rows.append({"search_k": search_k, "recall": round(ann.recall_at_k(approx, exact_distances[:, :k]), 5)})
    return rows, rates
