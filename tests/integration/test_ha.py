"""Two and three controllers on one real PostgreSQL server (started by the test): one
leader at a time, a standby takes over when the leader is killed with SIGKILL mid-apply or
frozen with SIGSTOP, and the deposed leader's late write is refused by the fencing epoch.

Each controller is ``support/ha_contender.py`` in a process of its own, contending for the
lease as ``vmfabric run`` does and writing fenced rows into ``ha_journal`` while it leads.
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from support import postgres
from support.ha_contender import journal, journal_metadata
from vmfabric.runtime.lease import controllers

pytestmark = pytest.mark.integration
CONTENDER = Path(__file__).resolve().parents[1] / "support" / "ha_contender.py"
T = TypeVar("T")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    why = postgres.missing()
    if why:
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url


@pytest.fixture
def store_url(pg_url: str) -> Iterator[str]:
    """A fresh database on the shared server for each test."""
    name = f"ha_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = pg_url.replace("/postgres?", f"/{name}?")
    journal_metadata.create_all(create_engine(url, poolclass=NullPool))
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@dataclass
class Contender:
    name: str
    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    history: list[str] = field(default_factory=list)  # every line read by wait_line

    def start_reading(self) -> None:
        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.put(line.strip())

        threading.Thread(target=pump, daemon=True).start()

    def wait_line(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name} printed no {prefix!r} in {timeout}s") from None
            self.history.append(line)
            if line.startswith(prefix):
                return line


@pytest.fixture
def spawn(store_url: str) -> Iterator[Callable[..., Contender]]:
    started: list[Contender] = []

    def start(name: str, ttl: float = 2.0, hold: float = 0.05) -> Contender:
        proc = subprocess.Popen(
            [sys.executable, str(CONTENDER), store_url, name, str(ttl), str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        contender = Contender(name, proc)
        contender.start_reading()
        started.append(contender)
        return contender

    yield start
    for c in started:
        if c.proc.poll() is None:
            os.kill(c.proc.pid, signal.SIGCONT)
            c.proc.kill()
        c.proc.wait(10)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class LeaderWatch:
    """Polls `show controller` in a thread; remembers every snapshot's leaders."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.most = 0
        self.seen: list[str] = []  # the leader of each snapshot that had one
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            leaders = [c["id"] for c in controllers(self.url) if c["role"] == "leader"]
            self.most = max(self.most, len(leaders))
            self.seen.extend(leaders[:1])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def registered(url: str, n: int) -> list[dict[str, Any]] | None:
    """`show controller` once it lists ``n`` controllers."""
    found = controllers(url)
    return found if len(found) == n else None


def new_leader(url: str, old: str) -> dict[str, Any] | None:
    found = leader(url)
    return found if found is not None and found["id"] != old else None


def leader(url: str) -> dict[str, Any] | None:
    return next((c for c in controllers(url) if c["role"] == "leader"), None)


def journal_rows(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        return list(conn.execute(select(journal).order_by(journal.c.id)))


def in_transaction(url: str, controller: str) -> bool:
    """Whether ``controller`` is inside its fenced write (pg_sleep in the transaction)."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"
                 " AND state = 'active' AND query LIKE '%pg_sleep%'"),
            {"name": f"contender-{controller}"},
        ).scalar_one()  # fmt: skip
    engine.dispose()
    return bool(found)


def first_write(url: str, controller: str) -> float | None:
    """When ``controller`` first wrote (the database's clock), or None."""
    return next((r.at for r in journal_rows(url) if r.controller == controller), None)


def check_one_writer_at_a_time(rows: list[Any]) -> None:
    """In commit order epochs never go back, and each epoch is one controller's."""
    owners: dict[int, str] = {}
    for before, after in itertools.pairwise(rows):
        assert after.epoch >= before.epoch, f"epoch {after.epoch} wrote after {before.epoch}"
    for row in rows:
        assert owners.setdefault(row.epoch, row.controller) == row.controller


def test_a_standby_takes_over_within_5s_when_the_leader_is_killed_mid_apply(
    store_url: str, spawn: Callable[..., Contender]
) -> None:
    a, b, c = (spawn(name, 2.0, 0.3) for name in ("ctl-a", "ctl-b", "ctl-c"))
    first = wait_for("a leader", lambda: leader(store_url))
    three = wait_for("three controllers", lambda: registered(store_url, 3))
    assert sorted(x["role"] for x in three) == ["leader", "standby", "standby"]
    watch = LeaderWatch(store_url)
    try:
        victim = {p.name: p for p in (a, b, c)}[first["id"]]
        wait_for("the leader's writes", lambda: len(journal_rows(store_url)) >= 3)
        wait_for("the leader inside an apply", lambda: in_transaction(store_url, victim.name))
        written = len(journal_rows(store_url))
        killed_at = time.time()
        victim.proc.kill()  # SIGKILL inside a write transaction (0.3 s long)
        victim.proc.wait(10)
        new = wait_for("a new leader", lambda: new_leader(store_url, first["id"]))
        took_over = wait_for("its first write", lambda: first_write(store_url, new["id"]))
    finally:
        watch.stop()
    assert took_over - killed_at < 5.0, f"takeover took {took_over - killed_at:.2f}s"
    assert watch.most == 1, "two controllers were leader at once"
    assert watch.seen[0] == first["id"]
    assert watch.seen[-1] == new["id"]
    rows = journal_rows(store_url)
    check_one_writer_at_a_time(rows)
    assert {r.controller for r in rows} == {first["id"], new["id"]}
    # the apply it was killed in left nothing: its row never committed
    assert len([r for r in rows if r.controller == first["id"]]) == written
    assert sorted(x["id"] for x in controllers(store_url)) == sorted(
        p.name for p in (a, b, c) if p is not victim
    )


def test_a_frozen_leader_is_deposed_and_its_late_write_refused(
    store_url: str, spawn: Callable[..., Contender]
) -> None:
    a = spawn("ctl-a", 1.5)
    a.wait_line("LEADER")
    b = spawn("ctl-b", 1.5)
    wait_for("the standby", lambda: len(controllers(store_url)) == 2)
    wait_for("the leader's writes", lambda: len(journal_rows(store_url)) >= 3)
    os.kill(a.proc.pid, signal.SIGSTOP)  # frozen, perhaps inside a write transaction
    line = b.wait_line("LEADER")
    new_epoch = int(line.split()[1])
    wait_for("the new leader's writes",
             lambda: any(r.epoch == new_epoch for r in journal_rows(store_url)))  # fmt: skip
    os.kill(a.proc.pid, signal.SIGUSR1)  # a write that had passed its check before the freeze
    os.kill(a.proc.pid, signal.SIGCONT)
    refused = a.wait_line("REFUSED")
    assert int(refused.split()[1]) < new_epoch
    if not any(line.startswith("STANDBY") for line in a.history):
        a.wait_line("STANDBY")  # and it knows it lost (its heartbeat may have told it first)
    rows = journal_rows(store_url)
    check_one_writer_at_a_time(rows)
    first_new = next(i for i, r in enumerate(rows) if r.epoch == new_epoch)
    assert all(r.controller == "ctl-b" for r in rows[first_new:])
    back = wait_for("a back as standby", lambda: registered(store_url, 2))
    roles = {x["id"]: x["role"] for x in back}
    assert roles == {"ctl-b": "leader", "ctl-a": "standby"}
