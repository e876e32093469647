"""The Store: vmfabric's persistent state, written by the service, read by ``show``.

One Store object per process. Every method is one transaction: writes take the write
lock at once, reads see one consistent snapshot. A second process (``vmfabric show``)
opens its own Store on the same URL and reads while the service writes (SQLite WAL).
Failures of the database itself raise ``StoreError`` (a TransientError) naming the store.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, get_args

from sqlalchemy import Connection, delete, insert, inspect, select, update

from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Change, Host, PortGroup, PortState, SessionStateName, Snapshot, Vm
from vmfabric.core.vlans import format_vlans
from vmfabric.store import db, inventory, queries, records
from vmfabric.store.db import StoreError
from vmfabric.store.records import AuditEntry
from vmfabric.store.schema import (
    SCHEMA_VERSION,
    hosts,
    meta,
    metadata,
    portgroups,
    sessions,
    vms,
)

DEFAULT_BUSY_TIMEOUT = 5.0
_VERSION_KEY = "schema_version"
SESSION_STATES = frozenset(get_args(SessionStateName))
SESSION_MODES = frozenset({"enforce", "check"})


class Store:
    """vmfabric's state store on a SQLAlchemy URL ("sqlite:///abs/path.db", "sqlite://"
    for memory, or "postgresql://..."). Creates its tables if missing."""

    def __init__(self, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        parsed = db.parse_url(url)
        self.where = db.describe(parsed)
        self._path = db.sqlite_file(parsed)
        # one shared connection (memory) must not interleave transactions of two threads
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if db.single_connection(parsed) else nullcontext()
        )
        self._write_guard: Callable[[Connection], None] | None = None
        with db.store_errors(self.where, self._path):
            self._engine = db.open_engine(parsed, busy_timeout)
        self._prepare()
        self._identity = _file_identity(self._path)

    def _prepare(self) -> None:
        """Create missing tables (under the write lock only when some are missing, so that
        a reader opening the store does not wait for the writer) and check the version."""
        with self._read() as conn:
            ready = _tables_ready(conn)
            version = _schema_version(conn) if ready else None
        if not ready or version is None:
            with self._write() as conn:
                metadata.create_all(conn, checkfirst=True)
                version = _schema_version(conn)
                if version is None:
                    conn.execute(insert(meta).values(key=_VERSION_KEY, value=str(SCHEMA_VERSION)))
                    version = str(SCHEMA_VERSION)
        if version != str(SCHEMA_VERSION):
            raise ConfigError(
                f"store {self.where}: schema version {version}, this vmfabric uses {SCHEMA_VERSION}"
            )

    def check_same(self) -> None:
        """StoreError when the SQLite file this store opened was deleted or another file
        now sits at its path (a no-op for PostgreSQL and memory)."""
        if self._path is None:
            return
        now = _file_identity(self._path)
        if now != self._identity:
            what = "deleted" if now is None else "replaced"
            raise StoreError(f"store {self._path} was {what} while in use")

    def close(self) -> None:
        """Close every connection; the Store must not be used afterwards."""
        self._engine.dispose()
        if self._path is not None:
            db.restrict_side_files(self._path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with (
            self._serial,
            db.transaction(self._engine, self.where, write=True, path=self._path) as conn,
        ):
            guard = self._write_guard
            if guard is not None:
                guard(conn)
            yield conn

    def dialect(self) -> str:
        """The database's dialect name: "sqlite" or "postgresql"."""
        return str(self._engine.dialect.name)

    def set_write_guard(self, guard: Callable[[Connection], None] | None) -> None:
        """Run ``guard`` inside every write transaction, before its statements (the HA
        lease's fencing: a deposed leader's late writes raise and are rolled back)."""
        self._write_guard = guard

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with (
            self._serial,
            db.transaction(self._engine, self.where, write=False, path=self._path) as conn,
        ):
            yield conn

    # ---- sessions ------------------------------------------------------------------------

    def set_session(  # noqa: PLR0917 (positional signature fixed by the service contract)
        self,
        name: str,
        kind: str,
        url: str,
        autovlan: bool,
        allowed_vlans: frozenset[int],
        mode: str,
    ) -> None:
        """Record a session's configuration; its live status is kept if it exists."""
        config = {
            "kind": kind,
            "url": url,
            "autovlan": autovlan,
            "allowed_vlans": format_vlans(allowed_vlans),
            "mode": _one_of(mode, SESSION_MODES, "session mode"),
        }
        with self._write() as conn:
            stmt = update(sessions).where(sessions.c.name == name).values(**config)
            if conn.execute(stmt).rowcount == 0:
                conn.execute(insert(sessions).values(name=name, **config))

    def set_session_status(
        self,
        name: str,
        state: str,
        *,
        in_sync: bool,
        error: str = "",
        version: str = "",
        warnings: Sequence[str] = (),
        now: float,
    ) -> None:
        """Record a session's live status and ``now`` as its last update (no-op for a
        session never set with ``set_session``)."""
        status = {
            "state": _one_of(state, SESSION_STATES, "session state"),
            "in_sync": in_sync,
            "error": _one_line(error),
            "version": version,
            "warnings": [_one_line(w) for w in warnings],
            "last_update": now,
        }
        with self._write() as conn:
            conn.execute(update(sessions).where(sessions.c.name == name).values(**status))

    def forget_sessions_except(self, names: Collection[str]) -> None:
        """Drop sessions no longer configured, with their inventory."""
        keep = set(names)
        with self._write() as conn:
            known = set(conn.execute(select(sessions.c.name)).scalars())
            for table in (hosts, portgroups, vms):
                known |= set(conn.execute(select(table.c.session).distinct()).scalars())
            gone = sorted(known - keep)
            conn.execute(delete(sessions).where(sessions.c.name.in_(gone)))
            inventory.delete_sessions(conn, gone)

    # ---- inventory -----------------------------------------------------------------------

    def replace_inventory(
        self,
        session: str,
        hosts: Sequence[Host],
        portgroups: Sequence[PortGroup],
        vms: Sequence[Vm],
        now: float,
    ) -> None:
        """Replace all that is known of ``session`` (one transaction, bulk inserts) and
        record ``now`` as its last update."""
        with self._write() as conn:
            inventory.replace(conn, session, hosts, portgroups, vms)
            inventory.touch_sessions(conn, [session], now)

    def apply_changes(self, changes: Sequence[Change], now: float) -> None:
        """Apply incremental inventory changes in one transaction (the last change of an
        object wins) and record ``now`` as the touched sessions' last update."""
        with self._write() as conn:
            touched = inventory.apply(conn, changes)
            inventory.touch_sessions(conn, touched, now)

    def snapshot(self, session: str) -> Snapshot:
        """What the store holds of ``session``, as the domain types (sorted by key)."""
        with self._read() as conn:
            inv = inventory.load(conn, session)
        return Snapshot(
            session=session,
            hosts=tuple(inv.hosts[k] for k in sorted(inv.hosts)),
            portgroups=tuple(inv.portgroups[k] for k in sorted(inv.portgroups)),
            vms=tuple(sorted(inv.vms, key=lambda v: v.id)),
        )

    # ---- switch side ---------------------------------------------------------------------

    def set_port_states(self, states: Sequence[PortState], now: float) -> None:
        """Record the latest state read from, or applied to, each edge port."""
        with self._write() as conn:
            records.set_port_states(conn, states, now)

    def port_states(self) -> list[PortState]:
        with self._read() as conn:
            return records.load_port_states(conn)

    def set_switch_status(self, switch: str, state: str, error: str = "", now: float = 0.0) -> None:
        """Record a switch's reachability: "ok", "unreachable" or "error"."""
        with self._write() as conn:
            records.set_switch_status(conn, switch, state, _one_line(error), now)

    def show_switches(self) -> list[dict[str, Any]]:
        """[{"name", "state", "error", "updated"}] sorted by name."""
        with self._read() as conn:
            found = records.switch_rows(conn)
        return [{**r, "updated": queries.iso_utc(r["updated"])} for r in found]

    def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        with self._write() as conn:
            records.record_audit(conn, entries)

    def audit(self, limit: int = 100, switch: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries (of one switch if given), newest first:
        [{"id", "time", "switch", "port", "vlan", "action", "reason", "session"}]."""
        with self._read() as conn:
            return records.audit(conn, limit, switch)

    # ---- plans ---------------------------------------------------------------------------

    def save_plan(
        self,
        switch: str,
        status: str,
        plan: dict[str, Any],
        reason: str,
        now: float,
        *,
        sessions: Collection[str] = (),
    ) -> int:
        """Store a plan (JSON-serialisable) and return its id. ``sessions`` names the
        sessions it concerns, for ``show session``'s ``held_plans``."""
        _check_json(plan)
        with self._write() as conn:
            return records.save_plan(
                conn, switch, status, plan, reason=reason, now=now, sessions=sessions
            )

    def plans(self, status: str | None = None) -> list[dict[str, Any]]:
        """[{"id", "switch", "status", "created", "updated", "reason", "sessions", "plan"}]
        in id order."""
        with self._read() as conn:
            return records.list_plans(conn, status)

    def plan(self, plan_id: int) -> dict[str, Any] | None:
        with self._read() as conn:
            return records.get_plan(conn, plan_id)

    def set_plan_status(self, plan_id: int, status: str, now: float) -> None:
        with self._write() as conn:
            if not records.set_plan_status(conn, plan_id, status, now):
                raise ConfigError(f"no plan {plan_id} in store {self.where}")

    def approve_plan(self, plan_id: int, now: float) -> None:
        """Mark a held plan approved (``vmfabric approve``); refuses any other status."""
        with self._write() as conn:
            if records.set_plan_status(conn, plan_id, "approved", now, only_from="held"):
                return
            found = records.get_plan(conn, plan_id)
        if found is None:
            raise ConfigError(f"no plan {plan_id} in store {self.where}")
        raise ConfigError(f"plan {plan_id} is {found['status']}, not held")

    # ---- applying plans (the reconcile loop) ----------------------------------------------

    def begin_apply(
        self,
        target: str,
        doc: dict[str, Any],
        entries: Sequence[AuditEntry],
        now: float,
        sessions: Collection[str] = (),
    ) -> int:
        """Record, before anything is written to the target, the plan about to be applied
        and the audit entries it will write if the target confirms it (status applying)."""
        body = {**doc, "entries": [e.to_json() for e in entries]}
        _check_json(body)
        with self._write() as conn:
            return records.save_plan(
                conn, target, "applying", body, reason="", now=now, sessions=sessions
            )

    def finish_apply(
        self,
        plan_id: int,
        confirmed: Sequence[AuditEntry],
        now: float,
        origins: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        """One transaction: the confirmed entries go into the audit log and the plan
        becomes applied (failed when nothing was confirmed)."""
        del origins  # no store-kept origin records yet (no driver keeps them in the store)
        with self._write() as conn:
            records.record_audit(conn, confirmed)
            status = "applied" if confirmed else "failed"
            records.set_plan_status(conn, plan_id, status, now)

    def unconfirmed(self, target: str) -> list[tuple[int, list[AuditEntry]]]:
        """Plans of ``target`` still applying (a timeout, a crash, a frozen peer), with
        the entries they would write: settled against the next read of the target."""
        with self._read() as conn:
            found = records.plans_of(conn, target, "applying")
        return [
            (p["id"], [AuditEntry.from_json(e) for e in p["plan"].get("entries", [])])
            for p in found
        ]

    def expire_plans(self, target: str, keep: Collection[int], now: float) -> list[int]:
        """Held plans of ``target`` not in ``keep`` no longer apply: they expire."""
        with self._write() as conn:
            gone = [p["id"] for p in records.plans_of(conn, target, "held") if p["id"] not in keep]
            for plan_id in gone:
                records.set_plan_status(conn, plan_id, "expired", now)
        return gone

    def approved_plans(self, target: str | None = None) -> list[dict[str, Any]]:
        """Plans approved and not yet applied (of one target if given), oldest first."""
        with self._read() as conn:
            found = records.list_plans(conn, "approved")
        return [p for p in found if target is None or p["switch"] == target]

    def pending_approvals(self) -> list[int]:
        """Ids of plans approved and not yet applied, oldest first."""
        with self._read() as conn:
            return records.plan_ids(conn, "approved")

    # ---- show ----------------------------------------------------------------------------

    def show_sessions(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            return queries.show_sessions(conn, name)

    def session_autovlan(self, name: str) -> dict[str, Any]:
        """{"name", "allowed_vlans", "provisioned": [{"switch", "port", "vlans"}]}."""
        with self._read() as conn:
            row = queries.session_row(conn, name)
            if row is None:
                raise ConfigError(f"no session {name!r} in store {self.where}")
            return queries.session_autovlan(conn, row)

    def show_vms(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._read() as conn:
            return queries.show_vms(conn, name)

    def show_hosts(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return queries.show_hosts(conn)

    def show_interfaces(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            return queries.show_interfaces(conn)

    def show_vlans(self, dynamic_only: bool = False) -> list[dict[str, Any]]:
        with self._read() as conn:
            return queries.show_vlans(conn, dynamic_only)


def _file_identity(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _tables_ready(conn: Connection) -> bool:
    return set(metadata.tables) <= set(inspect(conn).get_table_names())


def _schema_version(conn: Connection) -> str | None:
    stmt = select(meta.c.value).where(meta.c.key == _VERSION_KEY)
    return conn.execute(stmt).scalar_one_or_none()


def _one_of(value: str, allowed: frozenset[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {sorted(allowed)}")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_json(value: Mapping[str, Any]) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"plan is not JSON-serialisable: {err}") from None
