"""The leader lease: which one of the controllers running on a store applies changes.

Every ``vmfabric run`` on a store is the **leader** (it applies) or a **standby** (it keeps
its sources connected and applies nothing). The lease decides which, and fences the
writes of a leader that lost it:

- **PostgreSQL**: a session advisory lock, held by one dedicated connection per
  controller. ``kill -9`` closes that connection and frees the lock at once; a standby
  polling every ``poll`` seconds takes over. A leader that stops renewing its heartbeat
  (frozen, partitioned) for ``ttl`` seconds is deposed: a standby terminates its lease
  connection (``pg_terminate_backend``; controllers must connect as one role, or a role
  granted ``pg_signal_backend``) and takes the lock.
- **SQLite**: the store's file lock (``<store>.lock``, with the holder's PID in it), as
  before: one machine, so a frozen leader keeps it.
- **Fencing**: taking the lease increments the store's lease epoch (table
  ``leader_lease``). Every write transaction of the leader calls ``fence(conn, epoch)``,
  which reads the epoch ``FOR SHARE``: a write of a deposed leader finds a newer epoch and
  is refused (``LeaseLost``), and a new leader's increment waits for (or, after taking the
  lock, terminates) the old leader's transactions still in flight, so no late write
  commits after the takeover.
- **Registry**: every controller keeps a row in ``controllers`` (id, host, pid, role,
  since). On PostgreSQL it carries a heartbeat every ``ttl / 3`` seconds and ``show
  controller`` lists the rows whose heartbeat is fresh (times by the database server's
  clock, so controllers on hosts with skewed clocks agree). On SQLite (one machine) a row
  counts while its process lives: nothing writes the store every second.

The two tables belong to this module (created on first use, with the other tables of the
store), not to the store's schema.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    exc,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from vmfabric.core.errors import TransientError
from vmfabric.store import db

log = logging.getLogger("vmfabric.lease")
Role = Literal["leader", "standby"]
LEADER: Role = "leader"
DEFAULT_TTL = 3.0
DEFAULT_POLL = 0.25
_LOCK_KEYS = (0x766D6662, 1)  # "vmfb", 1: the advisory lock of the leader lease
_SCHEMA_KEYS = (0x766D6662, 2)  # serialises creating the lease tables
_SERVER_NOW = text("SELECT extract(epoch FROM clock_timestamp())")
_FORGET_AFTER = 60.0  # seconds: rows of controllers silent this long are deleted
_NO_EXPIRY = 10 * 365 * 86400.0  # SQLite rows: alive while their process is

lease_metadata = MetaData()
controllers_table = Table(
    "controllers",
    lease_metadata,
    Column("id", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    Column("since", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("backend", Integer, nullable=False, default=0),  # PostgreSQL lease backend pid
)
lease_table = Table(
    "leader_lease",
    lease_metadata,
    Column("name", String(32), primary_key=True),
    Column("epoch", Integer, nullable=False),
    Column("holder", String(255), nullable=False),
    Column("since", Float, nullable=False),
)


class LeaseLost(TransientError):  # noqa: N818 (the name the runtime contract uses)
    """This controller is not (or no longer) the leader: apply and write nothing."""


@dataclass(frozen=True)
class Identity:
    id: str
    host: str
    pid: int


def fence(conn: Connection, epoch: int) -> None:
    """Refuse the write transaction ``conn`` is in unless ``epoch`` is still the lease's
    epoch. Call it inside every write transaction of the leader (any statement order); on
    PostgreSQL it holds the lease row ``FOR SHARE`` until the transaction ends."""
    stmt = select(lease_table.c.epoch).where(lease_table.c.name == LEADER)
    if conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update(read=True)
    current = conn.execute(stmt).scalar_one_or_none()
    if current != epoch:
        raise LeaseLost(f"write refused: lease epoch {epoch} is stale (now {current})")


def _iso(when: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{stamp}Z"


def controller_json(row: Any) -> dict[str, Any]:
    """One ``show controller`` entry: id, host, pid, role, since (ISO 8601 UTC)."""
    return {
        "id": row.id,
        "host": row.host,
        "pid": int(row.pid),
        "role": row.role,
        "since": _iso(float(row.since)),
    }


def read_controllers(conn: Connection) -> list[dict[str, Any]]:
    """The controllers with a fresh heartbeat, leader first, then by id."""
    if not inspect(conn).has_table(controllers_table.name):
        return []
    now = _db_now(conn)
    stmt = select(controllers_table).where(controllers_table.c.expires >= now)
    rows = [r for r in conn.execute(stmt) if conn.dialect.name != "sqlite" or _alive(r)]
    rows.sort(key=lambda r: (r.role != LEADER, r.id))
    return [controller_json(r) for r in rows]


def _alive(row: Any) -> bool:
    """SQLite (one machine): a controller is alive while its process is. A row of another
    host (a copied store file) cannot be checked: it stays."""
    if row.host != socket.gethostname():
        return True
    try:
        status = Path(f"/proc/{int(row.pid)}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def controllers(store_url: str) -> list[dict[str, Any]]:
    """``show controller``: every controller running on the store at ``store_url``."""
    parsed = db.parse_url(store_url)
    where = db.describe(parsed)
    path = db.sqlite_file(parsed)
    if path is not None and not os.path.exists(path):
        return []  # no store: no controller ever ran (show never creates it)
    engine = db.open_engine(parsed, 5.0, readonly=True)  # show never writes the store
    try:
        with db.transaction(engine, where, write=False, path=db.sqlite_file(parsed)) as conn:
            return read_controllers(conn)
    finally:
        engine.dispose()


def _db_now(conn: Connection) -> float:
    """Now by the database server's clock (PostgreSQL), else by this machine's."""
    if conn.dialect.name == "postgresql":
        return float(
            conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
        )
    return time.time()


def _create_tables(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), _keys(_SCHEMA_KEYS))
    lease_metadata.create_all(conn, checkfirst=True)


def _keys(keys: tuple[int, int]) -> dict[str, int]:
    return {"a": keys[0], "b": keys[1]}


class Lease:
    """This controller's claim on the leader role of one store (see the module docstring).

    ``acquire`` registers the controller and tries for the lease; ``check`` before every
    apply; ``epoch`` goes with every write (``fence``); ``release`` on the way out.
    """

    def __init__(
        self, lock: _Lock, identity: Identity, ttl: float = DEFAULT_TTL, poll: float = DEFAULT_POLL
    ) -> None:
        self._lock = lock
        self.identity = identity
        self.ttl = ttl
        self.poll = poll
        self.epoch = 0
        self._role: Role = "standby"
        self._since = 0.0
        self._registered = False
        self._renewed = time.monotonic()
        self._mutex = threading.RLock()
        self._closing = threading.Event()
        self._beater: threading.Thread | None = None
        self.on_change: Callable[[dict[str, Any]], None] | None = None
        """Called with ``describe()`` when this controller becomes leader or loses the
        lease (from the thread that noticed: keep it quick), e.g. to publish the bus's
        ``controller`` event."""

    @classmethod
    def for_store(
        cls,
        store_url: str,
        controller_id: str,
        host: str,
        pid: int,
        *,
        ttl: float = DEFAULT_TTL,
        poll: float = DEFAULT_POLL,
    ) -> Lease:
        """The lease of the store at ``store_url``: an advisory lock on PostgreSQL, the
        store's file lock on SQLite."""
        parsed = db.parse_url(store_url)
        lock: _Lock
        if parsed.get_backend_name() == "sqlite":
            lock = _FileLock(parsed)
        else:
            lock = _AdvisoryLock(parsed, ttl)
        return cls(lock, Identity(controller_id, host, pid), ttl, poll)

    # ---- the role ------------------------------------------------------------------------

    def acquire(self, block: bool) -> bool:
        """Become the leader if the lease is free; with ``block``, wait until it is (or
        until ``release``). Registers the controller (as standby meanwhile) and keeps its
        heartbeat. Returns whether this controller is the leader."""
        self._closing.clear()
        self._start_heartbeat()
        while True:
            with self._mutex:
                if self._try_lead():
                    return True
            if not block or self._closing.wait(self.poll):
                return False

    def is_leader(self) -> bool:
        with self._mutex:
            return self._role == LEADER

    @property
    def role(self) -> Role:
        return self._role

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this controller still holds the lease: call it
        before every apply. (Writes are fenced all the same, for a loss right after.)"""
        with self._mutex:
            if self._role != LEADER:
                raise LeaseLost(f"controller {self.identity.id} is not the leader")
            silent = time.monotonic() - self._renewed
            if self._lock.beats and silent > self.ttl:
                self._lose(f"no heartbeat for {silent:.1f}s (ttl {self.ttl:g}s)")
            try:
                self._lock.verify(self.epoch)
            except (LeaseLost, db.StoreError) as err:
                self._lose(str(err))

    def describe(self) -> dict[str, Any]:
        """This controller as ``show controller`` lists it, plus its epoch (the data of
        the bus's ``controller`` event)."""
        ident = self.identity
        return {
            "id": ident.id,
            "host": ident.host,
            "pid": ident.pid,
            "role": self._role,
            "since": _iso(self._since or time.time()),
            "epoch": self.epoch,
        }

    def release(self) -> None:
        """Give the lease up (if held), leave the registry, stop the heartbeat; a
        blocked ``acquire`` returns False."""
        self._closing.set()
        if self._beater is not None:
            self._beater.join(timeout=self.ttl)
        with self._mutex:
            with contextlib.suppress(db.StoreError), self._lock.transaction() as conn:
                conn.execute(
                    delete(controllers_table).where(controllers_table.c.id == self.identity.id)
                )
            self._role, self._registered = "standby", False
            self._lock.close()

    # ---- internals -----------------------------------------------------------------------

    def _try_lead(self) -> bool:
        if self._role == LEADER:
            return True
        try:
            self._register()
            if not self._lock.try_lock():
                self._lock.break_stale(self.ttl)
                return False
            self._become_leader()
        except db.StoreError as err:
            log.warning("controller %s: lease: %s", self.identity.id, err)
            self._lock.reset()
            self._registered = False
            return False
        return True

    def _register(self) -> None:
        if self._registered:
            return
        with self._lock.transaction() as conn:
            now = _db_now(conn)
            table = controllers_table
            conn.execute(delete(table).where(table.c.expires < now - _FORGET_AFTER))
            if conn.dialect.name == "sqlite":
                dead = [r.id for r in conn.execute(select(table)) if not _alive(r)]
                conn.execute(delete(table).where(table.c.id.in_(dead)))
            conn.execute(delete(table).where(table.c.id == self.identity.id))
            conn.execute(insert(table).values(**self._row(now, "standby", now)))
        self._role, self._since, self._registered = "standby", now, True
        self._renewed = time.monotonic()

    def _row(self, now: float, role: Role, since: float) -> dict[str, Any]:
        ident = self.identity
        return {
            "id": ident.id,
            "host": ident.host,
            "pid": ident.pid,
            "role": role,
            "since": since,
            "heartbeat": now,
            "expires": now + (self.ttl if self._lock.beats else _NO_EXPIRY),
            "backend": self._lock.backend(),
        }

    def _become_leader(self) -> None:
        """Holding the lock: end the old leader's writes in flight, take the next epoch,
        mark this controller leader (and no other)."""
        deadline = time.monotonic() + self.ttl
        while True:
            self._lock.end_fenced_writers()
            try:
                epoch, now = self._bump()
                break
            except db.StoreError:
                if time.monotonic() > deadline:
                    raise
        self.epoch, self._role, self._since = epoch, LEADER, now
        self._renewed = time.monotonic()
        log.info("controller %s is the leader (epoch %d)", self.identity.id, epoch)
        self._notify()

    def _bump(self) -> tuple[int, float]:
        table, lease = controllers_table, lease_table
        with self._lock.transaction(lock_timeout=0.5) as conn:
            now = _db_now(conn)
            stmt = update(lease).where(lease.c.name == LEADER)
            stmt = stmt.values(epoch=lease.c.epoch + 1, holder=self.identity.id, since=now)
            if conn.execute(stmt).rowcount == 0:
                row = {"name": LEADER, "epoch": 1, "holder": self.identity.id, "since": now}
                conn.execute(insert(lease).values(**row))
            epoch = int(conn.execute(select(lease.c.epoch)).scalar_one())
            others = (table.c.role == LEADER) & (table.c.id != self.identity.id)
            conn.execute(delete(table).where(others))
            conn.execute(delete(table).where(table.c.id == self.identity.id))
            conn.execute(insert(table).values(**self._row(now, LEADER, now)))
        return epoch, now

    def _lose(self, why: str) -> None:
        """Step down to standby (the caller holds the mutex) and raise LeaseLost."""
        was = self._role
        self._role, self._registered, self._since = "standby", False, time.time()
        self._lock.reset()
        if was == LEADER:
            log.error("controller %s lost the lease: %s", self.identity.id, why)
            self._notify()
        raise LeaseLost(f"controller {self.identity.id} lost the lease: {why}")

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self.describe())
            except Exception:
                log.exception("controller %s: on_change failed", self.identity.id)

    def _start_heartbeat(self) -> None:
        if not self._lock.beats or (self._beater is not None and self._beater.is_alive()):
            return
        self._beater = threading.Thread(target=self._beat, name="vmfabric-lease", daemon=True)
        self._beater.start()

    def _beat(self) -> None:
        while not self._closing.wait(self.ttl / 3):
            with self._mutex:
                try:
                    self._renew() if self._registered else self._register()
                except (LeaseLost, db.StoreError) as err:
                    log.debug("controller %s: heartbeat: %s", self.identity.id, err)

    def _renew(self) -> None:
        table = controllers_table
        try:
            with self._lock.transaction() as conn:
                now = _db_now(conn)
                mine = (table.c.id == self.identity.id) & (table.c.role == self._role)
                stmt = update(table).where(mine).values(heartbeat=now, expires=now + self.ttl)
                found = conn.execute(stmt).rowcount
        except db.StoreError as err:
            self._lose(f"heartbeat failed: {err}")
        if not found:
            self._lose("its registry row is gone (another controller took over)")
        self._renewed = time.monotonic()


# ---- the locks ---------------------------------------------------------------------------


class _Lock:
    """What differs between the databases: the mutual exclusion and its connection."""

    beats = True  # whether liveness is a heartbeat in the registry

    def try_lock(self) -> bool:
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self, lock_timeout: float | None = None) -> Iterator[Connection]:
        raise NotImplementedError
        yield  # pragma: no cover

    def backend(self) -> int:
        return 0

    def verify(self, epoch: int) -> None:
        """Raise LeaseLost (or StoreError) unless the lock is held with ``epoch``."""
        raise NotImplementedError

    def break_stale(self, ttl: float) -> None:
        """Depose a holder whose heartbeat expired (where the lock allows it)."""

    def end_fenced_writers(self) -> None:
        """End the transactions still fenced by the old epoch (where they can hang)."""

    def reset(self) -> None:
        """Forget the lock (after a loss); the next ``try_lock`` starts afresh."""

    def close(self) -> None:
        self.reset()


class _FileLock(_Lock):
    """SQLite: ``flock`` on ``<store>.lock`` (as ``vmfabric sync`` takes it); the registry
    and the epoch live in the store's file. One machine: a controller is alive while its
    process is, so there is no heartbeat writing to the store every second."""

    beats = False

    def __init__(self, url: URL) -> None:
        self._path = db.sqlite_file(url)
        self._where = db.describe(url)
        self._engine = db.open_engine(url, 5.0)
        self._fd: int | None = None
        with db.transaction(self._engine, self._where, write=True, path=self._path) as conn:
            _create_tables(conn)

    @contextlib.contextmanager
    def transaction(self, lock_timeout: float | None = None) -> Iterator[Connection]:
        with db.transaction(self._engine, self._where, write=True, path=self._path) as conn:
            yield conn

    def try_lock(self) -> bool:
        if self._fd is not None:
            return True
        if self._path is None:  # a store in memory: one process
            self._fd = -1
            return True
        fd = os.open(Path(self._path + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def verify(self, epoch: int) -> None:
        if self._fd is None:  # nobody else can take the file lock while we hold it
            raise LeaseLost(f"the file lock of {self._where} is not held")

    def reset(self) -> None:
        if self._fd is not None and self._fd >= 0:
            os.close(self._fd)
        self._fd = None

    def close(self) -> None:
        self.reset()
        self._engine.dispose()


class _AdvisoryLock(_Lock):
    """PostgreSQL: a session advisory lock on one dedicated connection, which also carries
    the heartbeat and the epoch: if the connection dies, so does the lease."""

    def __init__(self, url: URL, ttl: float) -> None:
        self._where = db.describe(url)
        args = {
            "application_name": "vmfabric-lease",
            "connect_timeout": max(1, round(ttl)),
            "keepalives": 1,
            "keepalives_idle": 1,
            "keepalives_interval": 1,
            "keepalives_count": 2,
            "tcp_user_timeout": int(ttl * 1000),
        }
        try:
            self._engine: Engine = create_engine(url, poolclass=NullPool, connect_args=args)
        except ImportError as err:
            raise db.StoreError(f"store {self._where}: driver missing ({err.name})") from None
        self._conn: Connection | None = None
        self._backend = 0
        self._unknown_since: float | None = None
        with self.transaction() as conn:
            _create_tables(conn)

    def _connection(self) -> Connection:
        if self._conn is None:
            with db.store_errors(self._where):
                conn = self._engine.connect()
                self._backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                conn.commit()
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def transaction(self, lock_timeout: float | None = None) -> Iterator[Connection]:
        conn = self._connection()
        try:
            with db.store_errors(self._where), conn.begin():
                if lock_timeout is not None:
                    ms = int(lock_timeout * 1000)
                    conn.execute(text(f"SET LOCAL lock_timeout = {ms}"))
                yield conn
        except db.StoreError:
            if conn.invalidated or conn.closed:
                self.reset()
            raise

    def backend(self) -> int:
        return self._backend

    def verify(self, epoch: int) -> None:
        with self.transaction() as conn:
            fence(conn, epoch)

    def try_lock(self) -> bool:
        with self.transaction() as conn:
            stmt = text("SELECT pg_try_advisory_lock(:a, :b)")
            return bool(conn.execute(stmt, _keys(_LOCK_KEYS)).scalar_one())

    def break_stale(self, ttl: float) -> None:
        with self.transaction() as conn:
            holder = conn.execute(_HOLDER, _keys(_LOCK_KEYS)).scalar_one_or_none()
            if holder is None:
                return
            now = _db_now(conn)
            row = conn.execute(
                select(controllers_table.c.expires, controllers_table.c.id).where(
                    controllers_table.c.backend == int(holder)
                )
            ).first()
            if not self._stale(row, now, ttl):
                return
            who = row.id if row is not None else f"backend {holder}"
            log.warning("deposing the leader %s: no heartbeat for %gs", who, ttl)
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": int(holder)})

    def _stale(self, row: Any, now: float, ttl: float) -> bool:
        if row is not None:
            self._unknown_since = None
            return float(row.expires) < now
        # a holder with no registry row: give it ttl to register before deposing it
        self._unknown_since = self._unknown_since or now
        return now - self._unknown_since > ttl

    def end_fenced_writers(self) -> None:
        with self.transaction() as conn:
            for pid in conn.execute(_FENCED).scalars():
                log.warning("ending a transaction of the deposed leader (backend %d)", pid)
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": int(pid)})

    def reset(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(exc.SQLAlchemyError):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        self.reset()
        self._engine.dispose()


_HOLDER = text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND classid = :a AND objid = :b AND objsubid = 2"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
# transactions inside fence(): they hold RowShareLock on the lease table
_FENCED = text(
    "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'relation' AND granted"
    " AND mode = 'RowShareLock' AND relation = 'leader_lease'::regclass"
    " AND pid <> pg_backend_pid()"
)

__all__ = ["Lease", "LeaseLost", "controllers", "fence", "read_controllers"]
