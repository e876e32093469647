"""The overlay's and fabric pruning's composition: intents and targets, built from config.

Overlay (VXLAN flood lists):

``build(config, inventory)`` returns the ``OverlayIntent`` (flood lists from placement) and
a ``VtepTarget`` per switch with a ``vtep:``, or None when the config has no ``overlay``
or no VTEP. The runtime then, like for any intent:

- feeds every inventory ``Delta`` to ``intent.update(inventory, delta, now)`` and wakes the
  targets it returns (dirty);
- runs each target's reconcile step: ``read()``, ``plan(now)``, guard, ``apply(changes)``,
  ``confirmed(changes)``, ``applied(changes)``; removals held for the prune delay wake at
  ``intent.removals.next_deadline(now, gate_for)``.

``VtepTarget`` adapts the VTEP driver (``targets.vtep``) to the ``Target`` protocol: named
``<switch>:vtep`` (the switch's own edge ports keep the name ``<switch>``), holder = the VNI
as text, member = a remote VTEP address.

Fabric pruning: ``build_pruning(config, inventory)`` returns the ``PruningIntent`` and a
``FabricTrunkTarget`` per switch with ``fabric_ports`` (named ``<switch>:fabric``): the
switch's own switch-port driver, opened a second time with ``edge_ports`` = its fabric
ports (so only those can be written) and ``open_ports: close`` (an open trunk is narrowed,
once the intent lets it). Holder = a fabric port, member = a VLAN, as for edge ports.

``reconcile_once`` is the reconcile step for a list of targets, in the caller's thread
(tests, the demo, the benchmark; the runtime has its own loop).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from vmfabric.config import Config, SwitchConfig
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortMode, PortState
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.intents.guard import GuardLimits, guard_verdict
from vmfabric.intents.overlay import (
    Held,
    Key,
    OverlayIntent,
    OverlayPolicy,
    Vtep,
    full_segments,
    vtep_target,
)
from vmfabric.intents.pruning import (
    CLOSE_MEMBER,
    FabricGraph,
    FabricLinkSpec,
    PruningIntent,
    PruningPolicy,
    fabric_target,
    full_needs,
)
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory
from vmfabric.runtime.switchports import port_changes
from vmfabric.runtime.target import Target, TargetMode
from vmfabric.store import Store
from vmfabric.targets.base import Capabilities
from vmfabric.targets.switchport.base import Driver, create_driver
from vmfabric.targets.vtep.base import FloodChange, FloodList, VtepDriver
from vmfabric.targets.vtep.ovs import OvsVtepDriver, OvsVtepOptions

log = logging.getLogger(__name__)


def overlay_policy(config: Config) -> OverlayPolicy | None:
    """The overlay intent's configuration, or None without ``overlay`` or VTEPs."""
    if config.overlay is None:
        return None
    vteps = tuple(Vtep(sw.name, sw.vtep.address) for sw in config.switches if sw.vtep)
    if not vteps:
        return None
    checking = frozenset(s.name for s in config.sessions if s.mode == "check")
    return OverlayPolicy(vteps, config.overlay.mapping(), checking)


def vtep_options(switch: SwitchConfig) -> OvsVtepOptions:
    """Where switch ``switch``'s VTEP flood lists are written (its ``vtep:``, defaulting to
    the switch entry's own OVSDB and bridge)."""
    vtep = switch.vtep
    if vtep is None:
        raise ConfigError(f"switch {switch.name} has no vtep")
    ovsdb = vtep.ovsdb or getattr(switch, "ovsdb", None)
    bridge = vtep.bridge or getattr(switch, "bridge", None)
    if not ovsdb or not bridge:
        raise ConfigError(
            f"switch {switch.name}: vtep needs ovsdb and bridge (the {switch.driver} "
            "switch entry has none to default to)"
        )
    return OvsVtepOptions(switch.name, str(ovsdb), str(bridge), vtep.address, vtep.timeout)


class VtepTarget:
    """One VTEP in the reconcile loop (the ``Target`` protocol). Not thread-safe: the loop
    runs one step of a target at a time."""

    kind = "vtep"

    def __init__(
        self,
        driver: VtepDriver,
        intent: OverlayIntent,
        inventory: Inventory,
        mode: TargetMode = "enforce",
        driver_name: str = "ovs",
    ) -> None:
        self.name = vtep_target(driver.name)  # "<switch>:vtep": the switch's ports are "<switch>"
        self.switch = driver.name
        self.driver = driver
        self.driver_name = driver_name
        self.intent = intent
        self.inventory = inventory
        self.mode: TargetMode = mode
        self.capabilities: Capabilities = driver.capabilities
        self.state: dict[int, FloodList] = {}
        self.read_once = False

    def connect(self) -> None:
        self.driver.connect()

    def close(self) -> None:
        self.driver.close()

    def read(self) -> None:
        self.state = self.driver.read()
        self.read_once = True

    def held(self) -> dict[str, Held]:
        """The flood lists as the intent plans against them."""
        return {str(vni): Held(fl.remotes, fl.dynamic) for vni, fl in self.state.items()}

    def plan(self, now: float) -> TargetPlan:
        if not self.read_once:
            return TargetPlan(self.name, self.kind)
        return self.intent.plan(self.name, self.held(), self.inventory, now)

    def admit(self, changes: Sequence[Change]) -> list[Change]:
        return list(changes)  # flood-list entries are independent of one another

    def apply(self, changes: Sequence[Change]) -> None:
        self.state = self.driver.apply(to_flood_changes(changes))

    def confirmed(self, changes: Sequence[Change]) -> list[Change]:
        done = []
        for change in changes:
            remotes = self.state.get(int(change.holder), FloodList()).remotes
            if (change.member in remotes) == (change.action == "add"):
                done.append(change)
        return done

    def dynamic_count(self) -> int:
        return sum(len(fl.dynamic) for fl in self.state.values())

    def origins(self) -> Mapping[str, Collection[str]] | None:
        return None  # the origin record lives on the VTEP (external_ids)

    def applied(self, changes: Sequence[Change]) -> None:
        for change in self.confirmed(changes):
            if change.action == "remove":
                self.intent.removals.forget(self.name, change.holder, (change.member,))


def to_flood_changes(changes: Iterable[Change]) -> list[FloodChange]:
    """Plan changes grouped per VNI, as the VTEP driver takes them."""
    add: dict[int, set[str]] = {}
    remove: dict[int, set[str]] = {}
    for change in changes:
        side = add if change.action == "add" else remove
        side.setdefault(int(change.holder), set()).add(change.member)
    return [
        FloodChange(vni, frozenset(add.get(vni, ())), frozenset(remove.get(vni, ())))
        for vni in sorted(set(add) | set(remove))
    ]


def build(
    config: Config, inventory: Inventory | None = None, removals: Removals | None = None
) -> tuple[OverlayIntent, list[VtepTarget]] | None:
    """The overlay intent and its VTEP targets, or None when nothing is overlaid. With no
    ``inventory``, a new one for the configured sessions (the caller feeds it)."""
    policy = overlay_policy(config)
    if policy is None or config.overlay is None:
        return None
    inv = inventory if inventory is not None else Inventory(s.name for s in config.sessions)
    intent = OverlayIntent(policy, removals or Removals(config.engine.prune_delay))
    vlan_of = {vni: vlan for vlan, vni in config.overlay.mapping().items()}
    targets = [
        VtepTarget(OvsVtepDriver(vtep_options(sw), vlan_of), intent, inv, sw.mode)
        for sw in config.switches
        if sw.vtep is not None
    ]
    return intent, targets


def guard_limits(config: Config) -> GuardLimits:
    return GuardLimits(config.engine.max_removals, config.engine.max_removal_share)


def reconcile_once(
    targets: Iterable[Target], now: float, limits: GuardLimits | None = None
) -> dict[str, TargetPlan]:
    """One read, plan, guard, apply step per target (enforce mode); the plans, as made.
    Removals the guard refuses are dropped from the apply (additions always go)."""
    plans: dict[str, TargetPlan] = {}
    for target in targets:
        target.read()
        plan = target.plan(now)
        plans[target.name] = plan
        changes = list(plan.changes)
        removals = [c for c in changes if c.action == "remove"]
        verdict = guard_verdict(
            len(removals), target.dynamic_count(), target.name, limits or GuardLimits(),
            "flood-list entries",
        )  # fmt: skip
        if verdict:
            changes = target.admit([c for c in changes if c.action == "add"])
        if changes and target.mode == "enforce":
            target.apply(changes)
            target.applied(changes)
    return plans


# ---- fabric pruning ------------------------------------------------------------------------


def pruning_policy(config: Config) -> PruningPolicy | None:
    """The pruning intent's configuration, or None when no switch opted in."""
    managed = {sw.name: frozenset(sw.fabric_ports) for sw in config.switches if sw.fabric_ports}
    if not managed or not config.fabric_links:
        return None
    links = tuple(FabricLinkSpec(*link.ends()) for link in config.fabric_links)
    checking = frozenset(s.name for s in config.sessions if s.mode == "check")
    return PruningPolicy(links, managed, config.pruning.keep_vlans, checking)


def fabric_switch(switch: SwitchConfig) -> SwitchConfig:
    """The switch entry as its fabric trunks' driver sees it: only the fabric ports are
    writable, and an open one may be narrowed."""
    return switch.model_copy(
        update={
            "name": fabric_target(switch.name),
            "edge_ports": list(switch.fabric_ports),
            "open_ports": "close",
        }
    )


class FabricTrunkTarget:
    """One switch's fabric trunks in the reconcile loop (the ``Target`` protocol)."""

    kind = "switchport"

    def __init__(
        self, config: SwitchConfig, driver: Driver, intent: PruningIntent, inventory: Inventory
    ) -> None:
        if driver.capabilities.origin != "target":
            raise ConfigError(
                f"switch {config.name}: fabric_ports need a driver that keeps its origin "
                f"record on the switch ({config.driver} keeps it in the store)"
            )
        self.name = fabric_target(config.name)
        self.switch = config.name
        self.driver_name = config.driver
        self.mode: TargetMode = config.mode
        self.driver = driver
        self.capabilities: Capabilities = driver.capabilities
        self.intent = intent
        self.inventory = inventory
        self.states: dict[str, PortState] = {}

    def connect(self) -> None:
        self.driver.connect()

    def close(self) -> None:
        self.driver.close()

    def read(self) -> None:
        self.states.update(self.driver.read_ports())

    def plan(self, now: float) -> TargetPlan:
        return self.intent.plan(self.name, self.states, self.inventory, now)

    def admit(self, changes: Sequence[Change]) -> list[Change]:
        """An open trunk is written only together with its closing: adding a VLAN to a
        port that carries every VLAN would narrow it as well."""
        closing = {c.holder for c in changes if c.member == CLOSE_MEMBER}
        return [
            c
            for c in changes
            if c.holder in closing
            or (st := self.states.get(c.holder)) is None
            or st.mode is not PortMode.OPEN
        ]

    def apply(self, changes: Sequence[Change]) -> None:
        self.states.update(self.driver.apply(port_changes(changes)))

    def confirmed(self, changes: Sequence[Change]) -> list[Change]:
        done = []
        for change in changes:
            state = self.states.get(change.holder)
            if state is None:
                continue
            if change.member == CLOSE_MEMBER:
                ok = state.mode is not PortMode.OPEN
            else:
                ok = (int(change.member) in state.vlans) == (change.action == "add")
            if ok:
                done.append(change)
        return done

    def dynamic_count(self) -> int:
        return sum(len(st.dynamic) for st in self.states.values())

    def origins(self) -> Mapping[str, Collection[str]] | None:
        return None

    def applied(self, changes: Sequence[Change]) -> None:
        for change in self.confirmed(changes):
            if change.action == "remove":
                self.intent.removals.forget(self.name, change.holder, (change.member,))


def build_pruning(
    config: Config, inventory: Inventory | None = None, removals: Removals | None = None
) -> tuple[PruningIntent, list[FabricTrunkTarget]] | None:
    """The pruning intent and one target per switch with ``fabric_ports``, or None."""
    policy = pruning_policy(config)
    if policy is None:
        return None
    inv = inventory if inventory is not None else Inventory(s.name for s in config.sessions)
    intent = PruningIntent(policy, removals or Removals(config.engine.prune_delay))
    targets = [
        FabricTrunkTarget(sw, create_driver(fabric_switch(sw)), intent, inv)
        for sw in config.switches
        if sw.fabric_ports
    ]
    return intent, targets


# ---- views ---------------------------------------------------------------------------------


def stored_inventory(config: Config, store: Store) -> Inventory:
    """The inventory the store holds for the configured sessions (as ``run`` recorded it,
    uplinks resolved)."""
    inventory = Inventory(s.name for s in config.sessions)
    inventory.apply([store.snapshot(s.name) for s in config.sessions], 0.0)
    return inventory


def vxlan_view(
    config: Config, inventory: Inventory, live: Mapping[str, Mapping[int, FloodList]] | None = None
) -> list[dict[str, Any]]:
    """``show vxlan``: per VNI with a VM, its VTEPs, the VMs behind each and the flood list
    each should hold (``flood``); with ``live`` (switch -> what its VTEP holds, read back),
    also ``programmed`` and whether the two agree (``in_sync``).

    [{"vni": 10110, "vlan": 110, "vteps": [{"switch": "leaf1", "address": "10.253.1.1",
      "vms": ["web-01"], "flood": ["10.253.1.3"], "programmed": [...], "in_sync": true}]}]
    """
    policy = overlay_policy(config)
    if policy is None:
        return []
    segments = full_segments(inventory, policy)
    addresses = policy.addresses()
    vlan_of = {vni: vlan for vlan, vni in policy.vni_of.items()}
    leaves: dict[int, dict[str, frozenset[Key]]] = {}
    for (vni, switch), keys in segments.items():
        leaves.setdefault(vni, {})[switch] = keys
    rows = []
    for vni in sorted(leaves):
        vteps = []
        for switch in sorted(leaves[vni]):
            entry: dict[str, Any] = {
                "switch": switch,
                "address": addresses[switch],
                "vms": sorted(inventory.vms[k].name for k in leaves[vni][switch]),
                "flood": sorted(addresses[o] for o in leaves[vni] if o != switch),
            }
            if live is not None and switch in live:
                held = live[switch].get(vni, FloodList()).remotes
                entry["programmed"] = sorted(held)
                entry["in_sync"] = set(held) == set(entry["flood"])
            vteps.append(entry)
        rows.append({"vni": vni, "vlan": vlan_of.get(vni), "vteps": vteps})
    return rows


def read_vteps(config: Config) -> dict[str, dict[int, FloodList]]:
    """Every VTEP's flood lists, read from the VTEPs themselves (``show vxlan --live``).
    A VTEP that cannot be read is left out (its entries show no ``programmed``)."""
    found: dict[str, dict[int, FloodList]] = {}
    vlan_of = {
        vni: vlan for vlan, vni in (config.overlay.mapping() if config.overlay else {}).items()
    }
    for sw in config.switches:
        if sw.vtep is None:
            continue
        driver = OvsVtepDriver(vtep_options(sw), vlan_of)
        try:
            found[sw.name] = driver.read()
        except (TransientError, PermanentError, ConfigError) as exc:
            log.warning("VTEP %s not read: %s", sw.name, exc)
        finally:
            driver.close()
    return found


def fabric_trunk_view(
    config: Config,
    inventory: Inventory,
    live: Mapping[str, Mapping[str, PortState]] | None = None,
) -> list[dict[str, Any]]:
    """``show fabric-trunk``: per inter-switch link, the VLANs it must carry and why (the
    switches each is needed at), the VLANs kept whatever the VMs, and which ends vmfabric
    writes; with ``live`` (switch -> its fabric ports as read), what each end carries now.

    [{"link": "leaf1:eth51 -- spine3:eth1", "vlans": [10, 30],
      "why": {"10": ["leaf1", "leaf2"]}, "keep": [1], "ends": [{"switch": "leaf1",
      "port": "eth51", "managed": true, "carries": [1, 10, 30] | "all"}]}]
    """
    policy = pruning_policy(config)
    if policy is None:
        return []
    graph = FabricGraph(policy.links)
    needs = full_needs(inventory, policy)
    per_link: dict[int, set[int]] = {}
    for vlan, switches in needs.items():
        for index in graph.carried(switches):
            per_link.setdefault(index, set()).add(vlan)
    rows = []
    for index, link in enumerate(graph.links):
        vlans = sorted(per_link.get(index, set()))
        ends = [_end_view(sw, port, policy, live) for sw, port in (link.a, link.b)]
        rows.append({
            "link": link.name,
            "vlans": vlans,
            "why": {str(v): sorted(needs[v]) for v in vlans},
            "keep": sorted(policy.keep),
            "ends": ends,
        })  # fmt: skip
    return rows


def _end_view(
    switch: str,
    port: str,
    policy: PruningPolicy,
    live: Mapping[str, Mapping[str, PortState]] | None,
) -> dict[str, Any]:
    end: dict[str, Any] = {
        "switch": switch,
        "port": port,
        "managed": port in policy.managed.get(switch, ()),
    }
    state = (live or {}).get(switch, {}).get(port)
    if state is not None:
        end["carries"] = "all" if state.mode is PortMode.OPEN else sorted(state.vlans)
    return end


def read_fabric_ports(config: Config) -> dict[str, dict[str, PortState]]:
    """Every opted-in switch's fabric ports as read from the switch (``--live``)."""
    found: dict[str, dict[str, PortState]] = {}
    for sw in config.switches:
        if not sw.fabric_ports:
            continue
        driver = create_driver(fabric_switch(sw))
        try:
            driver.connect()
            found[sw.name] = driver.read_ports()
        except (TransientError, PermanentError, ConfigError) as exc:
            log.warning("switch %s: fabric ports not read: %s", sw.name, exc)
        finally:
            driver.close()
    return found
