"""Writing and reading the inventory tables (hosts, port groups, VMs) on one connection.

Writes are bulk: one executemany per table, never one statement per VM, so a full
snapshot of 10,000 VMs is a handful of statements. Reads load whole tables (optionally
filtered by session or VM name) and rebuild domain objects; callers join them in Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, and_, bindparam, delete, select, true, update

from vmfabric.core.model import (
    Change,
    Host,
    HostRemoved,
    HostUpsert,
    PortGroup,
    PortGroupRemoved,
    PortGroupUpsert,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.store import rows
from vmfabric.store.rows import Key
from vmfabric.store.schema import (
    INVENTORY_TABLES,
    host_nics,
    host_uplinks,
    hosts,
    portgroups,
    sessions,
    vms,
)

_Item = TypeVar("_Item", Host, PortGroup, Vm)
_T = TypeVar("_T")

# each inventory table and its column naming the owning object within a session
_OWNER = {
    hosts: "name",
    host_nics: "host",
    host_uplinks: "host",
    portgroups: "name",
    vms: "id",
}


@dataclass(frozen=True)
class Inventory:
    """What the store holds of one or all sessions, keyed like the domain types."""

    hosts: dict[Key, Host]
    portgroups: dict[Key, PortGroup]
    vms: list[Vm]


# ---- writing ---------------------------------------------------------------------------


def _insert(conn: Connection, table: Table, values: list[rows.Row]) -> None:
    if values:
        conn.execute(table.insert(), values)


def _delete_keys(conn: Connection, table: Table, keys: Iterable[Key]) -> None:
    params = [{"k_session": s, "k_owner": o} for s, o in keys]
    if not params:
        return
    owner = table.c[_OWNER[table]]
    stmt = delete(table).where(
        and_(table.c.session == bindparam("k_session"), owner == bindparam("k_owner"))
    )
    conn.execute(stmt, params)


def insert_hosts(conn: Connection, items: Iterable[Host]) -> None:
    listed = list(items)
    _insert(conn, hosts, [rows.host_row(h) for h in listed])
    _insert(conn, host_nics, [r for h in listed for r in rows.nic_rows(h)])
    _insert(conn, host_uplinks, [r for h in listed for r in rows.uplink_rows(h)])


def insert_portgroups(conn: Connection, items: Iterable[PortGroup]) -> None:
    _insert(conn, portgroups, [rows.portgroup_row(p) for p in items])


def insert_vms(conn: Connection, items: Iterable[Vm]) -> None:
    # in chunks: the rows and the driver's parameters of 100,000 VMs at once were the
    # controller's peak memory (about 100 MB)
    listed = list(items)
    for start in range(0, len(listed), _CHUNK):
        _insert(conn, vms, [rows.vm_row(v) for v in listed[start : start + _CHUNK]])


_CHUNK = 2000


def delete_sessions(conn: Connection, names: Iterable[str]) -> None:
    """Forget everything the inventory tables hold of these sessions."""
    listed = sorted(set(names))
    if not listed:
        return
    for table in INVENTORY_TABLES:
        conn.execute(delete(table).where(table.c.session.in_(listed)))


def touch_sessions(conn: Connection, names: Iterable[str], now: float) -> None:
    """Record ``now`` as the sessions' last inventory update."""
    listed = sorted(set(names))
    if listed:
        conn.execute(update(sessions).where(sessions.c.name.in_(listed)).values(last_update=now))


def _unique(session: str, items: Sequence[_Item]) -> list[_Item]:
    """One object per key (the last wins), all of ``session``."""
    for item in items:
        if item.session != session:
            raise ValueError(f"{item.key} is not of session {session!r}")
    names = [item.id if isinstance(item, Vm) else item.name for item in items]
    if len(set(names)) == len(names):  # the usual case: no dict of 100,000 keys made
        return list(items)
    by_key: dict[Key, _Item] = {}
    for item in items:
        by_key[item.key] = item
    return list(by_key.values())


def replace(
    conn: Connection,
    session: str,
    host_items: Sequence[Host],
    portgroup_items: Sequence[PortGroup],
    vm_items: Sequence[Vm],
) -> None:
    """Replace all that is known of ``session`` by this snapshot."""
    delete_sessions(conn, [session])
    insert_hosts(conn, _unique(session, host_items))
    insert_portgroups(conn, _unique(session, portgroup_items))
    insert_vms(conn, _unique(session, vm_items))


@dataclass
class _Batch:
    """The net effect of a sequence of changes: the last change of each object wins."""

    vms: dict[Key, Vm | None]
    hosts: dict[Key, Host | None]
    portgroups: dict[Key, PortGroup | None]

    def add(self, change: Change) -> None:
        match change:
            case VmUpsert(vm=vm):
                self.vms[vm.key] = vm
            case VmRemoved(session=s, id=vm_id):
                self.vms[(s, vm_id)] = None
            case HostUpsert(host=host):
                self.hosts[host.key] = host
            case HostRemoved(session=s, name=name):
                self.hosts[(s, name)] = None
            case PortGroupUpsert(portgroup=pg):
                self.portgroups[pg.key] = pg
            case PortGroupRemoved(session=s, name=name):
                self.portgroups[(s, name)] = None

    def sessions(self) -> set[str]:
        return {s for s, _ in [*self.vms, *self.hosts, *self.portgroups]}


def _kept(items: dict[Key, _T | None]) -> list[_T]:
    return [item for item in items.values() if item is not None]


def apply(conn: Connection, changes: Sequence[Change]) -> set[str]:
    """Apply incremental changes; returns the sessions they touched."""
    batch = _Batch({}, {}, {})
    for change in changes:
        batch.add(change)
    _delete_keys(conn, vms, batch.vms)
    for table in (hosts, host_nics, host_uplinks):
        _delete_keys(conn, table, batch.hosts)
    _delete_keys(conn, portgroups, batch.portgroups)
    insert_vms(conn, _kept(batch.vms))
    insert_hosts(conn, _kept(batch.hosts))
    insert_portgroups(conn, _kept(batch.portgroups))
    return batch.sessions()


# ---- reading ---------------------------------------------------------------------------


def _where_session(table: Table, session: str | None) -> Any:
    return true() if session is None else table.c.session == session


def _children(conn: Connection, table: Table, session: str | None) -> Iterable[rows.Record]:
    """A child table's rows (of one session or all), in owner and position order."""
    stmt = select(table).where(_where_session(table, session))
    order = (table.c.session, table.c[_OWNER[table]], table.c.position)
    return conn.execute(stmt.order_by(*order)).mappings()


def load_hosts(conn: Connection, session: str | None = None) -> dict[Key, Host]:
    nic_groups = rows.group_by_owner(_children(conn, host_nics, session), "host")
    up_groups = rows.group_by_owner(_children(conn, host_uplinks, session), "host")
    result: dict[Key, Host] = {}
    for row in conn.execute(select(hosts).where(_where_session(hosts, session))).mappings():
        key = (row["session"], row["name"])
        result[key] = rows.host_from_rows(row, nic_groups.get(key, []), up_groups.get(key, []))
    return result


def load_portgroups(conn: Connection, session: str | None = None) -> dict[Key, PortGroup]:
    stmt = select(portgroups).where(_where_session(portgroups, session))
    loaded = (rows.portgroup_from_row(r) for r in conn.execute(stmt).mappings())
    return {pg.key: pg for pg in loaded}


def load_vms(conn: Connection, session: str | None = None, name: str | None = None) -> list[Vm]:
    """VMs of one or all sessions, optionally only those called ``name``."""
    stmt = select(vms).where(_where_session(vms, session))
    if name is not None:
        stmt = stmt.where(vms.c.name == name)
    return [rows.vm_from_row(r) for r in conn.execute(stmt).mappings()]


def load(conn: Connection, session: str | None = None) -> Inventory:
    return Inventory(
        hosts=load_hosts(conn, session),
        portgroups=load_portgroups(conn, session),
        vms=load_vms(conn, session),
    )
