"""The target side of the store: port states, target status, the audit log, plans and
origins, typed for any target kind.

Each function runs on a connection inside a transaction its caller opened. Plans are
stored as JSON exactly as given; their status moves through PLAN_STATUSES:

    held ──approve──> approved ──(runtime applies it)──> applied
      └──(no longer wanted)──> expired
    applying ──(target confirmed some)──> applied
             └──(target confirmed none)──> failed
    check (recorded in check mode, never applied)

An ``applying`` plan carries the audit entries it will write (``entries``): they reach the
audit log only once the target confirms them, with the plan's id. Its document may be
stored as ``DOC_OF_ENTRIES``: it is then built from those entries when read
(``plan_document``), so that a cold start's 90,000 changes are written once, not three
times (entries, the document's ports and its change list).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from vmfabric.core.model import PortState
from vmfabric.store import rows
from vmfabric.store.schema import audit_log, origins, plans, port_states, switches

PLAN_STATUSES = frozenset({"held", "approved", "applying", "applied", "failed", "expired", "check"})
SWITCH_STATES = frozenset({"ok", "unreachable", "error"})
SWITCHPORT = "switchport"
APPROVAL = "approval"


class AuditEntry(NamedTuple):
    """One change vmfabric made to a target (or one approval), when and why.

    A named tuple: immutable, and five times cheaper to make than a frozen dataclass (a
    100,000-VM cold start makes 90,000 entries before its applies and as many after).
    ``kind`` names the target kind ("switchport", "addrset", "vtep") or "approval";
    ``target`` the switch, firewall or VTEP list; ``holder`` what holds the member there
    (an edge port, an address set); ``member`` the member as text (a VLAN, an address).
    ``plan`` is the id of the plan that made the change, when there was one."""

    time: float
    kind: str
    target: str
    holder: str
    member: str
    action: str
    reason: str = ""
    session: str = ""
    plan: int | None = None

    @classmethod
    def switchport(  # noqa: PLR0917 (the wave-1 positional order of VLAN entries)
        cls,
        time: float,
        switch: str,
        port: str,
        vlan: int,
        action: str,
        reason: str = "",
        session: str = "",
        plan: int | None = None,
    ) -> AuditEntry:
        """A VLAN added to or removed from a switch port (``action`` "add" or "remove")."""
        return cls(time, SWITCHPORT, switch, port, str(vlan), action, reason, session, plan)

    @property
    def vlan(self) -> int | None:
        """The VLAN of a switch-port entry (0 when the change is not one VLAN: closing an
        open port), None for other kinds."""
        if self.kind != SWITCHPORT:
            return None
        return int(self.member) if self.member.isdigit() else 0

    @property
    def switch(self) -> str:
        """The target, by its switch-port name."""
        return self.target

    @property
    def port(self) -> str:
        """The holder, by its switch-port name."""
        return self.holder

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | Sequence[Any]) -> AuditEntry:
        """From ``to_json``'s object or the entry as an array in field order (an
        ``applying`` plan keeps its entries so: ``list(entry)``)."""
        if isinstance(doc, Mapping):
            return cls(**{k: doc[k] for k in _ENTRY_FIELDS if k in doc})
        return cls(*doc)


_ENTRY_FIELDS = AuditEntry._fields


def check_plan_status(status: str) -> str:
    if status not in PLAN_STATUSES:
        raise ValueError(f"plan status {status!r} is not one of {sorted(PLAN_STATUSES)}")
    return status


# ---- port states and switches ----------------------------------------------------------


def set_port_states(conn: Connection, states: Sequence[PortState], now: float) -> None:
    """Upsert the latest state of each (switch, port); the last of duplicates wins."""
    latest = {(s.switch, s.port): rows.port_state_row(s, now) for s in states}
    if not latest:
        return
    stmt = delete(port_states).where(
        and_(
            port_states.c.switch == bindparam("k_switch"),
            port_states.c.port == bindparam("k_port"),
        )
    )
    conn.execute(stmt, [{"k_switch": sw, "k_port": p} for sw, p in latest])
    conn.execute(insert(port_states), list(latest.values()))


def load_port_states(conn: Connection) -> list[PortState]:
    stmt = select(port_states).order_by(port_states.c.switch, port_states.c.port)
    return [rows.port_state_from_row(r) for r in conn.execute(stmt).mappings()]


@dataclass(frozen=True, slots=True)
class SwitchStatus:
    """A target's last recorded status (``show switch``)."""

    name: str
    state: str
    error: str = ""
    updated: float = 0.0
    driver: str = ""
    last_apply: float | None = None
    pending: int | None = None


def set_switch_status(conn: Connection, status: SwitchStatus) -> None:
    """Record ``status``; an empty driver and a None last_apply or pending keep what was
    recorded before."""
    if status.state not in SWITCH_STATES:
        raise ValueError(f"switch state {status.state!r} is not one of {sorted(SWITCH_STATES)}")
    values = {k: v for k, v in asdict(status).items() if v is not None and (k, v) != ("driver", "")}
    stmt = update(switches).where(switches.c.name == status.name).values(**values)
    if conn.execute(stmt).rowcount == 0:
        conn.execute(insert(switches).values(**asdict(status)))


def load_switches(conn: Connection) -> list[SwitchStatus]:
    stmt = select(switches).order_by(switches.c.name)
    return [SwitchStatus(**dict(r)) for r in conn.execute(stmt).mappings()]


def mark_applied(conn: Connection, target: str, now: float) -> None:
    conn.execute(update(switches).where(switches.c.name == target).values(last_apply=now))


# ---- audit -----------------------------------------------------------------------------


def record_audit(conn: Connection, entries: Sequence[tuple[Any, ...]]) -> None:
    """Append ``entries`` (AuditEntry, or tuples in its field order) to the audit log in
    one ``executemany`` on the database driver's cursor, inside the caller's transaction:
    SQLAlchemy's parameter processing costs about 6 µs an entry, 0.5 s of a 100,000-VM
    cold start's 90,000."""
    if not entries:
        return
    compiled = insert(audit_log).compile(dialect=conn.dialect, column_keys=list(_ENTRY_FIELDS))
    params: Sequence[Any]
    if compiled.positional and compiled.positiontup is not None:
        order = [_ENTRY_FIELDS.index(k) for k in compiled.positiontup]
        same = order == list(range(len(_ENTRY_FIELDS)))
        params = entries if same else [tuple(e[i] for i in order) for e in entries]
    else:  # named parameters (psycopg)
        params = [dict(zip(_ENTRY_FIELDS, e, strict=True)) for e in entries]
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(str(compiled), params)
    finally:
        cursor.close()


def load_audit(
    conn: Connection, limit: int, target: str | None = None
) -> list[tuple[int, AuditEntry]]:
    """The newest ``limit`` entries (of one target if given), newest first, with ids."""
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(limit, 0))
    if target is not None:
        stmt = stmt.where(audit_log.c.target == target)
    found = conn.execute(stmt).mappings()
    return [(int(r["id"]), AuditEntry(**{k: r[k] for k in _ENTRY_FIELDS})) for r in found]


# ---- plans -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """A stored plan. ``doc`` is the plan as the runtime gave it (JSON); ``entries`` the
    audit entries an ``applying`` plan writes once confirmed."""

    id: int
    target: str
    status: str
    created: float
    updated: float
    reason: str
    sessions: tuple[str, ...]
    doc: dict[str, Any]
    entries: tuple[AuditEntry, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """id, target (also as "switch", its wave-1 name), status, created, updated,
        reason, sessions and plan (the document)."""
        return {
            "id": self.id,
            "target": self.target,
            "switch": self.target,
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "reason": self.reason,
            "sessions": list(self.sessions),
            "plan": self.doc,
        }


def save_plan(
    conn: Connection,
    target: str,
    status: str,
    doc: Mapping[str, Any],
    *,
    reason: str,
    now: float,
    sessions: Collection[str] = (),
    entries: Sequence[AuditEntry] | None = None,
) -> int:
    stmt = insert(plans).values(
        target=target,
        status=check_plan_status(status),
        created=now,
        updated=now,
        reason=reason,
        sessions=sorted(set(sessions)),
        plan=dict(doc),
        entries=entries,  # named tuples: JSON arrays in field order
    )
    key = conn.execute(stmt).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new plan")
    return int(key[0])


# an applying plan's stored document when it is built from the plan's entries on reading
DOC_OF_ENTRIES: dict[str, Any] = {"of": "entries"}
Item = tuple[str, str, str, str, Sequence[str]]  # holder, member, action, reason, sessions


def plan_document(target: str, items: Iterable[Item]) -> dict[str, Any]:
    """A plan as JSON for the store, ``show plan``, ``approve`` and ``sync --json``, from
    its changes as (holder, member, action, reason, sessions): ``changes`` lists every
    change with its member as text (any target kind); ``ports`` groups VLAN changes per
    switch port: {"ports": [{"switch", "port", "add", "remove", "reasons": [{vlan, action,
    note, sessions}]}]}."""
    ports: dict[str, dict[str, Any]] = {}
    listed = []
    for holder, member, action, reason, sessions in items:
        listed.append({"holder": holder, "member": member, "action": action, "reason": reason})
        digit = member.isdigit()
        if not (digit or member == "all"):
            continue
        entry = ports.get(holder)
        if entry is None:
            entry = ports[holder] = {
                "switch": target, "port": holder, "add": [], "remove": [], "reasons": []
            }  # fmt: skip
        vlan = int(member) if digit else 0
        entry[action].append(vlan)
        entry["reasons"].append(
            {"vlan": vlan, "action": action, "note": reason, "sessions": list(sessions)}
        )
    for entry in ports.values():
        entry["add"].sort()
        entry["remove"].sort()
    return {"ports": [ports[k] for k in sorted(ports)], "changes": listed}


def _plan(row: rows.Record) -> PlanRecord:
    entries = tuple(AuditEntry.from_json(e) for e in row["entries"] or ())
    doc = row["plan"]
    if doc == DOC_OF_ENTRIES:
        doc = plan_document(
            row["target"],
            ((e.holder, e.member, e.action, e.reason, e.session.split(",") if e.session else ())
             for e in entries),
        )  # fmt: skip
    return PlanRecord(
        id=int(row["id"]),
        target=row["target"],
        status=row["status"],
        created=row["created"],
        updated=row["updated"],
        reason=row["reason"],
        sessions=tuple(row["sessions"]),
        doc=doc,
        entries=entries,
    )


def load_plans(
    conn: Connection, status: str | None = None, target: str | None = None
) -> list[PlanRecord]:
    stmt = select(plans).order_by(plans.c.id)
    if status is not None:
        stmt = stmt.where(plans.c.status == status)
    if target is not None:
        stmt = stmt.where(plans.c.target == target)
    return [_plan(r) for r in conn.execute(stmt).mappings()]


def get_plan(conn: Connection, plan_id: int) -> PlanRecord | None:
    row = conn.execute(select(plans).where(plans.c.id == plan_id)).mappings().first()
    return None if row is None else _plan(row)


def plan_state(conn: Connection, plan_id: int) -> tuple[str, str] | None:
    """A plan's (target, status), without reading its document and entries."""
    row = conn.execute(select(plans.c.target, plans.c.status).where(plans.c.id == plan_id)).first()
    return None if row is None else (str(row[0]), str(row[1]))


def set_plan_status(
    conn: Connection, plan_id: int, status: str, now: float, *, only_from: str | None = None
) -> bool:
    """Set a plan's status (only if it is ``only_from``, when given, in the same statement);
    False if no plan matched."""
    stmt = (
        update(plans)
        .where(plans.c.id == plan_id)
        .values(status=check_plan_status(status), updated=now)
    )
    if only_from is not None:
        stmt = stmt.where(plans.c.status == only_from)
    return conn.execute(stmt).rowcount > 0


def expire_plans(conn: Connection, target: str, keep: Collection[int], now: float) -> list[int]:
    """Held plans of ``target`` not in ``keep`` become expired; their ids."""
    stmt = select(plans.c.id).where(and_(plans.c.target == target, plans.c.status == "held"))
    gone = sorted(int(i) for i in conn.execute(stmt).scalars() if int(i) not in set(keep))
    if gone:
        conn.execute(
            update(plans).where(plans.c.id.in_(gone)).values(status="expired", updated=now)
        )
    return gone


# ---- origins ---------------------------------------------------------------------------


def load_origins(conn: Connection, target: str) -> dict[str, frozenset[str]]:
    stmt = select(origins.c.holder, origins.c.member).where(origins.c.target == target)
    found: dict[str, set[str]] = {}
    for holder, member in conn.execute(stmt):
        found.setdefault(holder, set()).add(member)
    return {holder: frozenset(members) for holder, members in sorted(found.items())}


def set_origins(conn: Connection, target: str, holder: str, members: Collection[str]) -> None:
    """Replace ``holder``'s origin record on ``target`` by ``members``."""
    conn.execute(
        delete(origins).where(and_(origins.c.target == target, origins.c.holder == holder))
    )
    listed = sorted({str(m) for m in members})
    if listed:
        conn.execute(
            insert(origins), [{"target": target, "holder": holder, "member": m} for m in listed]
        )
