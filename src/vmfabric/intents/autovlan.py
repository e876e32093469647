"""Autovlan: which VLANs each edge port must carry, kept up to date one change at a time.

The model
---------
A VM *contributes* the triple (switch, port, vlan) when it is powered on, its session has
autovlan on, one of its port groups carries ``vlan`` (within the session's allowed range),
and an uplink of its host that carries that port group lands on ``port`` of ``switch``,
an edge port. The intent keeps, for every triple, how many VMs contribute it (a reference
count); which VMs they are ("why") is found when a plan needs it, on the hosts wired to
the port. A port's desired VLANs are the triples with at least one contributor from a
session that is not in check mode. Nothing is kept per VM (memory, issue 15).

The intent reads the shared inventory (``vmfabric.inventory.index``). ``update`` takes the
inventory's ``Delta`` of one batch and recounts only the VMs it affects (changed VMs, VMs
on changed hosts, VMs in changed port groups): what a VM counted is recomputed from its
record before the batch (``Delta.before``) against the intent's own view of hosts and
port groups as it last counted them. ``full_desired`` computes the same from scratch; the
two must always agree (tests/unit/test_engine_equivalence.py).

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
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import TypeAlias, TypeVar

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
_T = TypeVar("_T", Host, PortGroup)
_REASON_VMS = 10  # VMs named in one reason; the rest are counted
CLOSE_MEMBER = "all"  # the change that closes an open port: (port, "all", remove)
_ON = Power.ON  # an enum member read from its class costs ~150 ns: once per event counts


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
    if vm.power is not _ON or host is None or policy is None or not policy.autovlan:
        return _NONE
    found: list[Triple] = []
    allowed = policy.allowed
    for name in vm.networks:
        pg = portgroups.get((vm.session, name))
        if pg is None:
            continue
        vlans = pg.vlans if pg.vlans <= allowed else pg.vlans & allowed  # no copy if all
        if not vlans:
            continue
        # no virtual switch named: every uplink carries it (carrying_uplinks, without a call)
        uplinks = carrying_uplinks(host, pg)[0] if pg.vswitch else host.uplinks
        for up in uplinks:
            if up.port in edge.get(up.switch, ()):
                for v in vlans:
                    found.append((up.switch, up.port, v))
    if len(found) < 2:  # the common case: one triple (a VM recounts twice per change)
        return (found[0],) if found else _NONE
    return tuple(sorted(set(found)))


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


def _follow(mine: dict[Key, _T], table: Mapping[Key, _T], keys: Iterable[Key]) -> None:
    """Make ``mine`` equal ``table`` at ``keys``."""
    for key in keys:
        item = table.get(key)
        if item is None:
            mine.pop(key, None)
        else:
            mine[key] = item


def _adopt(inventory: Inventory, delta: Delta) -> Delta:
    """``delta`` widened to the whole inventory, for an intent whose view is still empty
    while the inventory is not (made over a filled inventory): against an empty view
    nothing was counted, so every VM is counted afresh."""
    return Delta(
        delta.vms | set(inventory.vms),
        delta.hosts | set(inventory.hosts),
        delta.portgroups | set(inventory.portgroups),
        delta.sessions,
        delta.before,
    )


class _Counts:
    """One port's desired VLANs with the number of (enforcing) VMs that need each: a sorted
    array of 2-byte VLANs and a parallel array of counts (a few hundred bytes a port)."""

    __slots__ = ("counts", "vlans")

    def __init__(self) -> None:
        self.vlans: Vlans = array("H")
        self.counts: array[int] = array("I")

    def add(self, vlan: int) -> int:
        """One more user of ``vlan``; the users it has now."""
        vlans, at = self.vlans, bisect_left(self.vlans, vlan)
        if at < len(vlans) and vlans[at] == vlan:
            self.counts[at] += 1
            return self.counts[at]
        vlans.insert(at, vlan)
        self.counts.insert(at, 1)
        return 1

    def drop(self, vlan: int) -> int:
        """One user of ``vlan`` fewer; the users left (-1: it had none)."""
        vlans, at = self.vlans, bisect_left(self.vlans, vlan)
        if at == len(vlans) or vlans[at] != vlan:
            return -1
        left = self.counts[at] - 1
        if left:
            self.counts[at] = left
        else:
            del vlans[at]
            del self.counts[at]
        return left


class AutovlanIntent:
    """Incremental desired VLANs per edge port, and planning. Not thread-safe: the runtime
    owns it. See the module docstring.

    Nothing is kept per VM (memory): the intent keeps, per port, how many VMs need each
    VLAN, and its own view of the hosts and port groups as it last counted them. What a VM
    counted is recomputed when it changes, from its record before the batch (the delta's
    ``before``) or the inventory's, against that view. Invariant, between updates: the
    counts are the sum over the inventory's VMs of ``vm_triples`` against the view, and the
    view equals the inventory's hosts and port groups for every key a delta named."""

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
        self._hosts: dict[Key, Host] = {}  # the view: hosts and port groups as counted
        self._pgs: dict[Key, PortGroup] = {}
        self._desired: dict[PortKey, _Counts] = {}  # enforcing users per port and VLAN
        self._checkers: dict[Triple, int] = {}  # users from sessions in check mode (rare)
        self._checked: dict[PortKey, Vlans] = {}  # wanted by check-mode sessions only
        self._dirty: set[str] = set()

    # ---- queries ---------------------------------------------------------------------

    def desired_vlans(self) -> dict[PortKey, frozenset[int]]:
        return {k: frozenset(v.vlans) for k, v in self._desired.items() if v.vlans}

    def checked(self) -> dict[PortKey, frozenset[int]]:
        """VLANs that only sessions in check mode want, per port: reported, not applied."""
        return {k: frozenset(v) for k, v in self._checked.items() if v}

    def desired_for(self, switch: str, port: str) -> frozenset[int]:
        found = self._desired.get((switch, port))
        return frozenset(found.vlans) if found is not None else frozenset()

    def desired(self, target: str) -> dict[str, frozenset[str]]:
        return {
            port: frozenset(str(v) for v in counts.vlans)
            for (sw, port), counts in self._desired.items()
            if sw == target and counts.vlans
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

    def users(self, switch: str, port: str, vlan: int, inventory: Inventory) -> frozenset[Key]:
        """The VMs that need ``vlan`` on the port (found on the hosts wired to it)."""
        hosts = self._hosts_by_port(switch).get(port, ())
        found = self._port_users(inventory, switch, port, hosts).get(vlan, ())
        return frozenset(vm.key for vm in found)

    def _hosts_by_port(self, switch: str) -> dict[str, list[Key]]:
        """The hosts of the view with an uplink on each port of ``switch``."""
        out: dict[str, list[Key]] = {}
        for key, host in self._hosts.items():
            for up in host.uplinks:
                if up.switch == switch:
                    found = out.setdefault(up.port, [])
                    if not found or found[-1] != key:
                        found.append(key)
        return out

    def _port_users(
        self, inventory: Inventory, switch: str, port: str, hosts: Iterable[Key]
    ) -> dict[int, list[Vm]]:
        """Per VLAN, the VMs on ``hosts`` that need it on (switch, port)."""
        out: dict[int, list[Vm]] = {}
        vms = inventory.vms
        for host in hosts:
            for key in inventory.vms_on_host(host):
                vm = vms.get(key)
                if vm is None:
                    continue
                for sw, p, vlan in self._triples(vm):
                    if p == port and sw == switch:
                        found = out.get(vlan)
                        if found is None:
                            out[vlan] = [vm]
                        else:
                            found.append(vm)
        return out

    # ---- changes -----------------------------------------------------------------------

    def update(self, inventory: Inventory, delta: Delta, now: float) -> set[str]:
        """Recount the VMs the delta affects; return the switches whose desired state
        changed, or every switch when a session's sync state changed (held removals may
        go)."""
        if not self._hosts and not self._pgs and (inventory.hosts or inventory.portgroups):
            delta = _adopt(inventory, delta)
        vms, before, changed = inventory.vms, delta.before, delta.vms
        if not self._desired and not self._checkers:  # nothing counted: a first inventory
            self._move_view(inventory, delta)
            self._count_fresh(delta.affected_vms(inventory), vms)
        elif delta.hosts or delta.portgroups:  # uncount against the old view, then move it
            keys = delta.affected_vms(inventory)
            olds = [(k, self._triples(before.get(k) if k in changed else vms.get(k))) for k in keys]
            self._move_view(inventory, delta)
            for key, old in olds:
                self._set(key, old, self._triples(vms.get(key)), now)
        else:  # only VMs changed (the common batch): each is its own record before it
            triples = self._triples
            for key in changed:
                old = triples(before.get(key))
                new = triples(vms.get(key))
                if old != new:
                    self._set(key, old, new, now)
        dirty, self._dirty = self._dirty, set()
        if delta.sessions:
            dirty |= set(self.switches)
        return dirty

    def _count_fresh(self, keys: Iterable[Key], vms: Mapping[Key, Vm]) -> None:
        """Count ``keys`` when nothing is counted: no VM counted anything before (every
        count is a VM's), so each VM's triples are new, added in bulk per port (a
        100,000-VM cold start: one call per port instead of one per VM and triple)."""
        found: list[Triple] = []
        checking: list[Triple] = []  # from sessions in check mode (rare)
        for key in keys:
            triples = self._triples(vms.get(key))
            if not triples:
                continue
            if self._checking(key[0]):
                checking.extend(triples)
            else:
                found.extend(triples)
        per_port: dict[PortKey, list[tuple[int, int]]] = {}
        for (sw, port, vlan), users in Counter(found).items():
            per_port.setdefault((sw, port), []).append((vlan, users))
        for holder, items in per_port.items():
            self._count_port(holder, items)
        for t in checking:
            self._add_user(t, True)

    def _count_port(self, port: PortKey, items: list[tuple[int, int]]) -> None:
        """A port counted afresh: ``items`` (VLAN, users), each VLAN's first users."""
        items.sort()
        counts = self._desired[port] = _Counts()
        counts.vlans.extend(vlan for vlan, _ in items)
        counts.counts.extend(users for _, users in items)
        if port in self._checked:
            for vlan, _ in items:
                _take(self._checked, port, vlan)
        if self.removals.waiting(*port):
            for vlan, _ in items:
                self.removals.reclaimed(port[0], port[1], str(vlan))
        self._dirty.add(port[0])

    def _move_view(self, inventory: Inventory, delta: Delta) -> None:
        _follow(self._hosts, inventory.hosts, delta.hosts)
        _follow(self._pgs, inventory.portgroups, delta.portgroups)

    def set_policies(
        self, policies: Iterable[SessionPolicy], inventory: Inventory, now: float
    ) -> set[str]:
        """Replace session policies (config reload); recounts the VMs of changed ones."""
        new = {p.name: p for p in policies}
        old = self.policies
        changed = {n for n in set(new) | set(old) if new.get(n) != old.get(n)}
        vms = [vm for k, vm in inventory.vms.items() if k[0] in changed]
        for vm in vms:  # counted under the old policy (check mode or not): uncount under it
            self._set(vm.key, self._triples(vm), _NONE, now)
        self.policies = new
        for vm in vms:
            self._set(vm.key, _NONE, self._triples(vm), now)
        dirty, self._dirty = self._dirty, set()
        return dirty

    def set_switches(
        self, switches: Iterable[SwitchPolicy], inventory: Inventory, now: float
    ) -> set[str]:
        """Replace switch policies (config reload): every VM is recounted."""
        new = {s.name: s for s in switches}
        changed = {n for n in set(new) | set(self.switches) if new.get(n) != self.switches.get(n)}
        for name in set(self.switches) - set(new):
            self.removals.forget_target(name)
        olds = [(vm, self._triples(vm)) for vm in inventory.vms.values()]
        self.switches = new
        self._edge = {s.name: s.edge_ports for s in new.values()}
        for vm, old in olds:
            self._set(vm.key, old, self._triples(vm), now)
        dirty, self._dirty = self._dirty, set()
        return (dirty | changed) & set(new)

    def _triples(self, vm: Vm | None) -> tuple[Triple, ...]:
        """What ``vm`` needs against the view (what it is counted for, between updates)."""
        if vm is None:
            return _NONE
        host = self._hosts.get((vm.session, vm.host))
        return vm_triples(vm, host, self._pgs, self.policies.get(vm.session), self._edge)

    def _set(self, key: Key, old: tuple[Triple, ...], new: tuple[Triple, ...], now: float) -> None:
        if old == new:
            return
        checking = self._checking(key[0])
        for t in old:
            if t not in new:
                self._drop_user(t, checking, now)
        for t in new:
            if t not in old:
                self._add_user(t, checking)

    def _checking(self, session: str) -> bool:
        policy = self.policies.get(session)
        return policy is not None and policy.check

    def _enforced(self, port: PortKey, vlan: int) -> bool:
        counts = self._desired.get(port)
        if counts is None:
            return False
        at = bisect_left(counts.vlans, vlan)
        return at < len(counts.vlans) and counts.vlans[at] == vlan

    def _add_user(self, t: Triple, checking: bool) -> None:
        """One more user of ``t``, from a session in check mode or not."""
        port = (t[0], t[1])
        if checking:
            self._checkers[t] = self._checkers.get(t, 0) + 1
            if not self._enforced(port, t[2]):  # no enforcing user: check mode only
                _put(self._checked, port, t[2])
                self._dirty.add(t[0])
            return
        counts = self._desired.get(port)
        if counts is None:
            counts = self._desired[port] = _Counts()
        if counts.add(t[2]) > 1:
            return
        if self._checked:
            _take(self._checked, port, t[2])
        self.removals.reclaimed(t[0], t[1], str(t[2]))
        self._dirty.add(t[0])

    def _drop_user(self, t: Triple, checking: bool, now: float) -> None:
        """One user of ``t`` fewer, from a session in check mode or not."""
        port = (t[0], t[1])
        if checking:
            checkers = self._checkers.pop(t, 0) - 1
            if checkers > 0:
                self._checkers[t] = checkers
            elif checkers == 0 and not self._enforced(port, t[2]):
                _take(self._checked, port, t[2])
                self._dirty.add(t[0])
            return
        counts = self._desired.get(port)
        if counts is None or counts.drop(t[2]) != 0:
            return
        if not counts.vlans:
            del self._desired[port]
        if self._checkers.get(t):  # only check-mode users are left
            _put(self._checked, port, t[2])
        self.removals.vacated(t[0], t[1], str(t[2]), now)
        self._dirty.add(t[0])

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
        adds = _Adds(self, inventory, switch)
        changes: list[Change] = []
        held: list[Change] = []
        check: list[Change] = []
        notes: dict[str, str] = {}
        for port in sorted(sw.edge_ports):
            state = states.get(port)
            if state is None:
                continue
            todo, waiting = self._plan_port(sw, state, adds, (now, gate))
            changes.extend(todo)
            held.extend(waiting)
            check.extend(self._check_port(state, adds))
            if state.mode is PortMode.OPEN and not sw.close_open:
                notes[port] = "open: carries every VLAN, left alone (open_ports: keep)"
        return TargetPlan(switch, self.kind, tuple(changes), tuple(held), tuple(check), notes)

    def _plan_port(
        self, sw: SwitchPolicy, state: PortState, adds: _Adds, at: tuple[float, Gate]
    ) -> tuple[list[Change], list[Change]]:
        now, gate = at
        changes: list[Change] = []
        held: list[Change] = []
        closing = state.mode is PortMode.OPEN and sw.close_open
        if state.mode is not PortMode.TRUNK and not closing:
            return changes, held
        key = (state.switch, state.port)
        counts = self._desired.get(key)
        desired = set(counts.vlans) if counts is not None else set()
        vlans = frozenset() if closing else state.vlans
        if closing:
            note = "port carried every VLAN: closed to those needed (open_ports: close)"
            changes.append(Change(state.port, CLOSE_MEMBER, "remove", note))
        for vlan in sorted(desired - vlans):
            changes.append(adds.change(state.port, vlan))
        dynamic = {str(v) for v in state.dynamic}
        # only a dynamic VLAN can go: without one, what is wanted does not matter
        wanted = {str(v) for v in desired & state.dynamic} if dynamic else set()
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

    def _check_port(self, state: PortState, adds: _Adds) -> list[Change]:
        """What sessions in check mode would add to this port (never applied)."""
        would = set(self._checked.get((state.switch, state.port), ())) - state.vlans
        return [adds.change(state.port, v) for v in sorted(would)]


class _Adds:
    """The add changes of one plan, each with its reason: the VMs that need the VLAN on the
    port, found once per port on the hosts wired to it (nothing is kept per VM)."""

    def __init__(self, intent: AutovlanIntent, inventory: Inventory, switch: str) -> None:
        self.intent, self.inventory, self.switch = intent, inventory, switch
        self._hosts: dict[str, list[Key]] | None = None
        self._users: dict[str, dict[int, list[Vm]]] = {}
        # one VLAN text and one session tuple shared by every change naming it (memory)
        self._texts: dict[int, str] = {}
        self._sessions: dict[tuple[str, ...], tuple[str, ...]] = {}

    def users(self, port: str) -> dict[int, list[Vm]]:
        found = self._users.get(port)
        if found is None:
            if self._hosts is None:
                self._hosts = self.intent._hosts_by_port(self.switch)
            hosts = self._hosts.get(port, ())
            found = self._users[port] = self.intent._port_users(
                self.inventory, self.switch, port, hosts
            )
        return found

    def change(self, port: str, vlan: int) -> Change:
        """The add of ``vlan`` on ``port``, its reason naming the first VMs (by key) that
        need it and their port groups that carry it."""
        users: list[Vm] = self.users(port).get(vlan, [])
        member = self._texts.get(vlan)
        if member is None:
            member = self._texts[vlan] = str(vlan)
        portgroups = self.inventory.portgroups
        if len(users) == 1:  # the common case, without sorting and joining
            vm = users[0]
            names = vm.name
            pgs = [
                n for n in vm.networks
                if (pg := portgroups.get((vm.session, n))) is not None and vlan in pg.vlans
            ]  # fmt: skip
            groups = pgs[0] if len(pgs) == 1 else ", ".join(sorted(set(pgs)))
            of: tuple[str, ...] = (vm.session,)
            return Change(port, member, "add", f"VMs {names} (port group {groups})",
                          self._sessions.setdefault(of, of))  # fmt: skip
        users = sorted(users, key=attrgetter("key"))
        found: set[str] = set()
        for vm in users:
            for pg_name in vm.networks:
                pg = portgroups.get((vm.session, pg_name))
                if pg is not None and vlan in pg.vlans:
                    found.add(pg_name)
        shown = users[:_REASON_VMS]
        more = f" and {len(users) - len(shown)} more" if len(users) > len(shown) else ""
        names = ", ".join([vm.name for vm in shown])
        groups = ", ".join(sorted(found))
        of = tuple(sorted({vm.session for vm in users}))
        return Change(
            port, member, "add", f"VMs {names}{more} (port group {groups})",
            self._sessions.setdefault(of, of),
        )  # fmt: skip
