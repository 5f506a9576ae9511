"""Measuring an ANN index: validation accuracy and recall for each k, and ann-benchmarks' recall/speed
frontier. Recalls are deterministic; rates change from run to run, so keep them out of anything versioned.
"""

import time
from collections.abc import Callable

import numpy as np

from fmproto.search import ann
from fmproto.search.knn import kneighbors, vote

ANN_TO_EXACT = {"euclidean": "euclidean", "angular": "cosine", "manhattan": "manhattan"}  # Annoy's name: exact's
BUILD_KNOB = {"annoy": "n_trees", "hnswlib": "M"}  # hnswlib's own spelling
QUERY_KNOB = {"annoy": "search_k", "hnswlib": "ef"}


def exact_reference(X_train: np.ndarray, X_queries: np.ndarray, k: int, metric: str,
                    clock: Callable[[], float] = time.perf_counter) -> tuple[np.ndarray, float]:
    """Exact search's ``k`` nearest distances ``(n_queries, k)`` in Annoy's units, and its queries per second."""
    start = clock()
    distances, _ = kneighbors(X_queries, X_train, k, metric=ANN_TO_EXACT[metric])
    seconds = clock() - start
    if metric == "angular":  # Annoy's angular is sqrt(2 * cosine distance)
        distances = np.sqrt(2.0 * distances)
    return distances, len(X_queries) / max(seconds, 1e-9)


def scores_by_k(approx_distances: np.ndarray, approx_indices: np.ndarray, exact_distances: np.ndarray,
                y_train: np.ndarray, y_valid: np.ndarray, n_classes: int, ks: list[int], recall_k: int,
                weights: str) -> dict:
    """Recall@``recall_k``, and validation accuracy and recall for each k, from one query of
    ``(n_valid, >= max(ks, recall_k))`` (a fixed ``search_k``: its first k columns answer a k-query).

    ``{"recall_at_k": {"k", "recall"}, "best_k", "valid_accuracy_best_k", "by_k": {str(k): {"accuracy",
    "recall"}}}``, rounded to 5 decimals; the best k's ties go to the smaller k.
    """
    def recall(k):
        return round(ann.recall_at_k(approx_distances[:, :k], exact_distances[:, :k]), 5)

    by_k = {}
    for k in ks:
        found = approx_indices[:, :k]
        labels = np.where(found >= 0, y_train[np.maximum(found, 0)], -1)
        predicted = vote(labels, approx_distances[:, :k], n_classes, weights=weights)
        by_k[str(k)] = {"accuracy": round(float(np.mean(predicted == y_valid)), 5), "recall": recall(k)}
    best = min((int(k) for k in by_k), key=lambda k: (-by_k[str(k)]["accuracy"], k))
    return {"recall_at_k": {"k": recall_k, "recall": recall(recall_k)}, "best_k": best,
            "valid_accuracy_best_k": by_k[str(best)]["accuracy"], "by_k": by_k}


def frontier(X_train: np.ndarray, X_queries: np.ndarray, exact_distances: np.ndarray, k: int,
             grids: dict[str, tuple[list[int], list[int]]], *, metric: str = "euclidean", seed: int = 42,
             ef_construction: int = 200, clock: Callable[[], float] = time.perf_counter,
             on_build: Callable[[int, int], None] | None = None) -> list[dict]:
    """Recall@k and queries per second of every setting in ``grids``, ``{"annoy": (n_trees list, search_k
    list), "hnswlib": (M list, ef list)}``: one index per build value, queried at every query value.

    One dict a setting, in the order of ``grids`` then ascending values: ``{"backend", "n_trees" | "M",
    "search_k" | "ef", "recall", "queries_per_second", "build_seconds"}``. ``on_build(done, total)``: called
    after each index is built and queried, with the indexes done and all of them.
    """
    points, built, total = [], 0, sum(len(sizes) for sizes, _ in grids.values())
    for backend, (sizes, efforts) in grids.items():
        for size in sorted(sizes):
            start = clock()
            index = ann.build(X_train, backend, metric, seed, n_trees=size, m=size, ef_construction=ef_construction)
            build_seconds = clock() - start
            for effort in sorted(efforts):
                start = clock()
                approx, _ = ann.query(index, X_queries, k, search_k=effort, ef=effort)
                seconds = clock() - start
                points.append({"backend": backend, BUILD_KNOB[backend]: int(size), QUERY_KNOB[backend]: int(effort),
                               "recall": round(ann.recall_at_k(approx, exact_distances[:, :k]), 5),
                               "queries_per_second": round(len(X_queries) / max(seconds, 1e-9), 1),
                               "build_seconds": round(build_seconds, 3)})
            del index  # one index at a time in memory
            built += 1
            if on_build is not None:
                on_build(built, total)
    return points


def crossover(points: list[dict], exact_queries_per_second: float, recalls: list[float]) -> dict[str, dict]:
    """``{str(recall): {backend: {**point, "beats_exact": bool} or None}}``: the fastest setting reaching
    each recall (the earlier on equal rates)."""
    table = {}
    for recall in recalls:
        table[str(recall)] = {}
        for backend in dict.fromkeys(p["backend"] for p in points):
            reaching = [p for p in points if p["recall"] >= recall and p["backend"] == backend]
            best = max(reaching, key=lambda p: p["queries_per_second"], default=None)
            table[str(recall)][backend] = (None if best is None else
                                           {**best, "beats_exact": best["queries_per_second"] > exact_queries_per_second})
    return table


def recall_rows(points: list[dict], backend: str) -> list[dict]:
    """One backend's recalls as plot rows ``{"series": "n_trees=10", "search_k": ..., "recall": ...}``."""
    build_knob, query_knob = BUILD_KNOB[backend], QUERY_KNOB[backend]
    return [{"series": f"{build_knob}={p[build_knob]}", query_knob: p[query_knob], "recall": p["recall"]}
            for p in points if p["backend"] == backend]


def frontier_lines(points: list[dict], exact_queries_per_second: float | None = None) -> dict[str, tuple[list, list]]:
    """``{"annoy, n_trees=10": (recalls, queries per second), ...}``, then ``"exact search"`` if its rate is given."""
    lines: dict[str, tuple[list, list]] = {}
    for p in points:
        knob = BUILD_KNOB[p["backend"]]
        recalls, rates = lines.setdefault(f"{p['backend']}, {knob}={p[knob]}", ([], []))
        recalls.append(p["recall"])
        rates.append(p["queries_per_second"])
    if exact_queries_per_second is not None:
        low = min([1.0, *(p["recall"] for p in points)])
        lines["exact search"] = ([low, 1.0], [exact_queries_per_second] * 2)
    return lines


def describe(backend: str, setting: dict | None) -> str:
    """``annoy n_trees 50 search_k 1000: 2,044/s (slower than exact)``, or ``annoy none``."""
    if setting is None:
        return f"{backend} none"
    build, query = BUILD_KNOB[backend], QUERY_KNOB[backend]
    verdict = "beats exact" if setting["beats_exact"] else "slower than exact"
    return f"{backend} {build} {setting[build]} {query} {setting[query]}: {setting['queries_per_second']:,.0f}/s ({verdict})"
