"""Two `vmfabric run` processes on one PostgreSQL store: one leads and applies, the other
stands by with its inventory warm and applies nothing; `kill -9` of the leader hands the
lead to the standby, which serves the next change. Never two leaders at once.

The switch is the fake driver sharing its state through a file, so both processes see the
same switch; the store is a real PostgreSQL server the test starts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from support import postgres
from support.controller import wait_for
from support.setup import inventory, rewrite
from vmfabric.config import parse_switch
from vmfabric.runtime.lease import controllers
from vmfabric.store import StoreError
from vmfabric.targets.switchport.fake import FakeDriver

pytestmark = pytest.mark.integration
PGS = {"web": 110, "app": 120}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    why = postgres.missing()
    if why:
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url


@pytest.fixture
def store_url(pg_url: str) -> Iterator[str]:
    name = f"harun_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield pg_url.replace("/postgres?", f"/{name}?")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


def write_config(tmp: Path, store_url: str) -> tuple[Path, dict[str, Any]]:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(inventory([("web-01", "esx1", "web")], PGS)))
    switch = {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"],
              "state_file": str(tmp / "leaf1.json")}  # fmt: skip
    cfg = {
        "store": store_url,
        "engine": {"prune_delay": "1s", "coalesce": "10ms", "retry_max": "1s"},
        "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        "switches": [switch],
        "links": [{"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"},
                  {"host": "esx2", "nic": "vmnic0", "switch": "leaf1", "port": "e2"}],
    }  # fmt: skip
    (tmp / "vmfabric.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "vmfabric.yaml", switch


def start(cfg: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "vmfabric", "run", "-c", str(cfg)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def leaders(url: str) -> list[dict[str, Any]]:
    return [c for c in controllers(url) if c["role"] == "leader"]


def test_kill_9_of_the_leader_hands_the_lead_to_the_standby(store_url: str, tmp_path: Path) -> None:
    cfg, switch = write_config(tmp_path, store_url)
    fake = FakeDriver(parse_switch(switch))
    procs = [start(cfg)]
    seen_two = threading.Event()
    stop_watch = threading.Event()

    def watch() -> None:  # never two leaders at once, checked throughout
        while not stop_watch.is_set():
            with contextlib.suppress(StoreError):  # a connection ended by the takeover
                if len(leaders(store_url)) > 1:
                    seen_two.set()
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        wait_for(lambda: 110 in fake.read_ports()["e1"].vlans, 30, "the first leader applies")
        procs.append(start(cfg))
        wait_for(lambda: len(controllers(store_url)) == 2, 30, "the standby registered")
        watcher.start()
        (first,) = leaders(store_url)
        assert first["pid"] == procs[0].pid
        argv = [sys.executable, "-m", "vmfabric", "sync", "-c", str(cfg)]
        refused = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 1 and "leads this fabric" in refused.stderr
        rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx2", "web")], PGS))
        wait_for(lambda: 110 in fake.read_ports()["e2"].vlans, 20, "the leader serves a move")
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(10)
        killed = time.monotonic()
        wait_for(lambda: [c["pid"] for c in leaders(store_url)] == [procs[1].pid], 15,
                 "the standby leads")  # fmt: skip
        took = time.monotonic() - killed
        rewrite(tmp_path / "inv.yaml", inventory([("web-01", "esx1", "web"),
                                                   ("app-01", "esx2", "app")], PGS))  # fmt: skip
        wait_for(lambda: 120 in fake.read_ports()["e2"].vlans, 20, "the new leader applies")
        wait_for(lambda: 110 in fake.read_ports()["e1"].vlans, 20, "and follows the move back")
    finally:
        stop_watch.set()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)
    assert not seen_two.is_set(), "two leaders at once"
    assert took < 5.0, f"takeover took {took:.1f}s"
