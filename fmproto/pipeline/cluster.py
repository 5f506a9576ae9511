"""Where the stages' exact search runs: here, or on the Dask cluster whose scheduler ``DASK_SCHEDULER_ADDRESS``
names (the variable ``distributed.Client()`` itself reads).

It is neither a param nor a dep: ``cluster.ShardedIndex`` returns the bytes ``KnnIndex`` returns, so setting,
changing or unsetting it reruns no stage and changes no file. Unset, Dask is not even imported (it is the
optional ``cluster`` extra)."""

import gc
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial

from fmproto.pipeline.guard import one_line
from fmproto.search.cluster import ShardedIndex
from fmproto.search.engine import KnnIndex

ADDRESS = "DASK_SCHEDULER_ADDRESS"
CONNECT_SECONDS = 5  # to reach the scheduler, and for it to have a worker: an address nobody answers at fails fast


@contextmanager
def exact_search(environ: Mapping[str, str] = os.environ) -> Iterator[Callable[[int], KnnIndex | ShardedIndex]]:
    """The stages' ``engine(components)``: ``KnnIndex``, or with ``DASK_SCHEDULER_ADDRESS`` set in ``environ`` a
    ``ShardedIndex`` on a client connected for the block. ``ValueError`` (one line naming the address) when
    Dask is not installed, or no scheduler with a worker answers there within ``CONNECT_SECONDS``."""
    address = environ.get(ADDRESS, "").strip()
    if not address:
        yield KnnIndex
        return
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(f"{ADDRESS} is {address!r}, but Dask is not installed: make env-cluster, or pip install "
                         f"'fmproto[cluster]'") from None
    try:
        client, why = Client(address, timeout=CONNECT_SECONDS, set_as_default=False), None
    except Exception as err:  # nothing answers (OSError), a malformed address, or not a scheduler (any error)
        why = one_line(err) or type(err).__name__
    if why is not None:
        # The half-made Client lives on in reference cycles, and the collector would close it at any later
        # allocation: inside another Client's or LocalCluster's start, that close waits for the lock the start
        # holds (distributed's LoopRunner shares one), for good. Closed here, it holds nothing.
        gc.collect()
        raise ValueError(f"{ADDRESS} is {address!r}, but no Dask scheduler answered there within {CONNECT_SECONDS} s "
                         f"({why})")
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_SECONDS)
        except TimeoutError:
            raise ValueError(f"{ADDRESS} is {address!r}: the Dask scheduler there has no worker (none joined "
                             f"within {CONNECT_SECONDS} s)") from None
        yield partial(ShardedIndex, client)
