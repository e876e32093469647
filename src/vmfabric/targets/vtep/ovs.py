"""The Open vSwitch VTEP driver: flood lists as VXLAN tunnel ports, through OVSDB (ovsdbapp).

A flood list is rendered as one tunnel port per (VNI, remote VTEP) on the VTEP bridge::

    Port vx10110-10.253.1.3   tag=110  protected=true  external_ids:vmfabric-flood=dynamic
      Interface vx10110-10.253.1.3  type=vxlan
        options: key=10110 remote_ip=10.253.1.3 local_ip=10.253.1.1

- The port's ``tag`` maps the VLAN to the VNI (OVS pops it into the tunnel and pushes it
  back on the way out); ``NORMAL`` forwarding then floods a VLAN's broadcast to exactly
  the tunnel ports of its VNI (head-end replication) and learns remote MACs per port.
- ``protected=true`` is split horizon: OVS never forwards between two protected ports, so
  a frame that came from one VTEP is never flooded on to another (three VTEPs would loop).
- ``local_ip`` is the VTEP address; OVS routes the outer packet by its own copy of the
  kernel routing table (see ``vmfabric.lab.vtep`` for the namespace this needs).

Reading: every port of the bridge whose single interface is of type ``vxlan`` with a
numeric ``key`` and an IP ``remote_ip`` is a member of that VNI's flood list (ports with
``key=flow`` or ``remote_ip=flow`` are not flood-list entries and are ignored). vmfabric's
origin record is on the switch: ``external_ids:vmfabric-flood=dynamic`` on the ports it
created; any other tunnel port is static and never removed.

Writing: all changes of one VTEP are one OVSDB transaction (insert Interface + Port and add
it to the bridge; remove a port from the bridge, OVSDB then deletes the unreferenced rows),
guarded by ``verify`` of the bridge's ports, plus ``next_cfg`` incremented; ``apply`` then
waits until ovs-vswitchd reports ``cur_cfg`` caught up (the tunnel exists in the
datapath) and returns the state read back. Capabilities: atomic, origin on the target.

Options (``overlay`` config, per switch ``vtep:``): ``ovsdb`` and ``bridge`` (default: the
switch entry's own), ``address`` (the VTEP address, also ``local_ip``), ``timeout``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ovs.db import idl as ovs_idl  # type: ignore[import-untyped]
from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import command, connection, transaction

from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.targets.base import Capabilities
from vmfabric.targets.vtep.base import FloodChange, FloodList

LOG = logging.getLogger(__name__)

ORIGIN_KEY = "vmfabric-flood"
ORIGIN_VALUE = "dynamic"
_STRING_MAP = {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
# The part of the Open_vSwitch schema this driver replicates and writes (vswitch 8.x).
_SCHEMA: dict[str, Any] = {
    "name": "Open_vSwitch",
    "version": "8.3.1",
    "tables": {
        "Open_vSwitch": {
            "columns": {"next_cfg": {"type": "integer"}, "cur_cfg": {"type": "integer"}},
            "maxRows": 1,
            "isRoot": True,
        },
        "Bridge": {
            "columns": {
                "name": {"type": "string", "mutable": False},
                "ports": {
                    "type": {
                        "key": {"type": "uuid", "refTable": "Port"},
                        "min": 0,
                        "max": "unlimited",
                    }
                },
            },
            "isRoot": True,
        },
        "Port": {
            "columns": {
                "name": {"type": "string", "mutable": False},
                "interfaces": {
                    "type": {
                        "key": {"type": "uuid", "refTable": "Interface"},
                        "min": 1,
                        "max": "unlimited",
                    }
                },
                "tag": {
                    "type": {
                        "key": {"type": "integer", "minInteger": 0, "maxInteger": 4095},
                        "min": 0,
                        "max": 1,
                    }
                },
                "protected": {"type": "boolean"},
                "external_ids": _STRING_MAP,
            }
        },
        "Interface": {
            "columns": {
                "name": {"type": "string", "mutable": False},
                "type": {"type": "string"},
                "options": _STRING_MAP,
                "error": {"type": {"key": "string", "min": 0, "max": 1}},
            }
        },
    },
}


@dataclass(frozen=True, slots=True)
class OvsVtepOptions:
    """How to reach one OVS VTEP (resolved from the switch entry and its ``vtep:``)."""

    name: str
    ovsdb: str
    bridge: str
    address: str
    timeout: float = 5.0


def port_name(vni: int, remote: str) -> str:
    """The tunnel port of (VNI, remote VTEP): ``vx<vni>-<remote>``."""
    return f"vx{vni}-{remote}"


def tunnel_member(row: Any) -> tuple[int, str] | None:
    """(VNI, remote VTEP) if Port ``row`` is a flood-list entry, else None."""
    if len(row.interfaces) != 1:
        return None
    iface = row.interfaces[0]
    if iface.type != "vxlan":
        return None
    key, remote = iface.options.get("key", ""), iface.options.get("remote_ip", "")
    if not key.isdigit():
        return None
    try:
        return int(key), str(ipaddress.ip_address(remote))
    except ValueError:
        return None


def flood_lists(rows: Mapping[str, Any]) -> dict[int, FloodList]:
    """Every VNI's flood list from the bridge's Port rows (by name)."""
    remotes: dict[int, set[str]] = {}
    dynamic: dict[int, set[str]] = {}
    for row in rows.values():
        member = tunnel_member(row)
        if member is None:
            continue
        vni, remote = member
        remotes.setdefault(vni, set()).add(remote)
        if row.external_ids.get(ORIGIN_KEY) == ORIGIN_VALUE:
            dynamic.setdefault(vni, set()).add(remote)
    return {
        vni: FloodList(frozenset(found), frozenset(dynamic.get(vni, ())))
        for vni, found in remotes.items()
    }


class _Idl(connection.OvsdbIdl):  # type: ignore[misc]
    """The replica, plus a change counter that waiters sleep on."""

    def __init__(self, remote: str, changed: threading.Condition) -> None:
        helper = ovs_idl.SchemaHelper(schema_json=_SCHEMA)
        helper.register_all()
        super().__init__(remote, helper)
        self.changed = changed
        self.seq = 0

    def notify(self, event: Any, row: Any, updates: Any = None) -> None:
        with self.changed:
            self.seq += 1
            self.changed.notify_all()

    def ready(self) -> bool:
        return bool(self._session.is_connected()) and self.state == self.IDL_S_MONITORING


@dataclass(slots=True)
class _Api:
    """What ovsdbapp's Transaction needs of an API object: the idl (one per driver)."""

    idl: _Idl


def _bridge(idl: _Idl, options: OvsVtepOptions) -> Any:
    for row in idl.tables["Bridge"].rows.values():
        if row.name == options.bridge:
            return row
    raise ConfigError(f"VTEP {options.name}: bridge {options.bridge} does not exist")


def _root(idl: _Idl) -> Any:
    return next(iter(idl.tables["Open_vSwitch"].rows.values()), None)


class _ApplyCommand(command.BaseCommand):  # type: ignore[misc]
    """Runs in the connection thread against the replica as it is at commit time."""

    def __init__(
        self,
        api: _Api,
        options: OvsVtepOptions,
        changes: Sequence[FloodChange],
        vlan_of: Mapping[int, int],
    ) -> None:
        super().__init__(api)
        self.options, self.changes, self.vlan_of = options, changes, vlan_of
        self.created: list[str] = []
        self.writes = 0
        self.next_cfg: int | None = None

    def run_idl(self, txn: Any) -> None:
        bridge = _bridge(self.api.idl, self.options)
        bridge.verify("ports")
        ports = {p.name: p for p in bridge.ports}
        by_member = {m: p for p in bridge.ports if (m := tunnel_member(p)) is not None}
        self.created, self.writes = [], 0
        for change in self.changes:
            for remote in sorted(change.add - change.remove):
                if (change.vni, remote) not in by_member:
                    self._create(txn, bridge, ports, change.vni, remote)
            for remote in sorted(change.remove):
                row = by_member.get((change.vni, remote))
                if row is not None and row.external_ids.get(ORIGIN_KEY) == ORIGIN_VALUE:
                    bridge.delvalue("ports", row)
                    self.writes += 1
        root = _root(self.api.idl)
        if self.writes and root is not None:
            root.increment("next_cfg")  # ovs-vswitchd acts on a change once next_cfg moves

    def _create(
        self, txn: Any, bridge: Any, ports: Mapping[str, Any], vni: int, remote: str
    ) -> None:
        name = port_name(vni, remote)
        if name in ports:
            raise PermanentError(
                f"VTEP {self.options.name}: port {name} exists but is not VNI {vni}'s tunnel "
                f"to {remote}; rename or remove it"
            )
        vlan = self.vlan_of.get(vni)
        if vlan is None:
            raise ConfigError(f"VTEP {self.options.name}: VNI {vni} has no VLAN in the overlay")
        iface = txn.insert(self.api.idl.tables["Interface"])
        iface.name, iface.type = name, "vxlan"
        iface.options = {"key": str(vni), "remote_ip": remote, "local_ip": self.options.address}
        port = txn.insert(self.api.idl.tables["Port"])
        port.name, port.interfaces, port.tag = name, [iface.uuid], [vlan]
        port.protected = True
        port.external_ids = {ORIGIN_KEY: ORIGIN_VALUE}
        bridge.addvalue("ports", port.uuid)
        self.created.append(name)
        self.writes += 1

    def post_commit(self, txn: Any) -> None:
        if self.writes and _root(self.api.idl) is not None:
            self.next_cfg = int(txn.get_increment_new_value())


class _BarrierCommand(command.BaseCommand):  # type: ignore[misc]
    """A read-only round trip: its reply comes after every update the server sent before."""

    def run_idl(self, txn: Any) -> None:
        txn.add_op({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["_uuid"]})


class OvsVtepDriver:
    """One OVS VTEP's flood lists. See the module docstring.

    ``vlan_of`` maps each VNI to the VLAN its tunnel ports are tagged with. ``transactions``
    and ``writes`` count committed transactions and memberships changed (tests, bench).
    """

    capabilities = Capabilities(atomic=True, origin="target")

    def __init__(self, options: OvsVtepOptions, vlan_of: Mapping[int, int]) -> None:
        self.options = options
        self.name = options.name
        self.address = options.address
        self.vlan_of = dict(vlan_of)
        self.timeout = options.timeout
        self.transactions = 0
        self.writes = 0
        self._changed = threading.Condition()
        self._conn: connection.Connection | None = None
        self._idl: _Idl | None = None
        self._guard = threading.Lock()

    def _where(self) -> str:
        return f"VTEP {self.name}: OVSDB {self.options.ovsdb}"

    # ---- connection --------------------------------------------------------------------

    def connect(self) -> None:
        with self._guard:
            if self._conn is not None:
                return
            idl = _Idl(self.options.ovsdb, self._changed)
            conn = connection.Connection(idl, self.timeout)
            try:
                conn.start()
            except ovsdbapp_exceptions.TimeoutException:
                idl.close()
                raise TransientError(
                    f"{self._where()}: no answer within {self.timeout:g}s"
                ) from None
            self._idl, self._conn = idl, conn

    def close(self) -> None:
        with self._guard:
            conn, self._conn, self._idl = self._conn, None, None
        if conn is not None:
            conn.stop(timeout=self.timeout)

    def _started(self) -> tuple[connection.Connection, _Idl]:
        if self._conn is None:
            self.connect()
        conn, idl = self._conn, self._idl
        if conn is None or idl is None:
            raise TransientError(f"{self._where()}: connection closed")
        return conn, idl

    @contextmanager
    def _replica(self) -> Iterator[_Idl]:
        """Hold the replica lock while it is connected and current (waits up to timeout)."""
        conn, idl = self._started()
        deadline = time.monotonic() + self.timeout
        while True:
            if not conn.lock.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
                raise TransientError(f"{self._where()}: busy for {self.timeout:g}s")
            if idl.ready():
                break
            conn.lock.release()
            if time.monotonic() >= deadline:
                raise TransientError(f"{self._where()}: connection lost for {self.timeout:g}s")
            time.sleep(0.02)
        try:
            yield idl
        finally:
            conn.lock.release()

    # ---- reads ---------------------------------------------------------------------------

    def read(self) -> dict[int, FloodList]:
        with self._replica() as idl:
            return flood_lists({p.name: p for p in _bridge(idl, self.options).ports})

    def sync(self) -> None:
        """Make the replica current: what OVSDB committed before this call is visible to
        reads after it (one read-only round trip)."""
        conn, idl = self._started()
        self._commit(conn, idl, _BarrierCommand(_Api(idl)))

    def tunnel_errors(self) -> dict[str, str]:
        """Tunnel ports ovs-vswitchd could not create: port name -> its error."""
        with self._replica() as idl:
            found = {}
            for port in _bridge(idl, self.options).ports:
                if tunnel_member(port) is not None and port.interfaces[0].error:
                    found[port.name] = str(port.interfaces[0].error[0])
            return found

    # ---- writes --------------------------------------------------------------------------

    def _pending(self, idl: _Idl, changes: Sequence[FloodChange]) -> bool:
        state = flood_lists({p.name: p for p in _bridge(idl, self.options).ports})
        for change in changes:
            have = state.get(change.vni, FloodList())
            if (change.add - change.remove) - have.remotes or change.remove & have.dynamic:
                return True
        return False

    def apply(self, changes: Sequence[FloodChange]) -> dict[int, FloodList]:
        """Apply ``changes`` in one OVSDB transaction (none if all are no-ops); wait until
        ovs-vswitchd runs it; return every VNI's flood list read back."""
        with self._replica() as idl:
            if not self._pending(idl, changes):
                return flood_lists({p.name: p for p in _bridge(idl, self.options).ports})
        conn, idl = self._started()
        cmd = _ApplyCommand(_Api(idl), self.options, changes, self.vlan_of)
        self._commit(conn, idl, cmd)
        if cmd.next_cfg is not None:
            self.transactions += 1
            self.writes += cmd.writes
            self._wait_applied(cmd.next_cfg)
        errors = {n: e for n, e in self.tunnel_errors().items() if n in cmd.created}
        if errors:
            name, error = sorted(errors.items())[0]
            raise PermanentError(f"{self._where()}: tunnel port {name}: {error}")
        return self.read()

    def _wait_applied(self, next_cfg: int) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            with self._changed:
                seen = self._idl.seq if self._idl is not None else -1
            with self._replica() as idl:
                root = _root(idl)
                if root is None or root.cur_cfg >= next_cfg:
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"{self._where()}: ovs-vswitchd has not applied the change after "
                    f"{self.timeout:g}s (committed to OVSDB)"
                )
            self._wait_change(seen, remaining)

    def _wait_change(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._idl is None or self._idl.seq != seen, timeout)

    def _commit(self, conn: connection.Connection, idl: _Idl, cmd: command.BaseCommand) -> None:
        txn = transaction.Transaction(
            _Api(idl), conn, timeout=self.timeout, check_error=True, log_errors=False
        )
        txn.add(cmd)
        try:
            txn.commit()
        except ovsdbapp_exceptions.TimeoutException:
            raise TransientError(
                f"{self._where()}: transaction not done in {self.timeout:g}s"
            ) from None
        except RuntimeError as exc:
            if "timed out" in str(exc):
                raise TransientError(f"{self._where()}: transaction timed out") from None
            raise PermanentError(f"{self._where()}: transaction refused: {exc}") from None
