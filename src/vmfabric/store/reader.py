"""Typed reads on one snapshot of the store, for ``vmfabric.views``.

``Store.reader()`` opens one read transaction and yields a Reader bound to it, so that a
view built from several tables (VMs, hosts, port groups, port states) sees one consistent
snapshot. Every method returns domain types or the small records of this module; none
returns JSON (``vmfabric.views`` builds that).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, Select, Text, func, select, type_coerce

from vmfabric.core.model import Host, PortGroup, PortState, Vm
from vmfabric.store import inventory, records
from vmfabric.store.records import AuditEntry, PlanRecord, SwitchStatus
from vmfabric.store.rows import Key
from vmfabric.store.schema import hosts, sessions, vms


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A configured session and its last recorded status."""

    name: str
    kind: str
    url: str
    autovlan: bool
    allowed_vlans: str  # a range string, "1-4094"
    mode: str
    state: str
    in_sync: bool
    error: str
    version: str
    warnings: tuple[str, ...]
    last_update: float | None


class VmSummary(NamedTuple):
    """What ``show vm`` lists of a VM (cheaper to read than a whole Vm at 100,000 VMs)."""

    session: str
    id: str
    name: str
    host: str
    power: str
    networks: tuple[str, ...]
    ips: tuple[str, ...]
    tags: tuple[str, ...]


def _json_lists(values: Sequence[Any]) -> list[tuple[str, ...]]:
    """JSON list columns as read: text (SQLite), decoded in one parse of them all (one
    ``json.loads`` per row costs more than the whole read at 100,000 rows), or already
    decoded (PostgreSQL)."""
    if values and isinstance(values[0], str):  # a column's values are all of one type
        values = json.loads(f"[{','.join(values)}]")
    return list(map(tuple, values))


def _raw_rows(conn: Connection, stmt: Select[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``stmt`` as the database driver returns them: plain tuples, without
    SQLAlchemy's row objects (a third of ``show vm``'s read at 100,000 VMs)."""
    compiled = stmt.compile(dialect=conn.dialect)
    params: Any = compiled.params
    if compiled.positional and compiled.positiontup is not None:
        params = tuple(params[key] for key in compiled.positiontup)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


class Reader:
    """Typed reads inside one read transaction (see the module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # ---- sessions and inventory ----------------------------------------------------------

    def sessions(self, name: str | None = None) -> list[SessionRecord]:
        stmt = select(sessions).order_by(sessions.c.name)
        if name is not None:
            stmt = stmt.where(sessions.c.name == name)
        return [
            SessionRecord(**{**r, "warnings": tuple(r["warnings"])})
            for r in self._conn.execute(stmt).mappings()
        ]

    def counts(self, table: str) -> dict[str, int]:
        """Rows per session of ``table`` ("hosts" or "vms")."""
        found = {"hosts": hosts, "vms": vms}[table]
        stmt = select(found.c.session, func.count()).group_by(found.c.session)
        return {session: int(n) for session, n in self._conn.execute(stmt)}

    def vms_per_host(self) -> dict[Key, int]:
        stmt = select(vms.c.session, vms.c.host, func.count()).group_by(vms.c.session, vms.c.host)
        return {(s, h): int(n) for s, h, n in self._conn.execute(stmt)}

    def hosts(self, session: str | None = None) -> dict[Key, Host]:
        return inventory.load_hosts(self._conn, session)

    def portgroups(self, session: str | None = None) -> dict[Key, PortGroup]:
        return inventory.load_portgroups(self._conn, session)

    def vms(self, session: str | None = None, name: str | None = None) -> list[Vm]:
        return inventory.load_vms(self._conn, session, name)

    def vm_summaries(self, name: str | None = None) -> list[VmSummary]:
        """Every VM (or those called ``name``) with its networks, addresses and tags."""
        lists = (type_coerce(c, Text) for c in (vms.c.networks, vms.c.ips, vms.c.tags))
        stmt = select(vms.c.session, vms.c.id, vms.c.name, vms.c.host, vms.c.power, *lists)
        if name is not None:
            stmt = stmt.where(vms.c.name == name)
        found = _raw_rows(self._conn, stmt)
        if not found:
            return []
        columns = list(zip(*found, strict=True))
        nets, ips, tags = (_json_lists(c) for c in columns[5:])
        return list(map(VmSummary, *columns[:5], nets, ips, tags))

    # ---- target side ---------------------------------------------------------------------

    def port_states(self) -> list[PortState]:
        return records.load_port_states(self._conn)

    def switches(self) -> list[SwitchStatus]:
        return records.load_switches(self._conn)

    def plans(self, status: str | None = None, target: str | None = None) -> list[PlanRecord]:
        return records.load_plans(self._conn, status, target)

    def plan(self, plan_id: int) -> PlanRecord | None:
        return records.get_plan(self._conn, plan_id)

    def audit(self, limit: int, target: str | None = None) -> list[tuple[int, AuditEntry]]:
        """The newest ``limit`` entries (of one target), newest first, with their ids."""
        return records.load_audit(self._conn, limit, target)

    def origins(self, target: str) -> dict[str, frozenset[str]]:
        return records.load_origins(self._conn, target)
