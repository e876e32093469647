"""The leader lease on SQLite (the store's file lock) and PostgreSQL (an advisory lock):
leader and standby, the epoch, fencing, release, `show controller` and its JSON, and the
old `sync` lock still refusing a second writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from support import postgres
from vmfabric.cli import app as cli_app
from vmfabric.cli.common import controller_lock
from vmfabric.config import parse_config
from vmfabric.core.errors import TransientError
from vmfabric.runtime.lease import Lease, LeaseLost, controllers, fence

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vmfabric.db'}"
        return
    why = postgres.missing()
    if why:
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url


def lease(url: str, name: str) -> Lease:
    return Lease.for_store(url, name, "host-1", 1000 + int(name[-1]), ttl=2.0, poll=0.05)


def test_one_leader_the_other_standby_and_a_new_epoch_on_takeover(store_url: str) -> None:
    a, b = lease(store_url, "ctl-1"), lease(store_url, "ctl-2")
    try:
        assert a.acquire(block=False)
        assert not b.acquire(block=False)
        assert (a.is_leader(), b.is_leader()) == (True, False)
        shown = controllers(store_url)
        assert [(c["id"], c["host"], c["pid"], c["role"]) for c in shown] == [
            ("ctl-1", "host-1", 1001, "leader"),
            ("ctl-2", "host-1", 1002, "standby"),
        ]
        assert all(c["since"].endswith("Z") for c in shown)
        a.check()
        with pytest.raises(LeaseLost, match="ctl-2 is not the leader"):
            b.check()
        first = a.epoch
        a.release()
        assert b.acquire(block=True)
        assert b.epoch == first + 1
        assert [(c["id"], c["role"]) for c in controllers(store_url)] == [("ctl-2", "leader")]
        with pytest.raises(LeaseLost):
            a.check()
    finally:
        a.release()
        b.release()


def test_fence_refuses_a_write_with_a_stale_epoch(store_url: str) -> None:
    a, b = lease(store_url, "ctl-1"), lease(store_url, "ctl-2")
    engine = create_engine(store_url, poolclass=NullPool)
    try:
        assert a.acquire(block=False)
        old = a.epoch
        with engine.begin() as conn:
            fence(conn, old)  # the leader's own epoch passes
        a.release()
        assert b.acquire(block=False)
        stale = rf"write refused: lease epoch {old} is stale"
        with pytest.raises(LeaseLost, match=stale), engine.begin() as conn:
            fence(conn, old)
        with engine.begin() as conn:
            fence(conn, b.epoch)
    finally:
        engine.dispose()
        b.release()


def test_release_ends_a_blocked_acquire(store_url: str) -> None:
    a, b = lease(store_url, "ctl-1"), lease(store_url, "ctl-2")
    got: list[bool] = []
    try:
        assert a.acquire(block=False)
        waiter = threading.Thread(target=lambda: got.append(b.acquire(block=True)))
        waiter.start()
        deadline = time.monotonic() + 30
        while len(controllers(store_url)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        b.release()
        waiter.join(30)
        assert got == [False]
        assert not b.is_leader()
    finally:
        a.release()
        b.release()


def test_role_changes_are_announced(store_url: str) -> None:
    a = lease(store_url, "ctl-1")
    seen: list[dict[str, object]] = []
    a.on_change = seen.append
    try:
        assert a.acquire(block=False)
    finally:
        a.release()
    assert [(s["id"], s["role"], s["epoch"]) for s in seen] == [("ctl-1", "leader", a.epoch)]


def test_a_sqlite_lease_holds_the_lock_sync_takes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vmfabric.db'}"
    config = parse_config({"store": url}, "vmfabric.yaml", tmp_path)
    a = lease(url, "ctl-1")
    try:
        assert a.acquire(block=False)
        assert (tmp_path / "vmfabric.db.lock").read_text().strip() == str(os.getpid())
        busy = pytest.raises(TransientError, match=r"already writes this fabric")
        with busy, controller_lock(config):
            pass
    finally:
        a.release()
    with controller_lock(config):  # free again
        pass


def test_show_controller_prints_the_registry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vmfabric.db'}"
    config = tmp_path / "vmfabric.yaml"
    config.write_text(yaml.safe_dump({"store": url}))
    runner = CliRunner()
    empty = runner.invoke(cli_app, ["show", "controller", "-c", str(config)])
    assert empty.exit_code == 0
    assert "no controller runs on this store" in empty.stdout
    a, b = lease(url, "ctl-1"), lease(url, "ctl-2")
    try:
        a.acquire(block=False)
        b.acquire(block=False)
        table = runner.invoke(cli_app, ["show", "controller", "-c", str(config)])
        shown = runner.invoke(cli_app, ["show", "controller", "--json", "-c", str(config)])
    finally:
        a.release()
        b.release()
    assert table.exit_code == 0
    lines = [line.split() for line in table.stdout.splitlines() if line.startswith("ctl-")]
    assert [line[:4] for line in lines] == [
        ["ctl-1", "host-1", "1001", "leader"],
        ["ctl-2", "host-1", "1002", "standby"],
    ]
    data = json.loads(shown.stdout)
    assert [sorted(d) for d in data] == [["host", "id", "pid", "role", "since"]] * 2
    assert [d["role"] for d in data] == ["leader", "standby"]


def test_a_frozen_postgresql_controller_drops_out_of_the_registry(store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite controllers have no heartbeat: see the killed-process test")
    a = Lease.for_store(store_url, "ctl-1", "host-1", 1, ttl=0.5, poll=0.05)
    try:
        assert a.acquire(block=False)
        assert len(controllers(store_url)) == 1
        a._closing.set()  # the heartbeat stops, as in a frozen process
        deadline = time.monotonic() + 30
        while controllers(store_url) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert controllers(store_url) == []
        with pytest.raises(LeaseLost, match="no heartbeat"):
            a.check()
    finally:
        a.release()


KEEP_LEASE = """
import os, sys, time
from vmfabric.runtime.lease import Lease
lease = Lease.for_store(sys.argv[1], "ctl-9", os.uname().nodename, os.getpid())
print("leader" if lease.acquire(block=False) else "standby", flush=True)
time.sleep(600)
"""


def test_a_killed_sqlite_controller_drops_out_and_frees_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vmfabric.db'}"
    proc = subprocess.Popen([sys.executable, "-c", KEEP_LEASE, url], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    b = lease(url, "ctl-2")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "leader"
        assert [(c["id"], c["role"]) for c in controllers(url)] == [("ctl-9", "leader")]
        assert not b.acquire(block=False)
        proc.kill()
        proc.wait(10)
        assert b.acquire(block=True)
        assert [(c["id"], c["role"]) for c in controllers(url)] == [("ctl-2", "leader")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        b.release()
