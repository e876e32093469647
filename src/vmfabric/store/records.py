"""The switch side of the store: port states, switch status, the audit log and plans.

Each function runs on a connection inside a transaction its caller opened. Plans are
stored as JSON exactly as given; their status moves through PLAN_STATUSES.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, and_, bindparam, delete, insert, select, update

from vmfabric.core.model import PortState
from vmfabric.store import rows
from vmfabric.store.schema import audit_log, plans, port_states, switches

PLAN_STATUSES = frozenset(
    {"held", "check", "approved", "applying", "applied", "failed", "expired", "superseded"}
)
SWITCH_STATES = frozenset({"ok", "unreachable", "error"})


@dataclass(frozen=True)
class AuditEntry:
    """One VLAN added to or removed from a switch port, and why."""

    time: float
    switch: str
    port: str
    vlan: int
    action: Literal["add", "remove"]
    reason: str
    session: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time, "switch": self.switch, "port": self.port, "vlan": self.vlan,
            "action": self.action, "reason": self.reason, "session": self.session,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        action: Literal["add", "remove"] = "remove" if data["action"] == "remove" else "add"
        return cls(
            float(data["time"]), str(data["switch"]), str(data["port"]), int(data["vlan"]),
            action, str(data.get("reason", "")), str(data.get("session", "")),
        )  # fmt: skip


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


def set_switch_status(conn: Connection, switch: str, state: str, error: str, now: float) -> None:
    if state not in SWITCH_STATES:
        raise ValueError(f"switch state {state!r} is not one of {sorted(SWITCH_STATES)}")
    conn.execute(delete(switches).where(switches.c.name == switch))
    conn.execute(insert(switches).values(name=switch, state=state, error=error, updated=now))


def switch_rows(conn: Connection) -> list[dict[str, Any]]:
    stmt = select(switches).order_by(switches.c.name)
    return [dict(r) for r in conn.execute(stmt).mappings()]


# ---- audit -----------------------------------------------------------------------------


def record_audit(conn: Connection, entries: Sequence[AuditEntry]) -> None:
    values = [
        {
            "time": e.time,
            "switch": e.switch,
            "port": e.port,
            "vlan": e.vlan,
            "action": e.action,
            "reason": e.reason,
            "session": e.session,
        }
        for e in entries
    ]
    if values:
        conn.execute(insert(audit_log), values)


def audit(conn: Connection, limit: int, switch: str | None) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest first."""
    stmt = select(audit_log).order_by(audit_log.c.id.desc()).limit(max(limit, 0))
    if switch is not None:
        stmt = stmt.where(audit_log.c.switch == switch)
    return [dict(r) for r in conn.execute(stmt).mappings()]


# ---- plans -----------------------------------------------------------------------------


def save_plan(
    conn: Connection,
    switch: str,
    status: str,
    plan: Mapping[str, Any],
    *,
    reason: str,
    now: float,
    sessions: Collection[str] = (),
) -> int:
    stmt = insert(plans).values(
        switch=switch,
        status=check_plan_status(status),
        created=now,
        updated=now,
        reason=reason,
        sessions=sorted(set(sessions)),
        plan=dict(plan),
    )
    key = conn.execute(stmt).inserted_primary_key
    if key is None:
        raise RuntimeError("the database returned no id for the new plan")
    return int(key[0])


def _plan_dict(row: rows.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "switch": row["switch"],
        "status": row["status"],
        "created": row["created"],
        "updated": row["updated"],
        "reason": row["reason"],
        "sessions": list(row["sessions"]),
        "plan": row["plan"],
    }


def list_plans(conn: Connection, status: str | None) -> list[dict[str, Any]]:
    stmt = select(plans).order_by(plans.c.id)
    if status is not None:
        stmt = stmt.where(plans.c.status == status)
    return [_plan_dict(r) for r in conn.execute(stmt).mappings()]


def get_plan(conn: Connection, plan_id: int) -> dict[str, Any] | None:
    row = conn.execute(select(plans).where(plans.c.id == plan_id)).mappings().first()
    return None if row is None else _plan_dict(row)


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


def plan_ids(conn: Connection, status: str) -> list[int]:
    stmt = select(plans.c.id).where(plans.c.status == status).order_by(plans.c.id)
    return [int(i) for i in conn.execute(stmt).scalars()]


def plans_of(conn: Connection, switch: str, status: str) -> list[dict[str, Any]]:
    stmt = (
        select(plans)
        .where(and_(plans.c.switch == switch, plans.c.status == status))
        .order_by(plans.c.id)
    )
    return [_plan_dict(r) for r in conn.execute(stmt).mappings()]
