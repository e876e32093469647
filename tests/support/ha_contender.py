"""A controller stand-in for the HA tests and benchmark: ``python ha_contender.py URL ID
TTL [HOLD]``. It contends for the lease of the store at URL the way ``vmfabric run`` does,
and while it leads, "applies" in a loop: ``check()``, then one fenced write transaction
into the ``ha_journal`` table that stays open HOLD seconds (default 0.05, so a kill lands
mid-apply most of the time; its connection is named ``contender-ID`` in
``pg_stat_activity``). On SIGUSR1 it makes one write with its epoch without ``check()``
first: a late write of a leader that was frozen past its check. It prints one line per
role change and per late write, flushed: ``LEADER <epoch>``, ``STANDBY <epoch>``, ``LOST
<why>``, ``WROTE <epoch>``, ``REFUSED <epoch>``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, text
from sqlalchemy.pool import NullPool

from vmfabric.runtime.lease import Lease, LeaseLost, fence

journal_metadata = MetaData()
journal = Table(
    "ha_journal",
    journal_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("epoch", Integer, nullable=False),
    Column("controller", String(64), nullable=False),
    Column("at", Float, nullable=False),
)
late = False


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def write(engine: Any, epoch: int, who: str, hold: float) -> None:
    """One fenced "apply": fence, a row, a pause inside the transaction, commit."""
    with engine.begin() as conn:
        fence(conn, epoch)
        now = text("extract(epoch FROM clock_timestamp())")
        conn.execute(journal.insert().values(epoch=epoch, controller=who, at=now))
        if hold:
            conn.execute(text("SELECT pg_sleep(:s)"), {"s": hold})


def on_usr1(_sig: int, _frame: object) -> None:
    global late  # a signal handler's flag
    late = True


def late_write(engine: Any, lease: Lease, who: str) -> None:
    global late
    late = False
    try:
        write(engine, lease.epoch, who, 0.0)
        say(f"WROTE {lease.epoch}")
    except LeaseLost:
        say(f"REFUSED {lease.epoch}")


def lead(engine: Any, lease: Lease, who: str, hold: float) -> None:
    try:
        lease.check()
        write(engine, lease.epoch, who, hold)
    except LeaseLost as err:
        say(f"LOST {err}")
    except Exception as err:  # the store or our connection went away: a loss too
        say(f"LOST {type(err).__name__}")


def main() -> None:
    url, who, ttl = sys.argv[1], sys.argv[2], float(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 0.05
    signal.signal(signal.SIGUSR1, on_usr1)
    named = {"application_name": f"contender-{who}"}
    engine = create_engine(url, poolclass=NullPool, connect_args=named)
    journal_metadata.create_all(engine, checkfirst=True)
    lease = Lease.for_store(url, who, socket.gethostname(), os.getpid(), ttl=ttl, poll=0.1)
    lease.on_change = lambda info: say(f"{info['role'].upper()} {info['epoch']}")
    while True:
        if late:
            late_write(engine, lease, who)
        if lease.is_leader():
            lead(engine, lease, who, hold)
            continue
        if not lease.acquire(block=False):
            time.sleep(0.1)


if __name__ == "__main__":
    main()
