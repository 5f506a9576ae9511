"""Benchmark: fmproto's exact kNN against scikit-learn's brute force, faiss and the bare matrix product.

All 60,000 Fashion-MNIST training images against the 10,000 test images, k=5, euclidean,
uniform votes. Five timings, each the fastest of ``--repeats`` runs (3) after one warm-up call on
500 test images (threads started, memory touched), as the floor gets its warm-up block:

- ``fmproto``: ``fmproto.search.knn.predict`` on the uint8 images, in a child process that does nothing
  else: ``kneighbors`` fits a ``KnnIndex`` (the projection onto 128 principal components) and
  queries it, both timed. Its peak resident memory is that process's
  VmHWM (``peak_mb``) after the search: the whole process, interpreter, numpy and
  the loaded images included.
- ``sklearn``: ``KNeighborsClassifier(n_neighbors=5, algorithm="brute")`` fit + predict on the
  same uint8 rows fmproto gets, default ``n_jobs``, in a second child process, its peak measured
  the same way. scikit-learn converts integer input to float64 and searches in float64: like
  fmproto, it returns exact distances on 0..255 pixels.
- ``sklearn_float32``: the same on rows converted to float32 first, scikit-learn's fastest path
  (float32 matrix products, as fmproto's screening, but with no exact re-ranking).
- ``faiss``: ``faiss.IndexFlatL2`` (exact search by float32 matrix products, OpenMP on every core)
  built on the float32 rows (converted before timing) and searched for k=5, then the same votes
  (``fmproto.search.knn.vote``), in a third child process. faiss-cpu is a test and bench extra only.
- ``gemm``: the floor, ``(10000, 784) @ (784, 60000)`` in float32, computed in blocks of 1,024 rows
  into one reused output block, so neither page faults nor a 2.4 GB result count against it.

Prints a table and, as the last line, one JSON object: seconds, ``ratio_vs_gemm``,
``ratio_vs_faiss``, ``ratio_vs_sklearn``, ``ratio_vs_sklearn_float32``, ``peak_mb``,
``same_predictions`` (fmproto against both scikit-learn runs and faiss), ``accuracy``. With ``--manhattan N`` it
also times ``kneighbors`` with the manhattan metric on the first N test images, and reports
``manhattan_factor``: its seconds a query over fmproto's euclidean seconds a query.

Its peers are in the ``test`` lock: run from the repository root after ``make env-test data``:
``.venv/bin/python bench/knn.py``.
"""

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmproto.data import folder
from fmproto.search import knn

# The fetch stage's output (`make data`): the files the pipeline itself reads.
DATA_DIR = Path("data/fashion-mnist")
WARM_UP = 500  # test images searched once before each timed run


def peak_mb() -> float:
    """This process image's peak resident memory (VmHWM), in MB. Not ``ru_maxrss``: that carries the
    parent's peak over through fork and exec, so a child would report at least the parent's size."""
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024



def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not DATA_DIR.is_dir():
        sys.exit(f"bench: {DATA_DIR} is missing; run `make data` (the fetch stage) first")
    splits = folder.read_dataset(DATA_DIR, 10)
    return (*splits["train"], *splits["test"])


def fastest(run, X_test: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    """``run(X)`` once on the warm-up images, then ``repeats`` times on all: the fastest seconds and the result."""
    run(X_test[:WARM_UP])
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run(X_test)
        seconds.append(time.perf_counter() - start)
    return min(seconds), result


def finish_part(args, seconds: float, predicted: np.ndarray) -> dict:
    np.save(args.out, predicted)
    return {"seconds": seconds, "peak_mb": peak_mb()}


def part_fmproto(args) -> dict:
    X_train, y_train, X_test, y_test = load()
    run = lambda X: knn.predict(X, X_train, y_train, 10, k=5, chunk=args.chunk)  # noqa: E731
    return finish_part(args, *fastest(run, X_test, args.repeats))


def part_sklearn(args) -> dict:
    from sklearn.neighbors import KNeighborsClassifier

    X_train, y_train, X_test, y_test = load()
    dtype = np.float32 if args.part == "sklearn_float32" else np.uint8
    X_train, X_test = (images.reshape(len(images), -1).astype(dtype) for images in (X_train, X_test))
    model = KNeighborsClassifier(n_neighbors=5, algorithm="brute")
    run = lambda X: model.fit(X_train, y_train).predict(X)  # noqa: E731
    return finish_part(args, *fastest(run, X_test, args.repeats))


def part_faiss(args) -> dict:
    import faiss

    X_train, y_train, X_test, y_test = load()
    X_train, X_test = (images.reshape(len(images), -1).astype(np.float32) for images in (X_train, X_test))

    def run(X):
        index = faiss.IndexFlatL2(X_train.shape[1])
        index.add(X_train)
        distances, indices = index.search(X, 5)
        return knn.vote(y_train[indices], distances, 10)

    return finish_part(args, *fastest(run, X_test, args.repeats))


def run_part(name: str, args, directory: Path) -> tuple[float, np.ndarray, float]:
    """Run one part in a fresh child process: its seconds, predictions and peak resident MB."""
    out = directory / f"{name}.npy"
    command = [sys.executable, __file__, "--part", name, "--out", str(out), "--chunk", str(args.chunk),
               "--repeats", str(args.repeats)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    report = json.loads(result.stdout.splitlines()[-1])
    return report["seconds"], np.load(out), report["peak_mb"]


def gemm_floor(X_train: np.ndarray, X_test: np.ndarray, repeats: int, block: int = 1024) -> float:
    A = X_test.reshape(len(X_test), -1).astype(np.float32)
    B = X_train.reshape(len(X_train), -1).astype(np.float32)
    out = np.empty((block, len(B)), dtype=np.float32)
    np.matmul(A[:block], B.T, out=out)  # warm-up: threads started, the output block touched
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(A), block):
            rows = A[first : first + block]
            np.matmul(rows, B.T, out=out[: len(rows)])
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def manhattan_seconds(X_train: np.ndarray, X_test: np.ndarray, n_queries: int) -> float:
    """Seconds for manhattan ``kneighbors`` (k=5) of the first ``n_queries`` test images."""
    start = time.perf_counter()
    knn.kneighbors(X_test[:n_queries], X_train, 5, metric="manhattan")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=1024, help="query rows a chunk in fmproto.search.knn")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each part; the fastest counts")
    parser.add_argument("--manhattan", type=int, default=0, metavar="N", help="also time manhattan on N queries")
    parser.add_argument("--part", choices=["fmproto", "sklearn", "sklearn_float32", "faiss"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # inside a child process
        part = {"fmproto": part_fmproto, "faiss": part_faiss}.get(args.part, part_sklearn)
        print(json.dumps(part(args)))
        return

    missing = [name for name in ("sklearn", "faiss") if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(f"bench/knn.py: {' and '.join(missing)} not installed; `make env-test` installs the peers")
    X_train, y_train, X_test, y_test = load()
    with tempfile.TemporaryDirectory() as tmp:
        fm_seconds, fm_pred, fm_peak = run_part("fmproto", args, Path(tmp))
        sk_seconds, sk_pred, sk_peak = run_part("sklearn", args, Path(tmp))
        sk32_seconds, sk32_pred, sk32_peak = run_part("sklearn_float32", args, Path(tmp))
        fa_seconds, fa_pred, fa_peak = run_part("faiss", args, Path(tmp))
    gemm_seconds = gemm_floor(X_train, X_test, args.repeats)
    fm_acc, sk_acc = float(np.mean(fm_pred == y_test)), float(np.mean(sk_pred == y_test))
    sk32_acc, fa_acc = float(np.mean(sk32_pred == y_test)), float(np.mean(fa_pred == y_test))

    print(f"kNN k=5 euclidean, {len(y_train):,} training x {len(y_test):,} test images, chunk {args.chunk}, "
          f"fastest of {args.repeats}")
    print(f"{'':24}{'seconds':>9}{'accuracy':>10}{'peak MB':>9}")
    print(f"{'fmproto knn.predict':24}{fm_seconds:9.2f}{fm_acc:10.4f}{fm_peak:9.0f}")
    print(f"{'sklearn brute (uint8)':24}{sk_seconds:9.2f}{sk_acc:10.4f}{sk_peak:9.0f}")
    print(f"{'sklearn brute float32':24}{sk32_seconds:9.2f}{sk32_acc:10.4f}{sk32_peak:9.0f}")
    print(f"{'faiss IndexFlatL2':24}{fa_seconds:9.2f}{fa_acc:10.4f}{fa_peak:9.0f}")
    print(f"{'float32 gemm (floor)':24}{gemm_seconds:9.2f}{'-':>10}{'-':>9}")
    summary = {
        "fmproto_seconds": round(fm_seconds, 3),
        "sklearn_seconds": round(sk_seconds, 3),
        "sklearn_float32_seconds": round(sk32_seconds, 3),
        "faiss_seconds": round(fa_seconds, 3),
        "gemm_seconds": round(gemm_seconds, 3),
        "ratio_vs_gemm": round(fm_seconds / gemm_seconds, 3),
        "ratio_vs_faiss": round(fm_seconds / fa_seconds, 3),
        "ratio_vs_sklearn": round(fm_seconds / sk_seconds, 3),
        "ratio_vs_sklearn_float32": round(fm_seconds / sk32_seconds, 3),
        "peak_mb": round(fm_peak, 1),
        "peak_mb_method": "VmHWM of a child process that only loads the data and runs fmproto",
        "same_predictions": bool(np.array_equal(fm_pred, sk_pred) and np.array_equal(fm_pred, sk32_pred)
                                 and np.array_equal(fm_pred, fa_pred)),
        "accuracy": round(fm_acc, 4),
        "chunk": args.chunk,
        "repeats": args.repeats,
    }
    if args.manhattan:
        per_query = manhattan_seconds(X_train, X_test, args.manhattan) / args.manhattan
        factor = per_query / (fm_seconds / len(y_test))
        print(f"manhattan: {per_query * 1000:.1f} ms a query ({args.manhattan} queries), "
              f"{factor:.0f}x fmproto's euclidean {fm_seconds / len(y_test) * 1000:.2f} ms")
        summary["manhattan_factor"] = round(factor, 1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
