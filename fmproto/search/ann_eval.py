"""What the ann-index stage measures: validation accuracy for each k, and the recall/speed frontier.

Accuracy for every k comes from one query of max(ks) neighbours: with a fixed search_k Annoy ranks
the same candidates, so the first k of them are what a k-neighbour query returns.

The frontier is ann-benchmarks' picture: for each setting of each backend (Annoy: n_trees x
search_k; hnswlib: M x ef), recall@k against exact search and queries per second on one query
thread, beside exact search's own queries per second. Recall is deterministic; every rate and
second changes from run to run, so a caller keeps them out of anything versioned.
"""

import time
from collections.abc import Callable

import numpy as np

from fmproto.search import ann
from fmproto.search.knn import kneighbors, vote

# Annoy names the cosine-like metric 'angular'; exact search calls it 'cosine'.
ANN_TO_EXACT = {"euclidean": "euclidean", "angular": "cosine", "manhattan": "manhattan"}
# The frontier's names for each backend's build knob and query knob (hnswlib's own spelling: M, ef).
BUILD_KNOB = {"annoy": "n_trees", "hnswlib": "M"}
QUERY_KNOB = {"annoy": "search_k", "hnswlib": "ef"}


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
    """Validation accuracy and recall@k for each k, from one query of ``max(ks)`` neighbours.

    Parameters
    ----------
    approx_distances, approx_indices : ndarray of shape (n_valid, max(ks))
        From ``ann.search``; a missing neighbour (index -1) gets no vote.
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


def exact_reference(X_train: np.ndarray, X_queries: np.ndarray, k: int, metric: str,
                    clock: Callable[[], float] = time.perf_counter) -> tuple[np.ndarray, float]:
    """Exact search's ``k`` nearest distances (Annoy's units) of ``X_queries``, and its queries per second.

    ``fmproto.search.knn.kneighbors`` as the pipeline runs it: its matrix products use numpy's BLAS threads
    (every core unless ``OPENBLAS_NUM_THREADS`` or the like says otherwise), not one thread.

    Returns
    -------
    exact_distances : ndarray of shape (n_queries, k)
    queries_per_second : float
    """
    start = clock()
    distances, _ = kneighbors(X_queries, X_train, k, metric=ANN_TO_EXACT[metric])
    seconds = clock() - start
    return exact_in_annoy_units(distances, metric), len(X_queries) / max(seconds, 1e-9)


def frontier(
    X_train: np.ndarray,
    X_queries: np.ndarray,
    exact_distances: np.ndarray,
    k: int,
    grids: dict[str, tuple[list[int], list[int]]],
    *,
    metric: str = "euclidean",
    seed: int = 42,
    ef_construction: int = 200,
    clock: Callable[[], float] = time.perf_counter,
) -> list[dict]:
    """Recall@k and queries per second of every setting of every backend in ``grids``.

    Parameters
    ----------
    X_train : ndarray of shape (n_train, n_features)
    X_queries : ndarray of shape (n_queries, n_features)
    exact_distances : ndarray of shape (n_queries, >= k)
        True distances in Annoy's units, nearest first (``exact_reference``).
    k : int >= 1
    grids : dict mapping backend to (build values, query values)
        ``{"annoy": (n_trees list, search_k list), "hnswlib": (M list, ef list)}``; a backend with
        an empty list is left out. One index is built per build value and queried at every query
        value, one query thread.
    metric, seed, ef_construction
        As ``ann.build``; ``ef_construction`` is hnswlib's only.
    clock : callable returning seconds
        ``time.perf_counter``; a test can pass a fake one.

    Returns
    -------
    list of dict
        One entry per setting, in the order of ``grids``, then ascending build and query values:
        ``{"backend", "n_trees" | "M", "search_k" | "ef", "recall", "queries_per_second",
        "build_seconds"}``. ``recall`` (5 decimals) is deterministic; the rates are not.
    """
    points = []
    for backend, (sizes, efforts) in grids.items():
        build_knob, query_knob = BUILD_KNOB[backend], QUERY_KNOB[backend]
        for size in sorted(sizes):
            start = clock()
            index = ann.build(X_train, backend, metric, seed, n_trees=size, m=size, ef_construction=ef_construction)
            build_seconds = clock() - start
            for effort in sorted(efforts):
                start = clock()
                approx, _ = ann.search(index, X_queries, k, search_k=effort, ef=effort)
                seconds = clock() - start
                points.append({
                    "backend": backend, build_knob: int(size), query_knob: int(effort),
                    "recall": round(ann.recall_at_k(approx, exact_distances[:, :k]), 5),
                    "queries_per_second": round(len(X_queries) / max(seconds, 1e-9), 1),
                    "build_seconds": round(build_seconds, 3),
                })
            del index  # one index at a time in memory
    return points


def cheapest(points: list[dict], recall: float, backend: str | None = None) -> dict | None:
    """The setting with the most queries per second whose recall is at least ``recall``.

    Parameters
    ----------
    points : list of dict
        Frontier entries, each with ``"backend"``, ``"recall"`` and ``"queries_per_second"``.
    recall : float
        The recall to reach.
    backend : str, optional
        Only this backend's settings; None: all.

    Returns
    -------
    dict or None
        The entry (itself, not a copy); the earlier one on equal rates; None when none reaches it.
    """
    reaching = [p for p in points if p["recall"] >= recall and backend in (None, p["backend"])]
    return max(reaching, key=lambda p: p["queries_per_second"], default=None)


def crossover(points: list[dict], exact_queries_per_second: float, recalls: list[float]) -> dict[str, dict]:
    """For each target recall and each backend, the cheapest setting reaching it and whether it beats exact search.

    Returns
    -------
    ``{str(recall): {backend: {**setting, "beats_exact": bool} or None}}``, the backends in the
    order they first appear in ``points``; ``beats_exact`` means more queries per second than
    ``exact_queries_per_second``.
    """
    backends = list(dict.fromkeys(p["backend"] for p in points))
    table = {}
    for recall in recalls:
        table[str(recall)] = {}
        for backend in backends:
            best = cheapest(points, recall, backend)
            table[str(recall)][backend] = (None if best is None else
                                           {**best, "beats_exact": best["queries_per_second"] > exact_queries_per_second})
    return table


def recall_rows(points: list[dict], backend: str) -> list[dict]:
    """One backend's frontier recalls as plot rows ``{"series": "n_trees=10", "search_k": ..., "recall": ...}``."""
    build_knob, query_knob = BUILD_KNOB[backend], QUERY_KNOB[backend]
    return [{"series": f"{build_knob}={p[build_knob]}", query_knob: p[query_knob], "recall": p["recall"]}
            for p in points if p["backend"] == backend]


def frontier_lines(points: list[dict]) -> dict[str, tuple[list[float], list[float]]]:
    """``{"annoy, n_trees=10": (recalls, queries per second), ...}``: one line per backend and build value."""
    lines: dict[str, tuple[list[float], list[float]]] = {}
    for p in points:
        knob = BUILD_KNOB[p["backend"]]
        recalls, rates = lines.setdefault(f"{p['backend']}, {knob}={p[knob]}", ([], []))
        recalls.append(p["recall"])
        rates.append(p["queries_per_second"])
    return lines
