"""cluster.exact_search: KnnIndex without DASK_SCHEDULER_ADDRESS (Dask not imported), else a ShardedIndex on a
client; an address where no scheduler (or no worker) answers is one line naming it, within seconds."""

import gc
import socket
import subprocess
import sys
import time

import pytest

from fmproto.pipeline import cluster
from fmproto.search.engine import KnnIndex

NO_DASK = """
import sys
from fmproto.pipeline import cluster
with cluster.exact_search({}) as engine:
    print(engine.__name__)
print(sorted(name for name in sys.modules if name.split(".")[0] in ("dask", "distributed")))
"""


def test_without_the_address_it_is_knnindex_and_dask_is_not_imported():
    out = subprocess.run([sys.executable, "-c", NO_DASK], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["KnnIndex", "[]"]
    with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": " "}) as engine:  # empty counts as unset
        assert engine is KnnIndex


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once closed: connecting is refused


def test_an_unreachable_scheduler_is_one_line_naming_it(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ValueError, match=f"^DASK_SCHEDULER_ADDRESS is '{address}', but no Dask scheduler answered "
                                         f"there within {cluster.CONNECT_SECONDS} s") as info:
        with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": address}):
            pass
    assert "\n" not in str(info.value)
    assert time.monotonic() - start < cluster.CONNECT_SECONDS + 4


def test_a_malformed_address_is_one_line():
    with pytest.raises(ValueError, match="^DASK_SCHEDULER_ADDRESS is 'nonsense', but no Dask scheduler answered"):
        with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": "nonsense"}):
            pass


def test_a_failed_connection_leaves_no_client_for_the_collector(monkeypatch):
    """A Client that could not connect lives on in reference cycles; the collector closing it during a later
    Client's or LocalCluster's start deadlocked on distributed's shared loop lock (the test suite hung there,
    now and then). exact_search closes it before raising: with the collector off, none is left."""
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    gc.disable()
    try:
        for address in (f"tcp://127.0.0.1:{_closed_port()}", "nonsense"):
            with pytest.raises(ValueError, match="but no Dask scheduler answered there"):
                with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": address}):
                    pass
        assert [o for o in gc.get_objects() if isinstance(o, distributed.Client)] == []
    finally:
        gc.enable()


def test_a_scheduler_without_workers_is_one_line(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        with pytest.raises(ValueError, match=f"^DASK_SCHEDULER_ADDRESS is '{empty.scheduler_address}': the Dask "
                                             f"scheduler there has no worker"):
            with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": empty.scheduler_address}):
                pass


def test_without_dask_installed_it_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(ValueError, match="but Dask is not installed: make env-cluster"):
        with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786"}):
            pass


def test_with_the_address_it_is_a_sharded_index_on_that_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as one:
        with cluster.exact_search({"DASK_SCHEDULER_ADDRESS": one.scheduler_address}) as engine:
            index = engine(8)
            assert type(index).__name__ == "ShardedIndex" and index.components == 8
            assert index.client.scheduler.address == one.scheduler_address
        assert index.client.status == "closed"  # connected for the block only
