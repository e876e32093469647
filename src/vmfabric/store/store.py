"""The Store: vmfabric's persistent state, written by the runtime, read by ``show``.

One Store object per process. Every method is one transaction: writes take the write
lock at once, reads see one consistent snapshot. A second process (``vmfabric show``)
opens its own Store on the same URL with ``readonly=True`` and reads while the runtime
writes (SQLite WAL); a reader never writes, never creates the store and never upgrades
it. A writer opening a store of an older schema upgrades it (Alembic migrations, in one
transaction). Failures of the database itself raise ``StoreError`` (a TransientError)
naming the store.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, get_args

from sqlalchemy import Connection, delete, insert, select, update

from vmfabric.core.errors import ConfigError
from vmfabric.core.gcpause import gc_paused
from vmfabric.core.model import Change, Host, PortGroup, PortState, SessionStateName, Snapshot, Vm
from vmfabric.core.vlans import format_vlans
from vmfabric.store import db, inventory, migrate, records
from vmfabric.store.reader import Reader
from vmfabric.store.records import APPROVAL, AuditEntry, PlanRecord, SwitchStatus
from vmfabric.store.schema import HEAD_REVISION, hosts, portgroups, sessions, vms

DEFAULT_BUSY_TIMEOUT = 5.0
SESSION_STATES = frozenset(get_args(SessionStateName))
SESSION_MODES = frozenset({"enforce", "check"})
log = logging.getLogger("vmfabric.store")


class Store:
    """vmfabric's state store on a SQLAlchemy URL ("sqlite:///abs/path.db", "sqlite://"
    for memory, or "postgresql://...").

    A writer (the default) creates the store if missing and upgrades an older schema. A
    reader (``readonly=True``) requires the store at this vmfabric's schema and refuses
    every write."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        readonly: bool = False,
    ) -> None:
        parsed = db.parse_url(url)
        self.where = db.describe(parsed)
        self.readonly = readonly
        self._path = db.sqlite_file(parsed)
        # one shared connection (memory) must not interleave transactions of two threads
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if db.single_connection(parsed) else nullcontext()
        )
        self._identity: db.Identity | None = None
        self._write_guard: Callable[[Connection], None] | None = None
        with db.store_errors(self.where, self._path):
            self._engine = db.open_engine(parsed, busy_timeout, readonly=readonly)
        try:
            self._prepare()
        except BaseException:
            self._engine.dispose()
            raise
        if self._path is not None and not readonly:
            self._identity = db.identity(self._path)

    def _prepare(self) -> None:
        """Check the schema revision; a writer creates or upgrades the tables (under the
        write lock only then, so that opening does not wait for another writer)."""
        with self._read() as conn:
            found = migrate.revision(conn, self.where)
        migrate.check_known(found, self.where)
        if found == HEAD_REVISION:
            return
        if self.readonly:
            raise db.StoreError(self._older_message(found))
        with self._write() as conn:
            migrate.serialize_upgrades(conn)
            found = migrate.revision(conn, self.where)
            if migrate.is_older(found):
                migrate.upgrade(conn, found)
                if found is not None:
                    log.info("store %s: schema upgraded to %s", self.where, HEAD_REVISION)

    def _older_message(self, found: str | None) -> str:
        if found is None:
            what = "has no vmfabric tables yet"
        else:
            what = f"has schema revision {found}, older than this vmfabric's ({HEAD_REVISION})"
        return f"store {self.where} {what}: start `vmfabric run` (or `vmfabric sync`) once"

    def close(self) -> None:
        """Close every connection; the Store must not be used afterwards."""
        self._engine.dispose()
        if self._path is not None and not self.readonly:
            db.restrict_side_files(self._path)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def check_same(self) -> None:
        """Raise StoreReplacedError ("store FILE was deleted|replaced while in use") when the
        SQLite file this writer opened is gone, or another file now sits at its path. A no-op
        for readers, memory and server databases. Every write checks it first."""
        if self._identity is None or self._path is None:
            return
        now = db.identity(self._path)
        if now == self._identity:
            return
        what = "deleted" if now is None else "replaced"
        raise db.StoreReplacedError(
            f"store {self._path} was {what} while in use: what vmfabric writes now is lost"
        )

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self.readonly:
            raise db.StoreError(f"store {self.where}: opened read-only, not written")
        self.check_same()
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

    @contextmanager
    def reader(self) -> Iterator[Reader]:
        """Typed reads on one consistent snapshot (what ``vmfabric.views`` builds on)."""
        with self._read() as conn:
            yield Reader(conn)

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
        with gc_paused(), self._write() as conn:
            inventory.replace(conn, session, hosts, portgroups, vms)
            inventory.touch_sessions(conn, [session], now)

    def apply_changes(self, changes: Sequence[Change], now: float) -> None:
        """Apply incremental inventory changes in one transaction (the last change of an
        object wins) and record ``now`` as the touched sessions' last update."""
        with gc_paused(), self._write() as conn:
            touched = inventory.apply(conn, changes)
            inventory.touch_sessions(conn, touched, now)

    def snapshot(self, session: str) -> Snapshot:
        """What the store holds of ``session``, as the domain types (sorted by key)."""
        with gc_paused(), self._read() as conn:
            inv = inventory.load(conn, session)
        return Snapshot(
            session=session,
            hosts=tuple(inv.hosts[k] for k in sorted(inv.hosts)),
            portgroups=tuple(inv.portgroups[k] for k in sorted(inv.portgroups)),
            vms=tuple(sorted(inv.vms, key=lambda v: v.id)),
        )

    # ---- targets: port states, status, origins -------------------------------------------

    def set_port_states(self, states: Sequence[PortState], now: float) -> None:
        """Record the latest state read from, or applied to, each edge port."""
        with self._write() as conn:
            records.set_port_states(conn, states, now)

    def port_states(self) -> list[PortState]:
        with self._read() as conn:
            return records.load_port_states(conn)

    def set_switch_status(
        self,
        name: str,
        state: str,
        error: str = "",
        *,
        now: float,
        driver: str = "",
        last_apply: float | None = None,
        pending: int | None = None,
    ) -> None:
        """Record a target's state ("ok", "unreachable" or "error") and error ("" clears
        it) at ``now``. ``driver``, ``last_apply`` (when a plan was last confirmed) and
        ``pending`` (member changes waiting) keep their recorded value when not given."""
        status = SwitchStatus(name, state, _one_line(error), now, driver, last_apply, pending)
        with self._write() as conn:
            records.set_switch_status(conn, status)

    def switches(self) -> list[SwitchStatus]:
        """Every recorded target status, by name."""
        with self._read() as conn:
            return records.load_switches(conn)

    def origins(self, target: str) -> dict[str, frozenset[str]]:
        """What vmfabric added to ``target``, per holder (drivers whose origin record lives
        in the store)."""
        with self._read() as conn:
            return records.load_origins(conn, target)

    def set_origins(self, target: str, holder: str, members: Collection[str]) -> None:
        """Replace one holder's origin record (an empty ``members`` deletes it)."""
        with self._write() as conn:
            records.set_origins(conn, target, holder, members)

    # ---- audit ---------------------------------------------------------------------------

    def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        with self._write() as conn:
            records.record_audit(conn, entries)

    def audit(self, limit: int = 100, switch: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries (of one switch, or any target, if given),
        newest first: the AuditEntry fields plus ``id``, and for switch-port entries
        ``switch``, ``port`` and ``vlan`` (int). Times are epoch seconds
        (``vmfabric.views.audit`` formats them)."""
        with self._read() as conn:
            found = records.load_audit(conn, limit, switch)
        return [_audit_dict(entry_id, e) for entry_id, e in found]

    # ---- plans ---------------------------------------------------------------------------

    def save_plan(
        self,
        target: str,
        status: str,
        doc: Mapping[str, Any],
        reason: str,
        now: float,
        *,
        sessions: Collection[str] = (),
    ) -> int:
        """Store a plan (JSON-serialisable ``doc``) and return its id. ``sessions`` names
        the sessions it concerns, for ``show session``'s ``held_plans``."""
        _check_json(doc)
        with self._write() as conn:
            return records.save_plan(
                conn, target, status, doc, reason=reason, now=now, sessions=sessions
            )

    def begin_apply(
        self,
        target: str,
        doc: Mapping[str, Any] | None,
        entries: Sequence[AuditEntry],
        now: float,
        sessions: Collection[str] = (),
    ) -> int:
        """Record, before applying it, a plan with status ``applying`` and the audit
        entries it writes once the target confirms them (one transaction); its id. A
        ``doc`` of None: the plan's document is built from the entries when read."""
        with self._write() as conn:
            return records.save_plan(
                conn,
                target,
                "applying",
                records.DOC_OF_ENTRIES if doc is None else doc,
                reason="",
                now=now,
                sessions=sessions,
                entries=entries,
            )

    def finish_apply(
        self,
        plan_id: int,
        confirmed: Sequence[AuditEntry],
        now: float,
        *,
        origins: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        """One transaction: the ``confirmed`` entries go into the audit log with this plan's
        id, the plan becomes ``applied`` (some confirmed: also the target's last apply
        time) or ``failed`` (none), and each holder in ``origins`` gets that origin
        record. Raises ValueError for a plan that is not ``applying``."""
        with self._write() as conn:
            found = records.plan_state(conn, plan_id)
            if found is None or found[1] != "applying":
                why = "no such plan" if found is None else f"it is {found[1]}"
                raise ValueError(f"plan {plan_id} is not applying ({why})")
            target = found[0]
            status = "applied" if confirmed else "failed"
            records.set_plan_status(conn, plan_id, status, now)
            records.record_audit(conn, [(*e[:-1], plan_id) for e in confirmed])
            if confirmed:
                records.mark_applied(conn, target, now)
            for holder, members in (origins or {}).items():
                records.set_origins(conn, target, holder, members)

    def unconfirmed(self, target: str) -> list[tuple[int, list[AuditEntry]]]:
        """Plans of ``target`` still ``applying`` (a crash, a timeout, a frozen switch) with
        the entries each would write, oldest first: check them against the next read of
        the target and call ``finish_apply`` with what is there."""
        with self._read() as conn:
            found = records.load_plans(conn, "applying", target)
        return [(p.id, list(p.entries)) for p in found]

    def expire_plans(self, target: str, keep: Collection[int], now: float) -> list[int]:
        """Held plans of ``target`` not in ``keep`` become ``expired``; their ids."""
        with self._write() as conn:
            return records.expire_plans(conn, target, keep, now)

    def plans(self, status: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """[{"id", "target", "switch", "status", "created", "updated", "reason", "sessions",
        "plan"}] in id order ("switch" is "target" by its wave-1 name)."""
        with self._read() as conn:
            return [p.as_dict() for p in records.load_plans(conn, status, target)]

    def plan(self, plan_id: int) -> dict[str, Any] | None:
        with self._read() as conn:
            found = records.get_plan(conn, plan_id)
        return None if found is None else found.as_dict()

    def plan_record(self, plan_id: int) -> PlanRecord | None:
        """The plan with its pending entries, typed."""
        with self._read() as conn:
            return records.get_plan(conn, plan_id)

    def set_plan_status(self, plan_id: int, status: str, now: float) -> None:
        with self._write() as conn:
            if not records.set_plan_status(conn, plan_id, status, now):
                raise ConfigError(f"no plan {plan_id} in store {self.where}")

    def approve_plan(self, plan_id: int, now: float) -> dict[str, Any]:
        """Mark a held plan approved (``vmfabric approve``) and record the approval in the
        audit log; the plan as approved. ConfigError for an unknown plan or one not held."""
        with self._write() as conn:
            plan = records.get_plan(conn, plan_id)
            if plan is not None and records.set_plan_status(
                conn, plan_id, "approved", now, only_from="held"
            ):
                records.record_audit(conn, [_approval(plan, now)])
                return {**plan.as_dict(), "status": "approved", "updated": now}
        if plan is None:
            raise ConfigError(f"no plan {plan_id} in store {self.where}")
        raise ConfigError(f"plan {plan_id} is {plan.status}, not held")

    def approved_plans(self, target: str | None = None) -> list[dict[str, Any]]:
        """Plans approved and not yet applied (of one target), oldest first; the runtime
        marks each ``applied`` (``set_plan_status``) once the target confirmed it."""
        return self.plans("approved", target)

    def pending_approvals(self) -> list[int]:
        """Ids of plans approved and not yet applied, oldest first."""
        return [p["id"] for p in self.approved_plans()]

    # ---- show (wave 1's entry points; vmfabric.views is the API) --------------------------

    def show_sessions(self, name: str | None = None) -> list[dict[str, Any]]:
        from vmfabric import views

        return [dict(s) for s in views.sessions(self, name)]

    def session_autovlan(self, name: str) -> dict[str, Any]:
        from vmfabric import views

        return dict(views.session_autovlan(self, name))

    def show_vms(self, name: str | None = None) -> list[dict[str, Any]]:
        from vmfabric import views

        return [dict(v) for v in views.vms(self, name)]

    def show_hosts(self) -> list[dict[str, Any]]:
        from vmfabric import views

        return [dict(h) for h in views.hosts(self)]

    def show_interfaces(self) -> list[dict[str, Any]]:
        from vmfabric import views

        return [dict(i) for i in views.interfaces(self)]

    def show_vlans(self, dynamic_only: bool = False) -> list[dict[str, Any]]:
        from vmfabric import views

        return [dict(v) for v in views.vlans(self, dynamic=dynamic_only)]

    def show_switches(self) -> list[dict[str, Any]]:
        """The switch view, plus wave 1's "error" ("" when none)."""
        from vmfabric import views

        return [{**s, "error": s["last_error"] or ""} for s in views.switches(self)]


def _audit_dict(entry_id: int, entry: AuditEntry) -> dict[str, Any]:
    found = {"id": entry_id, **entry.to_json()}
    if entry.kind == records.SWITCHPORT:
        found.update(switch=entry.target, port=entry.holder, vlan=entry.vlan)
    return found


def _approval(plan: PlanRecord, now: float) -> AuditEntry:
    """The audit entry of approving ``plan``: its session when it names one."""
    session = plan.sessions[0] if len(plan.sessions) == 1 else ""
    reason = f"approved: {plan.reason}" if plan.reason else "approved"
    return AuditEntry(
        now, APPROVAL, plan.target, "", str(plan.id), "approve", reason, session, plan.id
    )


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
