"""Autovlan: which VLANs each edge port must carry, kept up to date one change at a time.

The model
---------
A VM *contributes* the triple (switch, port, vlan) when it is powered on, its session has
autovlan on, one of its port groups carries ``vlan`` (within the session's allowed range),
and an uplink of its host that carries that port group lands on ``port`` of ``switch``,
an edge port. The intent keeps, for every triple, the VMs contributing it (a reference
count that also answers "why"). A port's desired VLANs are the triples with at least one
contributor from a session that is not in check mode.

The intent reads the shared inventory (``vmfabric.inventory.index``). ``update`` takes the
inventory's ``Delta`` of one batch and recomputes the contributions of only the VMs it
affects (changed VMs, VMs on changed hosts, VMs in changed port groups). ``full_desired``
computes the same from scratch; the two must always agree
(tests/unit/test_engine_equivalence.py).

Planning
--------
``plan(switch, states, inventory, now)`` compares desired VLANs with the ports' state read
from the switch and returns a ``TargetPlan`` of ``Change``s (member = the VLAN as text):

- a desired VLAN not on the port is added at once;
- a VLAN on the port that vmfabric did not add (not in the switch's origin record) is
  static: never removed;
- a dynamic VLAN no longer desired goes through removal safety (``intents.removals``):
  the prune delay after its last contributor left, and fail-static while any autovlan
  session that could want it (its allowed range covers the VLAN) is out of sync;
- an open port (carries every VLAN) of a switch with ``open_ports: close`` is closed to
  the VLANs needed: the change ``(port, "all", remove)``, audited and guarded like any
  removal;
- what only check-mode sessions want is listed in ``TargetPlan.check``, never applied.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from vmfabric.core.model import (
    Host,
    PortGroup,
    PortMode,
    PortState,
    Power,
    Vm,
    carrying_uplinks,
)
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.intents.removals import Gate, Removals
from vmfabric.inventory.index import Delta, Inventory

Key = tuple[str, str]  # (session, name or id)
PortKey = tuple[str, str]  # (switch, port)
Triple = tuple[str, str, int]  # (switch, port, vlan)
_NONE: tuple[Triple, ...] = ()
_REASON_VMS = 10  # VMs named in one reason; the rest are counted
CLOSE_MEMBER = "all"  # the change that closes an open port: (port, "all", remove)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """What autovlan may do for one session."""

    name: str
    autovlan: bool = True
    allowed: frozenset[int] = frozenset(range(1, 4095))
    check: bool = False  # mode: check: its VLANs are computed and reported, never applied


@dataclass(frozen=True, slots=True)
class SwitchPolicy:
    """The ports autovlan may write on one switch. ``close_open``: narrow a port that
    carries every VLAN (OVS: no trunks) to the VLANs needed, instead of leaving it alone."""

    name: str
    edge_ports: frozenset[str]
    close_open: bool = False


def vm_triples(
    vm: Vm,
    host: Host | None,
    portgroups: Mapping[Key, PortGroup],
    policy: SessionPolicy | None,
    edge: Mapping[str, frozenset[str]],
) -> tuple[Triple, ...]:
    """The (switch, port, vlan) triples one VM needs; sorted, without duplicates."""
    if vm.power is not Power.ON or host is None or policy is None or not policy.autovlan:
        return _NONE
    found: set[Triple] = set()
    for name in vm.networks:
        pg = portgroups.get((vm.session, name))
        if pg is None:
            continue
        vlans = pg.vlans & policy.allowed
        if not vlans:
            continue
        uplinks, _ = carrying_uplinks(host, pg)
        for up in uplinks:
            if up.port in edge.get(up.switch, ()):
                found.update((up.switch, up.port, v) for v in vlans)
    return tuple(sorted(found)) if found else _NONE


def full_desired(
    hosts: Iterable[Host],
    portgroups: Iterable[PortGroup],
    vms: Iterable[Vm],
    policies: Iterable[SessionPolicy],
    switches: Iterable[SwitchPolicy],
) -> dict[PortKey, frozenset[int]]:
    """Desired VLANs of every edge port, computed from scratch (verification, cold start)."""
    host_map = {h.key: h for h in hosts}
    pg_map = {p.key: p for p in portgroups}
    pol = {p.name: p for p in policies if not p.check}
    edge = {s.name: s.edge_ports for s in switches}
    out: dict[PortKey, set[int]] = {}
    for vm in vms:
        host = host_map.get((vm.session, vm.host))
        for sw, port, vlan in vm_triples(vm, host, pg_map, pol.get(vm.session), edge):
            out.setdefault((sw, port), set()).add(vlan)
    return {k: frozenset(v) for k, v in out.items()}


# a port's VLANs: a sorted array('H'), 2 bytes a VLAN (memory: a set costs ~50 a VLAN)
Vlans: TypeAlias = "array[int]"


def _put(index: dict[PortKey, Vlans], port: PortKey, vlan: int) -> None:
    vlans = index.get(port)
    if vlans is None:
        index[port] = array("H", (vlan,))
        return
    at = bisect_left(vlans, vlan)
    if at == len(vlans) or vlans[at] != vlan:
        vlans.insert(at, vlan)


def _take(index: dict[PortKey, Vlans], port: PortKey, vlan: int) -> None:
    vlans = index.get(port)
    if vlans is None:
        return
    at = bisect_left(vlans, vlan)
    if at < len(vlans) and vlans[at] == vlan:
        del vlans[at]
        if not vlans:
            del index[port]


def _as_tuple(value: Triple | tuple[Triple, ...] | None) -> tuple[Triple, ...]:
    """A VM's contribution as stored (one triple alone, or several) as a tuple."""
    if not value:
        return _NONE
    if isinstance(value[0], str):
        return (value,)
    return value


class AutovlanIntent:
    """Incremental desired VLANs per edge port, and planning. Not thread-safe: the runtime
    owns it. See the module docstring."""

    name = "autovlan"
    kind = "switchport"

    def __init__(
        self,
        switches: Iterable[SwitchPolicy],
        policies: Iterable[SessionPolicy],
        removals: Removals,
    ) -> None:
        self.switches = {s.name: s for s in switches}
        self._edge = {s.name: s.edge_ports for s in self.switches.values()}
        self.policies = {p.name: p for p in policies}
        self.removals = removals
        self._contrib: dict[Key, Triple | tuple[Triple, ...]] = {}
        # users of a triple: one VM key alone (the common case, no set), or a set of them
        self._users: dict[Triple, Key | set[Key]] = {}
        self._checkers: dict[Triple, int] = {}  # users from sessions in check mode (rare)
        self._desired: dict[PortKey, Vlans] = {}
        self._checked: dict[PortKey, Vlans] = {}  # wanted by check-mode sessions only
        self._dirty: set[str] = set()

    # ---- queries ---------------------------------------------------------------------

    def desired_vlans(self) -> dict[PortKey, frozenset[int]]:
        return {k: frozenset(v) for k, v in self._desired.items() if v}

    def checked(self) -> dict[PortKey, frozenset[int]]:
        """VLANs that only sessions in check mode want, per port: reported, not applied."""
        return {k: frozenset(v) for k, v in self._checked.items() if v}

    def desired_for(self, switch: str, port: str) -> frozenset[int]:
        return frozenset(self._desired.get((switch, port), ()))

    def desired(self, target: str) -> dict[str, frozenset[str]]:
        return {
            port: frozenset(str(v) for v in vlans)
            for (sw, port), vlans in self._desired.items()
            if sw == target and vlans
        }

    def recompute(self, inventory: Inventory) -> dict[str, dict[str, frozenset[str]]]:
        full = full_desired(
            inventory.hosts.values(),
            inventory.portgroups.values(),
            inventory.vms.values(),
            self.policies.values(),
            self.switches.values(),
        )
        out: dict[str, dict[str, frozenset[str]]] = {}
        for (sw, port), vlans in full.items():
            out.setdefault(sw, {})[port] = frozenset(str(v) for v in vlans)
        return out

    def users(self, switch: str, port: str, vlan: int) -> frozenset[Key]:
        found = self._users.get((switch, port, vlan))
        if found is None:
            return frozenset()
        return frozenset(found) if isinstance(found, set) else frozenset((found,))

    def contributions(self) -> dict[Key, tuple[Triple, ...]]:
        return {k: _as_tuple(v) for k, v in self._contrib.items()}

    # ---- changes -----------------------------------------------------------------------

    def update(self, inventory: Inventory, delta: Delta, now: float) -> set[str]:
        """Recompute the VMs the delta affects; return the switches whose desired state
        changed, or every switch when a session's sync state changed (held removals may
        go)."""
        keys = delta.affected_vms(inventory)
        self._recompute(inventory, keys, now)
        dirty, self._dirty = self._dirty, set()
        if delta.sessions:
            dirty |= set(self.switches)
        return dirty

    def set_policies(
        self, policies: Iterable[SessionPolicy], inventory: Inventory, now: float
    ) -> set[str]:
        """Replace session policies (config reload); recomputes the VMs of changed ones."""
        new = {p.name: p for p in policies}
        old = self.policies
        changed = {n for n in set(new) | set(old) if new.get(n) != old.get(n)}
        keys = [k for k in self._contrib if k[0] in changed]
        for key in keys:  # counted under the old policy: uncount under it
            self._set_contrib(key, _NONE, now)
        self.policies = new
        self._recompute(inventory, [k for k in inventory.vms if k[0] in changed], now)
        dirty, self._dirty = self._dirty, set()
        return dirty

    def set_switches(
        self, switches: Iterable[SwitchPolicy], inventory: Inventory, now: float
    ) -> set[str]:
        """Replace switch policies (config reload): every VM is recomputed."""
        new = {s.name: s for s in switches}
        changed = {n for n in set(new) | set(self.switches) if new.get(n) != self.switches.get(n)}
        for name in set(self.switches) - set(new):
            self.removals.forget_target(name)
        self.switches = new
        self._edge = {s.name: s.edge_ports for s in new.values()}
        self._recompute(inventory, list(inventory.vms), now)
        for key in [k for k in self._contrib if k not in inventory.vms]:
            self._set_contrib(key, _NONE, now)
        dirty, self._dirty = self._dirty, set()
        return (dirty | changed) & set(new)

    def _recompute(self, inventory: Inventory, keys: Iterable[Key], now: float) -> None:
        edge, policies, portgroups = self._edge, self.policies, inventory.portgroups
        for key in keys:
            vm = inventory.vms.get(key)
            if vm is None:
                self._set_contrib(key, _NONE, now)
                continue
            host = inventory.hosts.get((vm.session, vm.host))
            triples = vm_triples(vm, host, portgroups, policies.get(vm.session), edge)
            self._set_contrib(key, triples, now)

    def _set_contrib(self, key: Key, new: tuple[Triple, ...], now: float) -> None:
        old = _as_tuple(self._contrib.get(key))
        if old == new:
            return
        if new:  # one triple is kept alone, not in a 1-tuple (memory: most VMs have one)
            self._contrib[key] = new[0] if len(new) == 1 else new
        else:
            self._contrib.pop(key, None)
        for t in old:
            if t not in new:
                self._drop_user(t, key, now)
        for t in new:
            if t not in old:
                self._add_user(t, key)

    def _checking(self, session: str) -> bool:
        policy = self.policies.get(session)
        return policy is not None and policy.check

    def _add_user(self, t: Triple, key: Key) -> None:
        found = self._users.get(t)
        if found is None:
            self._users[t] = key
            count = 1
        elif isinstance(found, set):
            found.add(key)
            count = len(found)
        else:
            self._users[t] = {found, key}
            count = 2
        port = (t[0], t[1])
        if self._checking(key[0]):
            checkers = self._checkers.get(t, 0) + 1
            self._checkers[t] = checkers
            if checkers == count:  # no enforcing user: check mode only
                _put(self._checked, port, t[2])
                self._dirty.add(t[0])
            return
        if count - self._checkers.get(t, 0) > 1:
            return
        _put(self._desired, port, t[2])
        _take(self._checked, port, t[2])
        self.removals.reclaimed(t[0], t[1], str(t[2]))
        self._dirty.add(t[0])

    def _drop_user(self, t: Triple, key: Key, now: float) -> None:
        count = self._discard_user(t, key)
        if count < 0:
            return
        port = (t[0], t[1])
        checkers = self._checkers.get(t, 0)
        if self._checking(key[0]):
            checkers -= 1
            if checkers:
                self._checkers[t] = checkers
            else:
                self._checkers.pop(t, None)
            if count == 0:
                _take(self._checked, port, t[2])
                self._dirty.add(t[0])
            return
        if count - checkers:
            return
        _take(self._desired, port, t[2])
        if checkers:  # only check-mode users are left
            _put(self._checked, port, t[2])
        self.removals.vacated(t[0], t[1], str(t[2]), now)
        self._dirty.add(t[0])

    def _discard_user(self, t: Triple, key: Key) -> int:
        """Remove ``key`` from the users of ``t``; the users left, or -1 if it was none."""
        found = self._users.get(t)
        if isinstance(found, set):
            if key not in found:
                return -1
            found.discard(key)
            if len(found) == 1:
                self._users[t] = next(iter(found))
            return len(found)
        if found is None or found != key:
            return -1
        del self._users[t]
        return 0

    # ---- planning ----------------------------------------------------------------------

    def gate(self, inventory: Inventory) -> Gate:
        """The sync gate of a VLAN (member text): the first autovlan session that could want
        it and is not in sync (or ""), and the latest time one of those (re)gained sync."""

        def gate(member: str) -> tuple[str, float]:
            if not member.isdigit():
                return "", 0.0
            vlan = int(member)
            latest = 0.0
            for name, pol in sorted(self.policies.items()):
                if pol.autovlan and vlan in pol.allowed:
                    if not inventory.in_sync(name):
                        return name, latest
                    latest = max(latest, inventory.synced_at(name))
            return "", latest

        return gate

    def covering_sessions(self, vlan: int) -> tuple[str, ...]:
        return tuple(
            n for n, p in sorted(self.policies.items()) if p.autovlan and vlan in p.allowed
        )

    def plan(
        self, switch: str, states: Mapping[str, PortState], inventory: Inventory, now: float
    ) -> TargetPlan:
        """The changes that bring the switch's ports to their desired VLANs at ``now``.

        Ports without a state (not read yet) are skipped. Removals that are not yet due
        are listed in ``held``; what only check-mode sessions want in ``check``."""
        sw = self.switches.get(switch)
        if sw is None:
            return TargetPlan(switch, self.kind)
        gate = self.gate(inventory)
        changes: list[Change] = []
        held: list[Change] = []
        check: list[Change] = []
        notes: dict[str, str] = {}
        for port in sorted(sw.edge_ports):
            state = states.get(port)
            if state is None:
                continue
            todo, waiting = self._plan_port(sw, state, inventory, (now, gate))
            changes.extend(todo)
            held.extend(waiting)
            check.extend(self._check_port(state, inventory))
            if state.mode is PortMode.OPEN and not sw.close_open:
                notes[port] = "open: carries every VLAN, left alone (open_ports: keep)"
        return TargetPlan(switch, self.kind, tuple(changes), tuple(held), tuple(check), notes)

    def _plan_port(
        self, sw: SwitchPolicy, state: PortState, inventory: Inventory, at: tuple[float, Gate]
    ) -> tuple[list[Change], list[Change]]:
        now, gate = at
        changes: list[Change] = []
        held: list[Change] = []
        closing = state.mode is PortMode.OPEN and sw.close_open
        if state.mode is not PortMode.TRUNK and not closing:
            return changes, held
        key = (state.switch, state.port)
        desired = set(self._desired.get(key, ()))
        vlans = frozenset() if closing else state.vlans
        if closing:
            note = "port carried every VLAN: closed to those needed (open_ports: close)"
            changes.append(Change(state.port, CLOSE_MEMBER, "remove", note))
        for vlan in sorted(desired - vlans):
            changes.append(self._add_change(key, vlan, inventory))
        dynamic = {str(v) for v in state.dynamic}
        wanted = {str(v) for v in desired}
        remove, waiting = self.removals.due(
            sw.name, state.port, dynamic, wanted, now=now, gate=gate
        )
        for member in sorted(remove, key=int):
            since = self.removals.pending(sw.name, state.port).get(member)
            why = "no powered-on VM needs it"
            if since is not None and self.removals.prune_delay:
                why += f" (prune delay {self.removals.prune_delay:g}s elapsed)"
            sessions = self.covering_sessions(int(member))
            changes.append(Change(state.port, member, "remove", why, sessions))
        for member, why in sorted(waiting.items(), key=lambda i: int(i[0])):
            held.append(Change(state.port, member, "remove", why))
        return changes, held

    def _check_port(self, state: PortState, inventory: Inventory) -> list[Change]:
        """What sessions in check mode would add to this port (never applied)."""
        key = (state.switch, state.port)
        would = set(self._checked.get(key, ())) - state.vlans
        return [self._add_change(key, v, inventory) for v in sorted(would)]

    def _add_change(self, key: PortKey, vlan: int, inventory: Inventory) -> Change:
        users = sorted(self.users(key[0], key[1], vlan))
        names: list[str] = []
        pgs: set[str] = set()
        sessions: set[str] = set()
        for vm_key in users:
            vm = inventory.vms.get(vm_key)
            if vm is None:
                continue
            sessions.add(vm.session)
            if len(names) < _REASON_VMS:
                names.append(vm.name)
            for pg_name in vm.networks:
                pg = inventory.portgroups.get((vm.session, pg_name))
                if pg is not None and vlan in pg.vlans:
                    pgs.add(pg_name)
        more = f" and {len(users) - len(names)} more" if len(users) > len(names) else ""
        reason = f"VMs {', '.join(names)}{more} (port group {', '.join(sorted(pgs))})"
        return Change(key[1], str(vlan), "add", reason, tuple(sorted(sessions)))
