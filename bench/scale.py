"""Benchmark: exact search, Annoy and hnswlib as the training set grows from 60,000 to 1,200,000 rows.

The rows are the real Fashion-MNIST training images and shifted copies of them
(``fmproto.representation.augment.augment`` with ``shifts=True``: one pixel right, left, down, up, the vacated edge 0):

- 60,000: the training images;
- 300,000: the images and their 4 shifted copies;
- 1,200,000: the first 1.2M rows of the 300,000 and *their* 4 shifted copies (shifts of shifts), i.e.
  the 300,000 followed by their right-, left- and down-shifted copies (the up-shifted ones left out).
  A shift back (right then left) gives the original with one zeroed column, often the original
  itself: the largest set holds near and exact duplicates, as augmented sets do.

Queries: 1,000 test images drawn with seed 0. For each size, each method runs in its own child
process that loads the rows (uint8, from a temporary ``.npy``) and does nothing else; its peak
resident memory is VmHWM (``peak_mb``): interpreter, numpy, the loaded uint8 rows
(940 MB at 1.2M) and every copy the method makes included.

- ``exact``: ``fmproto.search.knn.kneighbors(X_query, X_train, 5, "euclidean")``, timed once: the fit of
  its index (the projection of every training row) and the queries; it uses every core (2 here),
  unlike the ANN queries. It works through the training rows in blocks of 4,096 and the queries in
  chunks whose score block is at most 256 MB, so its peak grows with the rows it holds, not faster. A second, untimed call at k=10 gives the
  reference for the ANN recall.
- ``annoy``: ``fmproto.search.ann.build`` (10 trees, seed 42, one build thread), then ``query`` with
  search_k 2,000 and k=10 (one query thread).
- ``hnswlib``: ``fmproto.search.ann.build`` (M 16, ef_construction 200, seed 42, a build thread
  per core: with one, the 1.2M build did not finish in 5 minutes), then ``query`` with ef 40
  and k=10 (one query thread).

recall@10 is ``fmproto.search.ann.recall_at_k`` against the exact k=10 distances (none when the exact run
did not finish).

On a Dask cluster of this machine (``distributed.LocalCluster``: worker processes of one thread each, started
and warmed up before the clock starts; the ``cluster`` extra), the same calls through ``cluster.ShardedIndex``:

- ``exact-1w``, ``exact-2w``: ``exact`` on 1 and 2 workers (2 shards a worker), checked against the local
  neighbours byte for byte (``same``); ``peak_mb`` is the client's, ``worker_peak_mb`` the largest worker's.
- ``dedup``, ``dedup-1w``, ``dedup-2w``: all pairs within the training rows, as dedup-check finds them
  (``fmproto.data.dedup.near_duplicates``, RMS threshold 10, the stage's default), locally and on 1 and 2
  workers: ``seconds`` for the ``n (n - 1) / 2`` pairs, fit included, and ``pairs_per_second``.

A run whose memory
estimate exceeds 90% of the memory available at its start is not started, and a run past
``--timeout`` seconds (600: 10 minutes) is stopped; both are reported as such in the table.

Prints a Markdown table (and one for the dedup rows) and, as the last line, one JSON list of the rows; saves
a log-log picture of seconds against rows (``--figure``, docs/scale.png). Run from the repository root after
``make data`` (the lean ``core`` lock: Annoy and hnswlib are core; the ``-1w``/``-2w`` methods need the
``cluster`` lock, ``make env-cluster``): ``.venv/bin/python bench/scale.py`` (about 15 minutes on 2 cores for
the default methods); ``--methods exact exact-1w exact-2w --sizes 60000 300000`` for the cluster rows.
"""

import argparse
import contextlib
import functools
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmproto.search import ann, knn
from fmproto.representation import augment
from fmproto.data import dedup, folder
from fmproto.evaluation import plots
from fmproto.pipeline.progress import Progress

# The fetch stage's output (`make data`): the files the pipeline itself reads.
DATA_DIR = Path("data/fashion-mnist")
SIZES = (60_000, 300_000, 1_200_000)
METHODS = ("exact", "annoy", "hnswlib")  # the default; CLUSTER and DEDUP by --methods
CLUSTER = ("exact-1w", "exact-2w")
DEDUP = ("dedup", "dedup-1w", "dedup-2w")
LABELS = {"exact-1w": "exact, 1 worker", "exact-2w": "exact, 2 workers", "dedup-1w": "dedup, 1 worker",
          "dedup-2w": "dedup, 2 workers"}
N_QUERIES, K_EXACT, K_RECALL = 1_000, 5, 10
N_FEATURES = 784
DEDUP_THRESHOLD = 10.0  # params.yaml's dedup.near_threshold


def peak_mb() -> float:
    """This process image's peak resident memory (VmHWM), in MB. Not ``ru_maxrss``: that carries the
    parent's peak over through fork and exec, so a child would report at least the parent's size."""
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024



def training_rows(n: int, images: np.ndarray) -> np.ndarray:
    """The first ``n`` rows of the training images followed by shifted copies, then shifts of those, flattened."""
    rows = images
    while len(rows) < n:
        rows, _ = augment.augment(rows, shifts=True, flip=False)
    return rows[:n].reshape(n, -1)


def estimate_bytes(method: str, n: int) -> int:
    """Rough peak of a child (its workers included): the loaded uint8 rows, the float32 copy each method makes,
    and its own structure; on a cluster the rows again in the scheduler and on the workers."""
    loaded, float_copy = n * N_FEATURES, 4 * n * N_FEATURES
    kind = method.split("-")[0]
    own = {"exact": 1024 * n * 4,  # fmproto.search.knn's float32 score block for 1,024 queries
           "dedup": 1024 * n * 4,
           "annoy": n * (4 * N_FEATURES + 16),  # the stored vectors, plus trees (a few % more)
           "hnswlib": n * (4 * N_FEATURES + 2 * 16 * 4 + 64)}[kind]  # vectors and the bottom layer's links
    cluster = 2 * loaded + 4 * 1024**3 if "-" in method else 0  # scheduler and workers; their query blocks
    return int(1.1 * (loaded + float_copy + own + cluster)) + 200 * 1024**2  # interpreter and libraries


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


# ---------------------------------------------------------------------------------------------------- children


def part(args) -> dict:
    """One method on one size, inside a child process: its figures as a dict."""
    X = np.load(args.rows)
    X_query = np.load(args.queries)
    if args.part in CLUSTER + DEDUP:
        return on_cluster(args.part, X, X_query, args)
    if args.part == "exact":
        start = time.perf_counter()
        found = knn.kneighbors(X_query, X, K_EXACT, metric="euclidean")
        seconds = time.perf_counter() - start
        np.savez(args.out.replace(".npy", "-k5.npz"), distances=found[0], indices=found[1])  # what clusters match
        distances, _ = knn.kneighbors(X_query, X, K_RECALL, metric="euclidean")  # the reference, untimed
        np.save(args.out, distances)
        return {"build_seconds": None, "query_seconds": seconds, "recall": None, "peak_mb": peak_mb()}
    exact = np.load(args.exact) if Path(args.exact).exists() else None  # None: the exact run did not finish
    start = time.perf_counter()
    index = ann.build(X, args.part, seed=42, n_trees=10, m=16, ef_construction=200, threads=os.cpu_count() or 1)
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    distances, _ = ann.query(index, X_query, K_RECALL, search_k=2000, ef=40)
    seconds = time.perf_counter() - start
    return {"build_seconds": build_seconds, "query_seconds": seconds,
            "recall": None if exact is None else ann.recall_at_k(distances, exact), "peak_mb": peak_mb()}


def on_cluster(method: str, X: np.ndarray, X_query: np.ndarray, args) -> dict:
    """``exact`` on a LocalCluster of 1 or 2 worker processes, or ``dedup`` here or there; the clock starts once
    the workers have imported fmproto, as on a cluster that is already running."""
    n_workers = int(method[-2]) if method.endswith("w") else 0
    figures = {"build_seconds": None, "recall": None, "same": None, "worker_peak_mb": None}
    with contextlib.ExitStack() as stack:
        engine = knn.KnnIndex
        if n_workers:
            from distributed import Client, LocalCluster

            from fmproto.search.cluster import ShardedIndex

            cluster = stack.enter_context(LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=":0"))
            client = stack.enter_context(Client(cluster))
            client.run(importlib.import_module, "fmproto.search.cluster")
            engine = functools.partial(ShardedIndex, client)
        start = time.perf_counter()
        if method.startswith("exact"):
            found = knn.kneighbors(X_query, X, K_EXACT, metric="euclidean", engine=engine)
        else:
            pairs = dedup.near_duplicates(X, DEDUP_THRESHOLD, engine=engine)
            found = (pairs.i, pairs.j, pairs.distance)
        figures["query_seconds"] = time.perf_counter() - start
        if n_workers:
            figures["worker_peak_mb"] = max(client.run(peak_mb).values())
    local = Path(args.out.replace(".npy", "-k5.npz" if method.startswith("exact") else "-pairs.npz"))
    if method == "dedup":
        np.savez(local, *found)
    elif local.exists():
        with np.load(local) as reference:
            figures["same"] = all(a.tobytes() == b.tobytes() for a, b in zip(found, reference.values()))
    if method.startswith("dedup"):
        figures["pairs"] = len(found[0])
    return {**figures, "peak_mb": peak_mb()}


def run_part(method: str, n: int, work: Path, timeout: float) -> dict:
    """``part`` in a fresh child process; a row that says why when it was not run, ran out of time or failed."""
    row = {"rows": n, "method": LABELS.get(method, method), "build_seconds": None, "query_seconds": None,
           "queries_per_second": None, "recall": None, "peak_mb": None, "note": ""}
    need, have = estimate_bytes(method, n), available_bytes()
    if need > 0.9 * have:
        row["note"] = f"not run: needs about {need / 1e9:.1f} GB, {have / 1e9:.1f} GB available"
        return row
    exact = work / f"exact-{n}.npy"
    command = [sys.executable, __file__, "--part", method, "--rows", str(work / f"rows-{n}.npy"),
               "--queries", str(work / "queries.npy"), "--exact", str(exact), "--out", str(exact)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        row["note"] = f"stopped after {timeout:.0f} s"
        return row
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        row["note"] = "killed (out of memory?)" if result.returncode == -9 else f"failed: {last[:120]}"
        return row
    figures = json.loads(result.stdout.splitlines()[-1])
    row.update(figures, queries_per_second=N_QUERIES / figures["query_seconds"])
    if method.startswith("dedup"):
        row.update(queries_per_second=None, pairs_per_second=n * (n - 1) / 2 / figures["query_seconds"])
    if method in ("annoy", "hnswlib") and figures["recall"] is None:
        row["note"] = "no recall: the exact run did not finish"
    elif figures.get("same") is False:
        row["note"] = "NOT the local result"
    return row


# ---------------------------------------------------------------------------------------------------- report


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    lines = ["| rows | method | build s | 1,000 queries s | queries/s | recall@10 | peak MB | note |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("worker_peak_mb") is not None:
            r["note"] = f"a worker's peak {r['worker_peak_mb']:,.0f} MB; same as local: {r['same']} {r['note']}".strip()
        if "pairs_per_second" in r:
            continue
        lines.append(f"| {r['rows']:,} | {r['method']} | {_cell(r['build_seconds'], '.1f')} | "
                     f"{_cell(r['query_seconds'], '.2f')} | {_cell(r['queries_per_second'], ',.0f')} | "
                     f"{_cell(r['recall'], '.3f')} | {_cell(r['peak_mb'], ',.0f')} | {r['note']} |")
    return "\n".join(lines)


def dedup_table(rows: list[dict]) -> str:
    lines = ["| rows | where | seconds | pairs/s | pairs found | peak MB | note |",
             "|---:|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if "pairs_per_second" in r:
            lines.append(f"| {r['rows']:,} | {r['method']} | {_cell(r['query_seconds'], '.1f')} | "
                         f"{_cell(r['pairs_per_second'], '.3g')} | {_cell(r.get('pairs'), ',')} | "
                         f"{_cell(r['peak_mb'], ',.0f')} | {r['note']} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def figure(rows: list[dict], path: str) -> None:
    series = {}
    for name, method, key in [("exact: fit + 1,000 queries (k=5, BLAS threads)", "exact", "query_seconds"),
                              ("exact on 2 Dask workers of this machine", "exact, 2 workers", "query_seconds"),
                              ("annoy: build (10 trees)", "annoy", "build_seconds"),
                              ("annoy: 1,000 queries (search_k 2000)", "annoy", "query_seconds"),
                              ("hnswlib: build (M 16, a thread a core)", "hnswlib", "build_seconds"),
                              ("hnswlib: 1,000 queries (ef 40)", "hnswlib", "query_seconds")]:
        done = [(r["rows"], r[key]) for r in rows if r["method"] == method and r[key] is not None]
        if done:
            series[name] = tuple(np.array(v, dtype=float) for v in zip(*done))
    if not series:  # the dedup rows alone: nothing drawn
        return
    fig = plots.lines(series, xlabel="training rows (Fashion-MNIST and shifted copies)", ylabel="seconds",
                      title="Exact search and ANN against training rows (one query thread for ANN)", loglog=True)
    fig.axes[0].tick_params(axis="y", which="minor", labelleft=False)  # seconds span 3 decades: label the powers of 10
    plots.save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="training rows (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds a run may take (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS + CLUSTER + DEDUP,
                        help="methods to run, each at every size (default: %(default)s)")
    parser.add_argument("--figure", default="docs/scale.png")
    parser.add_argument("--part", choices=METHODS + CLUSTER + DEDUP, help=argparse.SUPPRESS)
    for hidden in ("--rows", "--queries", "--exact", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:  # inside a child process
        print(json.dumps(part(args)))
        return

    if not DATA_DIR.is_dir():
        sys.exit(f"bench: {DATA_DIR} is missing; run `make data` (the fetch stage) first")
    splits = folder.read_dataset(DATA_DIR, 10)
    images, test = splits["train"][0], splits["test"][0]
    pick = np.sort(np.random.default_rng(0).choice(len(test), N_QUERIES, replace=False))
    rows = []
    with tempfile.TemporaryDirectory(prefix="fmproto-scale-") as tmp:
        work = Path(tmp)
        np.save(work / "queries.npy", test[pick].reshape(N_QUERIES, -1))
        methods = sorted(args.methods, key=(METHODS + CLUSTER + DEDUP).index)
        with Progress("scale: exact search and ANN", len(args.sizes) * len(methods), "runs") as bar:
            for n in sorted(args.sizes):
                np.save(work / f"rows-{n}.npy", training_rows(n, images))
                for method in methods:  # exact first: it writes the reference of the ANN and cluster runs
                    bar.advance(0, note=f"{n:,} rows, {method}")  # what the bar shows while it runs
                    rows.append(run_part(method, n, work, args.timeout))
                    bar.line(f"{n:,} {method}: {rows[-1]['note'] or 'done'}")
                    bar.advance()
                (work / f"rows-{n}.npy").unlink()
    print(table(rows))
    if dedups := dedup_table(rows):
        print(dedups)
    figure(rows, args.figure)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
