"""The Open vSwitch driver: edge-port trunk VLANs through OVSDB (ovsdbapp), one transaction.

This module owns two things:

1. **OVS port semantics, pure** (``RawPort``, ``port_state``, ``plan_port``); the trunk
   arithmetic and the closed-port rule come from the switch-port base. An OVS port's VLAN
   carriage follows from its ``tag``, ``trunks`` and ``vlan_mode`` columns:

   - ACCESS: ``vlan_mode`` is ``access`` or ``dot1q-tunnel``, or it is empty and ``tag`` is
     set (OVS then ignores ``trunks``). Never written.
   - TRUNK: otherwise, when ``trunks`` is non-empty. Its VLANs are ``trunks`` minus the
     placeholder 4095.
   - OPEN: otherwise (no tag, empty trunks): the port carries ALL VLANs. With
     ``open_ports: keep`` it is left alone; with ``close`` a change makes it a trunk of
     exactly the VLANs added.
   - MISSING: not a port of the configured bridge. Never written.

   The trap: removing a trunk port's last VLAN would leave ``trunks`` empty, which OVS
   reads as "carry every VLAN". The driver keeps such a port closed with ``trunks=[4095]``
   (802.1Q reserves 4095; OVS never carries it) and drops the placeholder again when a
   VLAN is added.

   vmfabric's origin record lives on the switch, in the Port's
   ``external_ids:vmfabric-dynamic`` as a range string (``"110,120-122"``): after a
   change it is ``(record | added) - removed``, where ``added`` counts only VLANs this
   change actually put on the port, so a VLAN people configured never becomes dynamic.

2. **The driver** (``OvsDriver``, registered as ``ovs``): an ovsdbapp connection that keeps
   an in-memory replica of the Bridge and Port tables. Reads come from the replica (it
   trails the server by one notification; ``sync()`` waits for it to catch up); a
   write is one OVSDB transaction for all ports of the switch, built from set mutations
   (insert/delete single trunk VLANs, set/delete one external_ids key) guarded by
   ``verify`` of the columns the decision was made from, so a concurrent manual edit is
   neither clobbered nor raced (OVSDB answers "try again" and the decision is redone on
   fresh data). Changes that are no-ops against the current state send no transaction.

A write also increments ``Open_vSwitch.next_cfg`` (as ovs-vsctl does): ovs-vswitchd does
not act on a database change until it moves. ``apply`` then waits until ovs-vswitchd
reports ``cur_cfg`` caught up, i.e. the switch forwards by the new configuration.

Options (keys of the switch entry, model ``OvsSwitch``): ``ovsdb`` and ``bridge``
(required); ``timeout`` (seconds, default 5) bounds connecting, each read, each
transaction and the wait for ovs-vswitchd; ``wait_applied`` (default true) set false
returns as soon as OVSDB committed. Capabilities: atomic (one OVSDB transaction), origin
record on the switch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from ovs.db import idl as ovs_idl  # type: ignore[import-untyped]
from ovsdbapp import exceptions as ovsdbapp_exceptions
from ovsdbapp.backend.ovs_idl import command, connection, transaction
from pydantic import Field, field_validator

from vmfabric.config import SwitchConfig
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.core.vlans import format_vlans, parse_vlans
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import (
    CLOSED_VLAN,
    DRIVERS,
    PortWrite,
    check_changes,
    trunk_ops,
    trunk_write,
)

LOG = logging.getLogger(__name__)

DYNAMIC_KEY = "vmfabric-dynamic"
DEFAULT_TIMEOUT = 5.0
_ACCESS_MODES = ("access", "dot1q-tunnel")

# ---- OVS port semantics (pure) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawPort:
    """The columns of an OVS Port that decide its VLANs, plus the parsed origin record."""

    tag: int | None = None
    trunks: frozenset[int] = frozenset()
    vlan_mode: str = ""
    dynamic: frozenset[int] = frozenset()

    @property
    def mode(self) -> PortMode:
        if self.vlan_mode in _ACCESS_MODES or (not self.vlan_mode and self.tag is not None):
            return PortMode.ACCESS
        return PortMode.TRUNK if self.trunks else PortMode.OPEN

    @property
    def vlans(self) -> frozenset[int]:
        """VLANs listed in trunks, without the closed-port placeholder."""
        return self.trunks - {CLOSED_VLAN}


def parse_record(text: str | None) -> frozenset[int]:
    """The origin record from its external_ids text; unreadable text counts as empty."""
    if not text:
        return frozenset()
    try:
        return parse_vlans(text)
    except ValueError:
        LOG.warning("ignoring unreadable %s record %r", DYNAMIC_KEY, text)
        return frozenset()


def port_state(switch: str, port: str, raw: RawPort | None) -> PortState:
    """A port's PortState as vmfabric reports it (MISSING when ``raw`` is None)."""
    if raw is None:
        return PortState(switch=switch, port=port, mode=PortMode.MISSING)
    mode = raw.mode
    vlans = raw.vlans if mode is PortMode.TRUNK else frozenset()
    if mode is PortMode.ACCESS and raw.tag is not None:
        vlans = frozenset({raw.tag})
    return PortState(switch, port, mode, vlans, raw.dynamic & vlans)


def plan_port(raw: RawPort | None, change: PortChange, open_ports: str) -> PortWrite:
    """What ``change`` writes to a port in state ``raw`` (an empty PortWrite: nothing).

    The switch-port base does the arithmetic; the whole origin record (not only the VLANs
    still on the port) is carried over, as OVS keeps it."""
    if raw is None or raw.mode is PortMode.ACCESS:
        return PortWrite(change.port)
    if raw.mode is PortMode.OPEN:
        if open_ports != "close":
            return PortWrite(change.port)
        return trunk_write(change, frozenset(), raw.dynamic, narrow=True)
    return trunk_write(change, raw.vlans, raw.dynamic)


class OvsSwitch(SwitchConfig):
    """An Open vSwitch bridge reached through OVSDB."""

    driver: Literal["ovs"]
    ovsdb: str = Field(
        description="OVSDB endpoint: unix:PATH or tcp:HOST:PORT (comma-separated: a cluster)."
    )
    bridge: str = Field(min_length=1, description="The bridge whose edge ports are managed.")
    timeout: float = Field(
        DEFAULT_TIMEOUT,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds bounding connecting, each read, each transaction and the wait "
        "for ovs-vswitchd.",
    )
    wait_applied: bool = Field(
        True, description="Wait until ovs-vswitchd runs the new configuration (cur_cfg)."
    )

    @field_validator("ovsdb")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        for remote in value.split(","):
            kind, _, rest = remote.strip().partition(":")
            if kind not in ("unix", "tcp") or not rest:
                raise ValueError(f"{remote.strip()!r} is not unix:PATH or tcp:HOST:PORT")
        return value

    def endpoint(self) -> str:
        return f"OVSDB {self.ovsdb} bridge {self.bridge}"


# ---- OVSDB plumbing -----------------------------------------------------------------------

_INT_VLAN = {"type": "integer", "minInteger": 0, "maxInteger": 4095}
# The part of the Open_vSwitch schema this driver replicates and writes: nothing else is
# monitored, so a switch with thousands of interfaces costs us nothing.
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
            }
        },
        "Port": {
            "columns": {
                "name": {"type": "string", "mutable": False},
                "tag": {"type": {"key": _INT_VLAN, "min": 0, "max": 1}},
                "trunks": {"type": {"key": _INT_VLAN, "min": 0, "max": 4096}},
                "vlan_mode": {
                    "type": {
                        "key": {
                            "type": "string",
                            "enum": [
                                "set",
                                [
                                    "trunk",
                                    "access",
                                    "native-tagged",
                                    "native-untagged",
                                    "dot1q-tunnel",
                                ],
                            ],
                        },
                        "min": 0,
                        "max": 1,
                    }
                },
                "external_ids": {
                    "type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}
                },
            }
        },
    },
}


class _Idl(connection.OvsdbIdl):  # type: ignore[misc]
    """The replica, plus a change counter that ``OvsDriver.wait_for`` can sleep on."""

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
        """Connected and holding a complete, current replica."""
        return bool(self._session.is_connected()) and self.state == self.IDL_S_MONITORING


@dataclass(slots=True)
class _Api:
    """What ovsdbapp's Transaction needs of an API object: the idl.

    ovsdbapp's own ``impl_idl.OvsdbIdl`` keeps its connection in a class attribute, so every
    instance in a process would share the first switch's connection; one driver per switch
    needs a connection per instance, hence this minimal stand-in.
    """

    idl: _Idl


def _raw_port(row: Any) -> RawPort:
    tag = row.tag[0] if row.tag else None
    mode = row.vlan_mode[0] if row.vlan_mode else ""
    record = parse_record(row.external_ids.get(DYNAMIC_KEY))
    return RawPort(tag=tag, trunks=frozenset(row.trunks), vlan_mode=mode, dynamic=record)


def _bridge_ports(idl: _Idl, config: OvsSwitch) -> dict[str, Any]:
    """Port rows of the configured bridge by name; ConfigError if the bridge is missing."""
    for bridge in idl.tables["Bridge"].rows.values():
        if bridge.name == config.bridge:
            return {port.name: port for port in bridge.ports}
    raise ConfigError(f"switch {config.name}: bridge {config.bridge} does not exist on the switch")


class _ApplyCommand(command.BaseCommand):  # type: ignore[misc]
    """Runs in the connection thread against the replica as it is at commit time."""

    def __init__(self, api: _Api, config: OvsSwitch, changes: Sequence[PortChange]) -> None:
        super().__init__(api)
        self.config = config
        self.changes = changes
        self.memberships = 0
        self.committed = False
        self.next_cfg: int | None = None

    def run_idl(self, txn: Any) -> None:
        rows = _bridge_ports(self.api.idl, self.config)
        self.memberships = 0
        wrote = False
        for change in self.changes:
            row = rows.get(change.port)
            write = plan_port(
                _raw_port(row) if row is not None else None, change, self.config.open_ports
            )
            if write:
                _write_row(row, write)
                self.memberships += write.memberships
                wrote = True
        root = _root_row(self.api.idl)
        if wrote and root is not None:
            root.increment("next_cfg")  # ovs-vswitchd acts on a change once next_cfg moves

    def post_commit(self, txn: Any) -> None:
        self.committed = True
        if _root_row(self.api.idl) is not None:
            self.next_cfg = int(txn.get_increment_new_value())


def _root_row(idl: _Idl) -> Any:
    """The Open_vSwitch table's single row, or None on an uninitialised database."""
    return next(iter(idl.tables["Open_vSwitch"].rows.values()), None)


class _BarrierCommand(command.BaseCommand):  # type: ignore[misc]
    """A read-only round trip: its reply comes after every update the server sent before."""

    def run_idl(self, txn: Any) -> None:
        txn.add_op({"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["_uuid"]})


def _write_row(row: Any, write: PortWrite) -> None:
    for column in ("tag", "trunks", "vlan_mode", "external_ids"):
        row.verify(column)
    insert, delete = trunk_ops(frozenset(row.trunks), write)
    for vlan in sorted(insert):
        row.addvalue("trunks", vlan)
    for vlan in sorted(delete):
        row.delvalue("trunks", vlan)
    if write.record is not None and write.record:
        row.setkey("external_ids", DYNAMIC_KEY, format_vlans(write.record))
    elif write.record is not None:
        row.delkey("external_ids", DYNAMIC_KEY)


# ---- the driver ---------------------------------------------------------------------------


@DRIVERS.register("ovs")
class OvsDriver:
    """One switch's edge ports through OVSDB. See the module docstring for the semantics.

    ``transactions`` counts committed write transactions and ``writes`` the (port, VLAN)
    memberships they changed: benchmarks and tests read them.
    """

    Options = OvsSwitch
    capabilities = Capabilities(atomic=True, origin="target")

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, OvsSwitch):
            raise ConfigError(f"switch {config.name}: not an ovs switch entry")
        self.config = config
        self.name = config.name
        self.timeout = config.timeout
        self.wait_applied = config.wait_applied
        self.transactions = 0
        self.writes = 0
        self._changed = threading.Condition()
        self._conn: connection.Connection | None = None
        self._idl: _Idl | None = None
        self._guard = threading.Lock()

    def _where(self) -> str:
        return f"switch {self.name}: OVSDB {self.config.ovsdb}"

    # ---- connection --------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and load the replica within ``timeout``; TransientError otherwise."""
        with self._guard:
            if self._conn is not None:
                return
            idl = _Idl(str(self.config.ovsdb), self._changed)
            conn = connection.Connection(idl, self.timeout)
            try:
                conn.start()
            except ovsdbapp_exceptions.TimeoutException:
                idl.close()
                raise TransientError(
                    f"switch {self.name}: cannot reach OVSDB {self.config.ovsdb}: "
                    f"no answer within {self.timeout:g}s"
                ) from None
            self._idl, self._conn = idl, conn

    def close(self) -> None:
        """Stop the connection thread and drop the replica. Safe to call twice."""
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
                raise TransientError(
                    f"switch {self.name}: cannot reach OVSDB {self.config.ovsdb}: "
                    f"connection lost, not back within {self.timeout:g}s"
                )
            time.sleep(0.02)
        try:
            yield idl
        finally:
            conn.lock.release()

    # ---- reads -----------------------------------------------------------------------------

    def _states(self, idl: _Idl, ports: Sequence[str]) -> dict[str, PortState]:
        rows = _bridge_ports(idl, self.config)
        out = {}
        for port in ports:
            row = rows.get(port)
            out[port] = port_state(self.name, port, _raw_port(row) if row is not None else None)
        return out

    def read_ports(self) -> dict[str, PortState]:
        """State of every configured edge port, by port name (see the module docstring)."""
        with self._replica() as idl:
            return self._states(idl, self.config.edge_ports)

    def sync(self) -> None:
        """Make the replica current: whatever OVSDB committed before this call (by anyone) is
        visible to reads after it. One read-only round trip; reads alone never wait."""
        conn, idl = self._started()
        self._commit(conn, idl, _BarrierCommand(_Api(idl)))

    def wait_for(
        self, predicate: Callable[[Mapping[str, PortState]], bool], timeout: float
    ) -> dict[str, PortState]:
        """Block until ``predicate(read_ports())`` holds; woken by OVSDB updates, no polling.

        Raises TransientError if it does not hold within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._seq()
            states = self.read_ports()
            if predicate(states):
                return states
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(f"{self._where()}: awaited state not seen in {timeout:g}s")
            self._wait_change(seen, remaining)

    def _seq(self) -> int:
        return self._idl.seq if self._idl is not None else -1

    def _wait_change(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._seq() != seen, timeout)

    # ---- writes ----------------------------------------------------------------------------

    def _pending(self, idl: _Idl, changes: Sequence[PortChange]) -> bool:
        rows = _bridge_ports(idl, self.config)
        for change in changes:
            row = rows.get(change.port)
            if plan_port(
                _raw_port(row) if row is not None else None, change, self.config.open_ports
            ):
                return True
        return False

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        """Apply ``changes`` in one OVSDB transaction (none if they are all no-ops).

        Returns the resulting state of the ports named in ``changes``.
        """
        check_changes(self.config, changes)
        ports = list(dict.fromkeys(c.port for c in changes))
        with self._replica() as idl:
            if not self._pending(idl, changes):
                return self._states(idl, ports)
        conn, idl = self._started()
        cmd = _ApplyCommand(_Api(idl), self.config, changes)
        self._commit(conn, idl, cmd)
        if cmd.committed:
            self.transactions += 1
            self.writes += cmd.memberships
        if cmd.next_cfg is not None and self.wait_applied:
            self._wait_applied(cmd.next_cfg)
        with self._replica() as idl:
            return self._states(idl, ports)

    def _wait_applied(self, next_cfg: int) -> None:
        """Wait until ovs-vswitchd reports (cur_cfg) that it runs configuration ``next_cfg``."""
        deadline = time.monotonic() + self.timeout
        while True:
            with self._changed:
                seen = self._seq()
            with self._replica() as idl:
                root = _root_row(idl)
                if root is None or root.cur_cfg >= next_cfg:
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"switch {self.name}: ovs-vswitchd has not applied the change after "
                    f"{self.timeout:g}s (committed to OVSDB {self.config.ovsdb})"
                )
            self._wait_change(seen, remaining)

    def _commit(self, conn: connection.Connection, idl: _Idl, cmd: command.BaseCommand) -> None:
        txn = transaction.Transaction(
            _Api(idl), conn, timeout=self.timeout, check_error=True, log_errors=False
        )
        txn.add(cmd)
        try:
            txn.commit()
        except ovsdbapp_exceptions.TimeoutException:
            raise TransientError(
                f"switch {self.name}: cannot reach OVSDB {self.config.ovsdb}: "
                f"transaction not done within {self.timeout:g}s"
            ) from None
        except RuntimeError as exc:
            if "timed out" in str(exc):
                raise TransientError(f"{self._where()}: transaction timed out") from None
            raise PermanentError(f"{self._where()}: transaction refused: {exc}") from None
