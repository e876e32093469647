"""The fake switch driver (registered as ``fake``): an in-memory Open vSwitch-like switch.

It behaves exactly as ``OvsDriver`` does, because it uses the same pure port semantics
(the switch-port base's arithmetic, OVS's port modes: the closed-port placeholder 4095,
the origin record in ``external_ids:vmfabric-dynamic``, open-port keep/close, no
transaction for no-ops), and it
keeps the same counters (``transactions``, ``writes``). It is a normal plugin, meant for
tests, benchmarks and demos that need a switch with injected latency or failures.

Options (keys of the switch entry, model ``FakeSwitch``):

- ``latency``: seconds slept in every ``read_ports`` and ``apply`` (default 0).
- ``fail_next``: number of upcoming ``apply`` calls that raise TransientError (default 0);
  tests may also set the ``fail_next`` attribute at any time.
- ``unreachable``: true makes every call raise TransientError, as an unreachable switch.
- ``ports``: the ports the switch has at first (default: every edge port). Each starts as
  a closed trunk (``trunks=[4095]``, no VLANs) unless ``port_modes: {NAME: ...}`` says:
  ``open`` (no tag, empty trunks: carries every VLAN), ``access:TAG``, or a VLAN range
  string (``10,20-22``): a trunk with those VLANs, all static.
- ``state_file``: a JSON file holding the switch state, so that separate processes (the
  CLI, a benchmark's workers) share one fake switch. Created from the options above when
  absent; read before and written after every call, under an exclusive file lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from vmfabric.config import SwitchConfig
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.core.model import PortChange, PortState
from vmfabric.core.vlans import format_vlans, parse_vlans
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import (
    CLOSED_VLAN,
    DRIVERS,
    PortWrite,
    check_changes,
    trunk_ops,
)
from vmfabric.targets.switchport.ovs import (
    DYNAMIC_KEY,
    RawPort,
    parse_record,
    plan_port,
    port_state,
)


@dataclass(slots=True)
class FakePort:
    """One port of the fake switch: the OVS Port columns that matter, plus other_config so
    tests can prove a driver never touches other columns."""

    tag: int | None = None
    trunks: set[int] = field(default_factory=set)
    vlan_mode: str = ""
    external_ids: dict[str, str] = field(default_factory=dict)
    other_config: dict[str, str] = field(default_factory=dict)

    def raw(self) -> RawPort:
        return RawPort(
            tag=self.tag,
            trunks=frozenset(self.trunks),
            vlan_mode=self.vlan_mode,
            dynamic=parse_record(self.external_ids.get(DYNAMIC_KEY)),
        )

    def write(self, change: PortWrite) -> None:
        insert, delete = trunk_ops(frozenset(self.trunks), change)
        self.trunks = (self.trunks | insert) - delete
        if change.record is not None and change.record:
            self.external_ids[DYNAMIC_KEY] = format_vlans(change.record)
        elif change.record is not None:
            self.external_ids.pop(DYNAMIC_KEY, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "trunks": sorted(self.trunks),
            "vlan_mode": self.vlan_mode,
            "external_ids": self.external_ids,
            "other_config": self.other_config,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FakePort:
        return cls(
            tag=data.get("tag"),
            trunks=set(data.get("trunks", [])),
            vlan_mode=str(data.get("vlan_mode", "")),
            external_ids=dict(data.get("external_ids", {})),
            other_config=dict(data.get("other_config", {})),
        )


def initial_port(spec: str) -> FakePort:
    """A port as a ``port_modes`` value describes it ("" : a closed trunk)."""
    spec = spec.strip()
    if not spec:
        return FakePort(trunks={CLOSED_VLAN})
    if spec == "open":
        return FakePort()
    if spec.startswith("access:"):
        return FakePort(tag=next(iter(parse_vlans(spec.removeprefix("access:")))))
    return FakePort(trunks=set(parse_vlans(spec)))


def _port_mode(spec: str) -> str:
    try:
        initial_port(spec)
    except (ValueError, StopIteration):
        raise ValueError(f"{spec!r} is not open, access:TAG or a VLAN range") from None
    return spec


class FakeSwitch(SwitchConfig):
    """An in-memory switch for tests, benchmarks and demos (see the module docstring)."""

    driver: Literal["fake"]
    latency: float = Field(
        0.0, ge=0, le=3600, allow_inf_nan=False, description="Seconds slept in every call."
    )
    fail_next: int = Field(0, ge=0, description="This many upcoming applies fail.")
    unreachable: bool = Field(False, description="Every call fails as unreachable.")
    ports: list[str] | None = Field(None, description="Ports the switch has (default: edge).")
    port_modes: dict[str, Annotated[str, AfterValidator(_port_mode)]] = Field(
        default_factory=dict,
        description="Initial port modes: open, access:TAG or a VLAN range (a static trunk).",
    )
    state_file: Path | None = Field(None, description="JSON file shared between processes.")

    def endpoint(self) -> str:
        return f"state file {self.state_file}" if self.state_file else ""


@DRIVERS.register("fake")
class FakeDriver:
    """An in-memory switch with the OVS driver's semantics. See the module docstring."""

    Options = FakeSwitch
    capabilities = Capabilities(atomic=True, origin="target")

    def __init__(self, config: SwitchConfig) -> None:
        if not isinstance(config, FakeSwitch):
            raise ConfigError(f"switch {config.name}: not a fake switch entry")
        self.config = config
        self.name = config.name
        self.latency = config.latency
        self.fail_next = config.fail_next
        self.unreachable = config.unreachable
        self.transactions = 0
        self.writes = 0
        self.state_file = config.state_file
        self.ports: dict[str, FakePort] = self._initial_ports()
        self.connected = False
        self._changed = threading.Condition()
        self._seq = 0

    def _initial_ports(self) -> dict[str, FakePort]:
        names = self.config.ports or self.config.edge_ports
        return {name: initial_port(self.config.port_modes.get(name, "")) for name in names}

    # ---- state sharing ---------------------------------------------------------------------

    @contextmanager
    def _state(self, write: bool) -> Iterator[dict[str, FakePort]]:
        """The port table; loaded from and saved to ``state_file`` under a lock if set."""
        if self.state_file is None:
            yield self.ports
            if write:
                self._notify()
            return
        lock_path = self.state_file.with_name(self.state_file.name + ".lock")
        with open(lock_path, "a+", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.state_file.exists():
                data = json.loads(self.state_file.read_text(encoding="utf-8"))
                self.ports = {k: FakePort.from_json(v) for k, v in data["ports"].items()}
            else:
                write = True
            yield self.ports
            if write:
                self._save()
                self._notify()

    def _notify(self) -> None:
        with self._changed:
            self._seq += 1
            self._changed.notify_all()

    def _save(self) -> None:
        assert self.state_file is not None
        tmp = self.state_file.with_name(self.state_file.name + f".{os.getpid()}.tmp")
        data = {"ports": {k: v.to_json() for k, v in self.ports.items()}}
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_file)

    def _enter(self) -> None:
        if self.unreachable:
            raise TransientError(f"switch {self.name}: cannot reach fake switch (unreachable)")
        if self.latency:
            time.sleep(self.latency)

    # ---- the Driver protocol -----------------------------------------------------------------

    def connect(self) -> None:
        self._enter()
        self.connected = True

    def close(self) -> None:
        self.connected = False

    def _states(self, ports: dict[str, FakePort], names: Sequence[str]) -> dict[str, PortState]:
        out = {}
        for name in names:
            port = ports.get(name)
            out[name] = port_state(self.name, name, port.raw() if port is not None else None)
        return out

    def read_ports(self) -> dict[str, PortState]:
        self._enter()
        with self._state(write=False) as ports:
            return self._states(ports, self.config.edge_ports)

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        check_changes(self.config, changes)
        self._enter()
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientError(f"switch {self.name}: injected failure (fail_next)")
        names = list(dict.fromkeys(c.port for c in changes))
        with self._state(write=True) as ports:
            writes = self._plan(ports, changes)
            if writes:
                for write in writes:
                    ports[write.port].write(write)
                self.transactions += 1
                self.writes += sum(w.memberships for w in writes)
            return self._states(ports, names)

    def _plan(self, ports: dict[str, FakePort], changes: Sequence[PortChange]) -> list[PortWrite]:
        """The writes of all changes, planned before any is made (all or nothing)."""
        pending = []
        for change in changes:
            port = ports.get(change.port)
            write = plan_port(
                port.raw() if port is not None else None, change, self.config.open_ports
            )
            if write:
                pending.append(write)
        return pending

    def sync(self) -> None:
        """Nothing to catch up with: present for parity with OvsDriver."""

    def wait_for(
        self, predicate: Callable[[Mapping[str, PortState]], bool], timeout: float
    ) -> dict[str, PortState]:
        """Block until ``predicate(read_ports())`` holds, as OvsDriver.wait_for does.

        Woken by changes made through this object; with ``state_file`` it also re-reads the
        file every 50 ms to see other processes' changes. TransientError after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._changed:
                seen = self._seq
            states = self.read_ports()
            if predicate(states):
                return states
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(f"switch {self.name}: awaited state not seen in {timeout:g}s")
            if self.state_file is not None:
                remaining = min(remaining, 0.05)
            self._wait_change(seen, remaining)

    def _wait_change(self, seen: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._seq != seen, timeout)

    # ---- test setup --------------------------------------------------------------------------

    def set_port(self, name: str, port: FakePort | None) -> None:
        """Create, replace (or with None, remove) a port of the fake switch."""
        with self._state(write=True) as ports:
            if port is None:
                ports.pop(name, None)
            else:
                ports[name] = port

    def port(self, name: str) -> FakePort | None:
        """A copy of a port's raw columns (None if the switch has no such port)."""
        with self._state(write=False) as ports:
            port = ports.get(name)
            return FakePort.from_json(port.to_json()) if port is not None else None
