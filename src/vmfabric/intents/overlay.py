"""The overlay intent: VXLAN flood lists from where VMs run.

The model
---------
A VM is *behind* a VTEP switch in VNI ``n`` when it is powered on, one of its port groups
carries a VLAN that the overlay maps to ``n``, and an uplink of its host that carries that
port group lands on the switch (any port; the switch has a VTEP address). Such a
(VNI, switch) pair is a *segment*; the intent counts the VMs behind each (a reference count
that also answers "why"). The *leaves* of a VNI are the switches with at least one VM in it.

Desired state of one VTEP (target ``<switch>:vtep``, see ``vtep_target``): for every VNI
with a local VM (holder = the VNI as text), the addresses of the *other* leaves of that VNI
(members). A VNI whose
VMs are all behind one leaf floods to no one: its holder is there, empty. Broadcast,
unknown unicast and multicast of a VNI are then copied to exactly those VTEPs (head-end
replication) instead of to every VTEP.

``update`` takes one inventory ``Delta`` and recomputes only the VMs it affects (changed
VMs, VMs on changed hosts or in changed port groups). When a VNI gains or loses a leaf,
every leaf of that VNI (before and after) is dirty. ``full_segments`` computes the same from
scratch; the two always agree (tests/unit/test_overlay_intent.py, a property test).

Planning and safety
-------------------
``plan(target, state, inventory, now)`` compares the desired flood lists with those read
from the VTEP (``Held``: members and the ones vmfabric added):

- a remote VTEP missing from a flood list is added at once (a VM moved there);
- a remote VTEP vmfabric did not add (not ``dynamic``) is static: never removed;
- a dynamic remote VTEP no longer desired goes through removal safety
  (``intents.removals``): the prune delay after its last VM left, and fail-static while any
  session is out of sync (any session might hide a VM of that VNI behind that VTEP).

VMs of sessions in ``mode: check`` do not count. Pure: no I/O, the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from vmfabric.core.model import Host, PortGroup, Power, Vm, carrying_uplinks
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.intents.removals import Gate, Removals
from vmfabric.inventory.index import Delta, Inventory

Key = tuple[str, str]  # (session, VM id)
Segment = tuple[int, str]  # (VNI, switch)
_NONE: tuple[Segment, ...] = ()
_REASON_VMS = 5  # VMs named in one reason; the rest are counted
TARGET_SUFFIX = ":vtep"


def vtep_target(switch: str) -> str:
    """The target name of switch ``switch``'s VTEP (its switch ports are ``switch``)."""
    return f"{switch}{TARGET_SUFFIX}"


@dataclass(frozen=True, slots=True)
class Held:
    """What one holder of a target holds, as read: its members and, of those, the ones
    vmfabric added (its origin record)."""

    members: frozenset[str] = frozenset()
    dynamic: frozenset[str] = frozenset()


EMPTY = Held()


@dataclass(frozen=True, slots=True)
class Vtep:
    """A switch that is a VXLAN tunnel endpoint, and its address."""

    switch: str
    address: str


@dataclass(frozen=True, slots=True)
class OverlayPolicy:
    """The overlay's configuration: VTEPs, VLAN -> VNI, sessions whose VMs do not count."""

    vteps: tuple[Vtep, ...]
    vni_of: Mapping[int, int]
    check_sessions: frozenset[str] = field(default_factory=frozenset)

    def addresses(self) -> dict[str, str]:
        return {v.switch: v.address for v in self.vteps}


def vm_segments(
    vm: Vm,
    host: Host | None,
    portgroups: Mapping[Key, PortGroup],
    vteps: Collection[str],
    vni_of: Mapping[int, int],
) -> tuple[Segment, ...]:
    """The (VNI, switch) segments one VM is in; sorted, without duplicates."""
    if vm.power is not Power.ON or host is None:
        return _NONE
    found: set[Segment] = set()
    for name in vm.networks:
        pg = portgroups.get((vm.session, name))
        if pg is None:
            continue
        vnis = {vni_of[v] for v in pg.vlans if v in vni_of}
        if not vnis:
            continue
        uplinks, _ = carrying_uplinks(host, pg)
        switches = {u.switch for u in uplinks if u.switch in vteps}
        found.update((vni, sw) for vni in vnis for sw in switches)
    return tuple(sorted(found)) if found else _NONE


def full_segments(inventory: Inventory, policy: OverlayPolicy) -> dict[Segment, frozenset[Key]]:
    """Every segment and the VMs in it, from scratch."""
    vteps = policy.addresses()
    out: dict[Segment, set[Key]] = {}
    for key, vm in inventory.vms.items():
        if vm.session in policy.check_sessions:
            continue
        host = inventory.hosts.get((vm.session, vm.host))
        for seg in vm_segments(vm, host, inventory.portgroups, vteps, policy.vni_of):
            out.setdefault(seg, set()).add(key)
    return {seg: frozenset(keys) for seg, keys in out.items()}


def flood_lists(
    leaves: Mapping[int, Collection[str]], addresses: Mapping[str, str]
) -> dict[str, dict[str, frozenset[str]]]:
    """Per VTEP target, per VNI it has a VM of (as text): the other leaves' addresses."""
    out: dict[str, dict[str, frozenset[str]]] = {}
    for vni, switches in leaves.items():
        for sw in switches:
            remotes = frozenset(addresses[o] for o in switches if o != sw)
            out.setdefault(vtep_target(sw), {})[str(vni)] = remotes
    return out


class OverlayIntent:
    """Incremental flood lists per VTEP, and planning. Not thread-safe: the runtime owns
    it. See the module docstring."""

    name = "overlay"
    kind = "vtep"

    def __init__(self, policy: OverlayPolicy, removals: Removals) -> None:
        self.policy = policy
        self.removals = removals
        self._addr = policy.addresses()
        self._contrib: dict[Key, tuple[Segment, ...]] = {}
        self._users: dict[Segment, set[Key]] = {}
        self._leaves: dict[int, set[str]] = {}  # VNI -> switches with a VM in it
        self._local: dict[str, set[int]] = {}  # switch -> VNIs with a VM behind it
        self._dirty: set[str] = set()

    # ---- queries ---------------------------------------------------------------------

    def targets(self) -> list[str]:
        return sorted(vtep_target(sw) for sw in self._addr)

    def address(self, switch: str) -> str:
        return self._addr[switch]

    def switch_of(self, target: str) -> str | None:
        """The switch whose VTEP target is ``target`` (None: not one of this intent's)."""
        switch = target.removesuffix(TARGET_SUFFIX)
        return switch if target.endswith(TARGET_SUFFIX) and switch in self._addr else None

    def desired(self, target: str) -> dict[str, frozenset[str]]:
        switch = self.switch_of(target)
        out: dict[str, frozenset[str]] = {}
        for vni in self._local.get(switch or "", ()):
            leaves = self._leaves[vni]
            out[str(vni)] = frozenset(self._addr[o] for o in leaves if o != switch)
        return out

    def recompute(self, inventory: Inventory) -> dict[str, dict[str, frozenset[str]]]:
        leaves: dict[int, set[str]] = {}
        for vni, sw in full_segments(inventory, self.policy):
            leaves.setdefault(vni, set()).add(sw)
        return flood_lists(leaves, self._addr)

    def segments(self) -> dict[Segment, frozenset[Key]]:
        """Every segment (VNI, switch) and the VMs behind it: for views and reasons."""
        return {seg: frozenset(keys) for seg, keys in self._users.items()}

    def leaves(self, vni: int) -> frozenset[str]:
        return frozenset(self._leaves.get(vni, ()))

    # ---- changes -----------------------------------------------------------------------

    def update(self, inventory: Inventory, delta: Delta, now: float) -> set[str]:
        """Recompute the VMs the delta affects; return the VTEPs whose flood lists changed,
        or every VTEP when a session's sync state changed (held removals may go)."""
        self._recompute(inventory, delta.affected_vms(inventory), now)
        dirty, self._dirty = self._dirty, set()
        if delta.sessions:
            dirty |= set(self._addr)
        return {vtep_target(sw) for sw in dirty}

    def set_policy(self, policy: OverlayPolicy, inventory: Inventory, now: float) -> set[str]:
        """Replace the configuration (reload): every VM is recomputed; a VTEP whose address
        changed is dirty everywhere it is a leaf."""
        old = self._addr
        for key in list(self._contrib):
            self._set_contrib(key, _NONE, now)
        for switch in set(old) - set(policy.addresses()):
            self.removals.forget_target(vtep_target(switch))
        self.policy, self._addr = policy, policy.addresses()
        self._recompute(inventory, list(inventory.vms), now)
        self._dirty.clear()
        return {vtep_target(sw) for sw in self._addr}

    def _recompute(self, inventory: Inventory, keys: Iterable[Key], now: float) -> None:
        policy, vteps, pgs = self.policy, self._addr, inventory.portgroups
        for key in keys:
            vm = inventory.vms.get(key)
            if vm is None or vm.session in policy.check_sessions:
                self._set_contrib(key, _NONE, now)
                continue
            host = inventory.hosts.get((vm.session, vm.host))
            self._set_contrib(key, vm_segments(vm, host, pgs, vteps, policy.vni_of), now)

    def _set_contrib(self, key: Key, new: tuple[Segment, ...], now: float) -> None:
        old = self._contrib.get(key, _NONE)
        if old == new:
            return
        if new:
            self._contrib[key] = new
        else:
            self._contrib.pop(key, None)
        for seg in set(old) - set(new):
            users = self._users[seg]
            users.discard(key)
            if not users:
                del self._users[seg]
                self._leave(seg, now)
        for seg in set(new) - set(old):
            users = self._users.setdefault(seg, set())
            users.add(key)
            if len(users) == 1:
                self._join(seg)

    def _join(self, seg: Segment) -> None:
        vni, sw = seg
        leaves = self._leaves.setdefault(vni, set())
        for other in leaves:
            self.removals.reclaimed(vtep_target(other), str(vni), self._addr[sw])
            self.removals.reclaimed(vtep_target(sw), str(vni), self._addr[other])
        leaves.add(sw)
        self._local.setdefault(sw, set()).add(vni)
        self._dirty |= leaves

    def _leave(self, seg: Segment, now: float) -> None:
        vni, sw = seg
        leaves = self._leaves[vni]
        leaves.discard(sw)
        local = self._local[sw]
        local.discard(vni)
        if not local:
            del self._local[sw]
        for other in leaves:
            self.removals.vacated(vtep_target(other), str(vni), self._addr[sw], now)
            self.removals.vacated(vtep_target(sw), str(vni), self._addr[other], now)
        self._dirty |= leaves | {sw}
        if not leaves:
            del self._leaves[vni]

    # ---- planning ----------------------------------------------------------------------

    def gate(self, inventory: Inventory) -> Gate:
        """The sync gate of a remote VTEP: any session out of sync (it might hide a VM of
        the VNI behind that VTEP) blocks; the delay counts from the latest (re)sync."""
        sessions = [s for s in inventory.sessions() if s not in self.policy.check_sessions]

        def gate(member: str) -> tuple[str, float]:
            latest = 0.0
            for name in sessions:
                if not inventory.in_sync(name):
                    return name, latest
                latest = max(latest, inventory.synced_at(name))
            return "", latest

        return gate

    def plan(
        self, target: str, state: Mapping[str, Held], inventory: Inventory, now: float
    ) -> TargetPlan:
        """The changes that bring one VTEP's flood lists to the desired ones at ``now``.
        Removals that are not yet due are listed in ``held``."""
        switch = self.switch_of(target)
        if switch is None:
            return TargetPlan(target, self.kind)
        gate = self.gate(inventory)
        want = self.desired(target)
        changes: list[Change] = []
        held: list[Change] = []
        for holder in sorted(set(want) | set(state), key=_vni_order):
            have = state.get(holder, EMPTY)
            wanted = want.get(holder, frozenset())
            for member in sorted(wanted - have.members):
                changes.append(self._add_change(holder, member))
            remove, waiting = self.removals.due(
                target, holder, have.dynamic & have.members, wanted, now=now, gate=gate
            )
            sessions = tuple(inventory.sessions())
            for member in sorted(remove):
                why = self._remove_reason(switch, holder, member)
                changes.append(Change(holder, member, "remove", why, sessions))
            held.extend(Change(holder, m, "remove", w) for m, w in sorted(waiting.items()))
        return TargetPlan(target, self.kind, tuple(changes), tuple(held))

    def _switch_of(self, address: str) -> str:
        return next((sw for sw, a in self._addr.items() if a == address), address)

    def _add_change(self, holder: str, member: str) -> Change:
        remote = self._switch_of(member)
        users = sorted(self._users.get((int(holder), remote), ()))
        names = ", ".join(k[1] for k in users[:_REASON_VMS])
        more = f" and {len(users) - _REASON_VMS} more" if len(users) > _REASON_VMS else ""
        why = f"VNI {holder} has VMs behind {remote}: {names}{more}"
        return Change(holder, member, "add", why, tuple(sorted({k[0] for k in users})))

    def _remove_reason(self, switch: str, holder: str, member: str) -> str:
        remote = self._switch_of(member)
        vni = int(holder) if holder.isdigit() else -1
        if vni not in self._local.get(switch, ()):
            why = f"no VM of VNI {holder} behind {switch} any more"
        else:
            why = f"no VM of VNI {holder} behind {remote} any more"
        if self.removals.prune_delay:
            why += f" (prune delay {self.removals.prune_delay:g}s elapsed)"
        return why


def _vni_order(holder: str) -> tuple[int, str]:
    return (int(holder), "") if holder.isdigit() else (-1, holder)
