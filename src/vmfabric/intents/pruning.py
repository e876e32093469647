"""Inter-switch VLAN pruning: each fabric trunk carries only the VLANs some VM beyond it needs.

The model
---------
The fabric is a graph: switches are nodes, inter-switch links (static ``fabric_links`` or
discovered) are edges. A VLAN is *needed at* a switch when a powered-on VM has a port group
in that VLAN and its host has an uplink carrying that port group landing on the switch.
``D(v)`` is the set of switches where VLAN ``v`` is needed.

Which links carry ``v``? Spanning tree (one instance, as RSTP runs it) may forward ``v``
over any link of the fabric, and after a topology change over another one. Pruning must
never black-hole a VLAN, so ``v`` stays on **every link that lies on some simple path
between two switches of D(v)**: then whatever tree spanning tree picks, and whichever link
fails, the path it uses between two such switches carries ``v``.

That set has a closed form through the graph's *blocks* (biconnected components, joined at
cut vertices into the block-cut tree): a simple path between two switches passes exactly
through the blocks on their block-cut tree path, and within a block any link can be on it.
So ``v`` is carried on every link of every block of the smallest subtree of the block-cut
tree that joins D(v) (needing two distinct switches of D(v) in one component). A VLAN
needed at one switch only is carried nowhere. In a redundant two-tier fabric (one block)
a VLAN needed at two leaves is kept on every link, and pruning removes the VLANs needed
behind a single switch or nowhere; in a tree of pods only the pods that need it carry it.

Desired state per target ``<switch>:fabric``: per opted-in fabric port (``fabric_ports``),
the VLANs its link carries, plus ``keep_vlans`` (always carried). ``update`` is incremental
(a VLAN's link set is recomputed only when its D(v) changes); ``recompute`` equals it (a
property test).

Planning and safety (same rules as edge ports): a needed VLAN is added at once; a VLAN
vmfabric did not add is static and never removed; a dynamic VLAN no longer needed waits
for the prune delay and while any session is out of sync (fail-static). A fabric port that
carries every VLAN (open) is narrowed to the VLANs needed only once removals may go (the
change ``(port, "all", remove)``), so a controller that has not yet seen every VM never
prunes a trunk. Pure: no I/O, the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from vmfabric.core.model import Host, PortGroup, PortMode, PortState, Power, Vm, carrying_uplinks
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.intents.removals import Gate, Removals
from vmfabric.inventory.index import Delta, Inventory

Key = tuple[str, str]  # (session, VM id)
End = tuple[str, str]  # (switch, port)
Need = tuple[str, int]  # (switch, VLAN)
CLOSE_MEMBER = "all"  # closing an open trunk: (port, "all", remove), as for edge ports
TARGET_SUFFIX = ":fabric"
_NONE: tuple[Need, ...] = ()


def fabric_target(switch: str) -> str:
    """The target name of switch ``switch``'s fabric trunks."""
    return f"{switch}{TARGET_SUFFIX}"


@dataclass(frozen=True, slots=True)
class FabricLinkSpec:
    """One inter-switch link between two (switch, port) ends."""

    a: End
    b: End

    @property
    def name(self) -> str:
        return f"{self.a[0]}:{self.a[1]} -- {self.b[0]}:{self.b[1]}"


@dataclass(frozen=True, slots=True)
class PruningPolicy:
    """Links, the fabric ports vmfabric may write per switch, VLANs always carried, and the
    sessions whose VMs do not count (check mode)."""

    links: tuple[FabricLinkSpec, ...]
    managed: Mapping[str, frozenset[str]]
    keep: frozenset[int] = frozenset()
    check_sessions: frozenset[str] = field(default_factory=frozenset)


# ---- the graph (pure) ----------------------------------------------------------------------


class FabricGraph:
    """Blocks and the block-cut tree of the fabric; ``carried(switches)`` answers which
    links lie on a simple path between two of ``switches``."""

    def __init__(self, links: Iterable[FabricLinkSpec]) -> None:
        self.links = tuple(links)
        self._adj: dict[str, list[tuple[str, int]]] = {}
        for i, link in enumerate(self.links):
            self._adj.setdefault(link.a[0], []).append((link.b[0], i))
            self._adj.setdefault(link.b[0], []).append((link.a[0], i))
        self.block_of: list[int] = [-1] * len(self.links)
        self.blocks: list[set[str]] = []
        self._disc: dict[str, int] = {}
        self._low: dict[str, int] = {}
        for start in sorted(self._adj):
            self._visit(start)
        self._tree = self._block_cut_tree()

    def _visit(self, start: str) -> None:
        """Hopcroft-Tarjan biconnected components from ``start`` (iterative DFS)."""
        disc, low = self._disc, self._low
        if start in disc:
            return
        edges: list[int] = []
        disc[start] = low[start] = len(disc)
        stack = [(start, -1, iter(self._adj[start]))]
        while stack:
            node, via, it = stack[-1]
            step = next(it, None)
            if step is None:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] >= disc[parent]:
                        self._pop_block(edges, via)
                continue
            nxt, edge = step
            if edge == via:
                continue
            if nxt not in disc:
                edges.append(edge)
                disc[nxt] = low[nxt] = len(disc)
                stack.append((nxt, edge, iter(self._adj[nxt])))
            elif disc[nxt] < disc[node]:
                edges.append(edge)
                low[node] = min(low[node], disc[nxt])

    def _pop_block(self, edges: list[int], until: int) -> None:
        block = len(self.blocks)
        members: set[str] = set()
        while edges:
            edge = edges.pop()
            self.block_of[edge] = block
            link = self.links[edge]
            members |= {link.a[0], link.b[0]}
            if edge == until:
                break
        self.blocks.append(members)

    def _block_cut_tree(self) -> dict[str, set[str]]:
        """Nodes ``B<i>`` (blocks) and ``C<switch>`` (cut vertices), as adjacency sets."""
        count: dict[str, int] = {}
        for members in self.blocks:
            for sw in members:
                count[sw] = count.get(sw, 0) + 1
        self.cuts = {sw for sw, n in count.items() if n > 1}
        tree: dict[str, set[str]] = {f"B{i}": set() for i in range(len(self.blocks))}
        for i, members in enumerate(self.blocks):
            for sw in members & self.cuts:
                tree[f"B{i}"].add(f"C{sw}")
                tree.setdefault(f"C{sw}", set()).add(f"B{i}")
        return tree

    def _node(self, switch: str) -> str | None:
        if switch in self.cuts:
            return f"C{switch}"
        for i, members in enumerate(self.blocks):
            if switch in members:
                return f"B{i}"
        return None

    def carried(self, switches: Collection[str]) -> frozenset[int]:
        """Indices of the links on a simple path between two distinct ``switches``."""
        weight: dict[str, int] = {}
        for sw in switches:
            node = self._node(sw)
            if node is not None:
                weight[node] = weight.get(node, 0) + 1
        keep = self._steiner(weight)
        return frozenset(i for i, b in enumerate(self.block_of) if f"B{b}" in keep)

    def _steiner(self, weight: Mapping[str, int]) -> set[str]:
        """Tree nodes of the smallest subtrees joining the weighted nodes, per component
        holding two or more switches (leaves without weight pruned away)."""
        keep: set[str] = set()
        seen: set[str] = set()
        for root in weight:
            if root in seen:
                continue
            component = self._component(root)
            seen |= component
            if sum(weight.get(n, 0) for n in component) >= 2:
                keep |= _prune_leaves(self._tree, component, weight)
        return keep

    def _component(self, root: str) -> set[str]:
        found, todo = {root}, [root]
        while todo:
            for nxt in self._tree.get(todo.pop(), ()):
                if nxt not in found:
                    found.add(nxt)
                    todo.append(nxt)
        return found


def _prune_leaves(
    tree: Mapping[str, set[str]], nodes: set[str], weight: Mapping[str, int]
) -> set[str]:
    alive = set(nodes)
    degree = {n: len(tree.get(n, set()) & alive) for n in alive}
    todo = [n for n in alive if degree[n] <= 1 and not weight.get(n)]
    while todo:
        node = todo.pop()
        if node not in alive:
            continue
        alive.discard(node)
        for nxt in tree.get(node, set()) & alive:
            degree[nxt] -= 1
            if degree[nxt] <= 1 and not weight.get(nxt):
                todo.append(nxt)
    return alive


# ---- demand (pure) -------------------------------------------------------------------------


def vm_needs(vm: Vm, host: Host | None, portgroups: Mapping[Key, PortGroup]) -> tuple[Need, ...]:
    """The (switch, VLAN) pairs one VM needs; sorted, without duplicates."""
    if vm.power is not Power.ON or host is None:
        return _NONE
    found: set[Need] = set()
    for name in vm.networks:
        pg = portgroups.get((vm.session, name))
        if pg is None or not pg.vlans:
            continue
        uplinks, _ = carrying_uplinks(host, pg)
        found.update((u.switch, v) for u in uplinks for v in pg.vlans)
    return tuple(sorted(found)) if found else _NONE


def full_needs(inventory: Inventory, policy: PruningPolicy) -> dict[int, frozenset[str]]:
    """VLAN -> the switches it is needed at, from scratch."""
    out: dict[int, set[str]] = {}
    for vm in inventory.vms.values():
        if vm.session in policy.check_sessions:
            continue
        host = inventory.hosts.get((vm.session, vm.host))
        for sw, vlan in vm_needs(vm, host, inventory.portgroups):
            out.setdefault(vlan, set()).add(sw)
    return {v: frozenset(s) for v, s in out.items()}


def trunk_vlans(
    graph: FabricGraph, needs: Mapping[int, Collection[str]], policy: PruningPolicy
) -> dict[str, dict[str, frozenset[int]]]:
    """Per target, per managed fabric port: the VLANs it must carry."""
    per_link: dict[int, set[int]] = {}
    for vlan, switches in needs.items():
        for i in graph.carried(switches):
            per_link.setdefault(i, set()).add(vlan)
    out: dict[str, dict[str, frozenset[int]]] = {}
    for i, link in enumerate(graph.links):
        for sw, port in (link.a, link.b):
            if port in policy.managed.get(sw, ()):
                vlans = frozenset(per_link.get(i, set()) | policy.keep)
                out.setdefault(fabric_target(sw), {})[port] = vlans
    return out


# ---- the intent ----------------------------------------------------------------------------


class PruningIntent:
    """Incremental fabric-trunk VLANs and planning. Not thread-safe: the runtime owns it.
    See the module docstring."""

    name = "pruning"
    kind = "switchport"

    def __init__(self, policy: PruningPolicy, removals: Removals) -> None:
        self.policy = policy
        self.removals = removals
        self.graph = FabricGraph(policy.links)
        self._ends: dict[int, list[End]] = {
            i: [e for e in (link.a, link.b) if e[1] in policy.managed.get(e[0], ())]
            for i, link in enumerate(self.graph.links)
        }
        self._port_link = {e: i for i, ends in self._ends.items() for e in ends}
        self._contrib: dict[Key, tuple[Need, ...]] = {}
        self._users: dict[Need, set[Key]] = {}
        self._needs: dict[int, set[str]] = {}  # VLAN -> switches
        self._links: dict[int, frozenset[int]] = {}  # VLAN -> links carrying it
        self._carried: dict[int, set[int]] = {}  # link -> VLANs
        self._dirty: set[str] = set()

    # ---- queries ---------------------------------------------------------------------

    def targets(self) -> list[str]:
        return sorted({fabric_target(sw) for sw, ports in self.policy.managed.items() if ports})

    def switch_of(self, target: str) -> str | None:
        switch = target.removesuffix(TARGET_SUFFIX)
        ok = target.endswith(TARGET_SUFFIX) and self.policy.managed.get(switch)
        return switch if ok else None

    def link_vlans(self, index: int) -> frozenset[int]:
        return frozenset(self._carried.get(index, set()) | self.policy.keep)

    def needs(self, vlan: int) -> frozenset[str]:
        """The switches VLAN ``vlan`` is needed at (why a link carries it)."""
        return frozenset(self._needs.get(vlan, ()))

    def desired(self, target: str) -> dict[str, frozenset[str]]:
        switch = self.switch_of(target)
        out: dict[str, frozenset[str]] = {}
        for port in sorted(self.policy.managed.get(switch or "", ())):
            link = self._port_link.get((switch or "", port))
            if link is not None:
                out[port] = frozenset(str(v) for v in self.link_vlans(link))
        return out

    def recompute(self, inventory: Inventory) -> dict[str, dict[str, frozenset[str]]]:
        full = trunk_vlans(self.graph, full_needs(inventory, self.policy), self.policy)
        return {
            t: {p: frozenset(str(v) for v in vlans) for p, vlans in ports.items()}
            for t, ports in full.items()
        }

    # ---- changes -----------------------------------------------------------------------

    def update(self, inventory: Inventory, delta: Delta, now: float) -> set[str]:
        """Recompute the VMs the delta affects; the targets whose trunks changed (every
        target when a session's sync state changed: held removals may go)."""
        changed: set[int] = set()
        for key in delta.affected_vms(inventory):
            changed |= self._set_contrib(key, self._needs_of(inventory, key))
        for vlan in sorted(changed):
            self._relink(vlan, now)
        dirty, self._dirty = self._dirty, set()
        return set(self.targets()) if delta.sessions else dirty

    def _needs_of(self, inventory: Inventory, key: Key) -> tuple[Need, ...]:
        vm = inventory.vms.get(key)
        if vm is None or vm.session in self.policy.check_sessions:
            return _NONE
        host = inventory.hosts.get((vm.session, vm.host))
        return vm_needs(vm, host, inventory.portgroups)

    def _set_contrib(self, key: Key, new: tuple[Need, ...]) -> set[int]:
        """Count ``key``'s needs; the VLANs whose switch set changed."""
        old = self._contrib.get(key, _NONE)
        if old == new:
            return set()
        if new:
            self._contrib[key] = new
        else:
            self._contrib.pop(key, None)
        changed: set[int] = set()
        for need in set(old) - set(new):
            users = self._users[need]
            users.discard(key)
            if not users:
                del self._users[need]
                self._needs[need[1]].discard(need[0])
                changed.add(need[1])
        for need in set(new) - set(old):
            users = self._users.setdefault(need, set())
            users.add(key)
            if len(users) == 1:
                self._needs.setdefault(need[1], set()).add(need[0])
                changed.add(need[1])
        return changed

    def _relink(self, vlan: int, now: float) -> None:
        switches = self._needs.get(vlan, set())
        if not switches:
            self._needs.pop(vlan, None)
        new = self.graph.carried(switches)
        old = self._links.get(vlan, frozenset())
        if new:
            self._links[vlan] = new
        else:
            self._links.pop(vlan, None)
        for link in new - old:
            self._carried.setdefault(link, set()).add(vlan)
            self._touch(link, vlan, now, gained=True)
        for link in old - new:
            self._carried[link].discard(vlan)
            self._touch(link, vlan, now, gained=False)

    def _touch(self, link: int, vlan: int, now: float, *, gained: bool) -> None:
        if vlan in self.policy.keep:
            return
        for sw, port in self._ends[link]:
            target = fabric_target(sw)
            if gained:
                self.removals.reclaimed(target, port, str(vlan))
            else:
                self.removals.vacated(target, port, str(vlan), now)
            self._dirty.add(target)

    # ---- planning ----------------------------------------------------------------------

    def gate(self, inventory: Inventory) -> Gate:
        """Any session out of sync might hide a VM that needs the VLAN: it blocks."""
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
        self, target: str, states: Mapping[str, PortState], inventory: Inventory, now: float
    ) -> TargetPlan:
        """The changes that bring the target's fabric ports to their VLANs at ``now``."""
        switch = self.switch_of(target)
        if switch is None:
            return TargetPlan(target, self.kind)
        gate = self.gate(inventory)
        changes: list[Change] = []
        held: list[Change] = []
        notes: dict[str, str] = {}
        for port, wanted in sorted(self.desired(target).items()):
            state = states.get(port)
            if state is None:
                continue
            todo, waiting, note = self._plan_port(target, state, wanted, (now, gate))
            changes += todo
            held += waiting
            if note:
                notes[port] = note
        return TargetPlan(target, self.kind, tuple(changes), tuple(held), (), notes)

    def _plan_port(
        self, target: str, state: PortState, wanted: frozenset[str], at: tuple[float, Gate]
    ) -> tuple[list[Change], list[Change], str]:
        now, gate = at
        if state.mode is PortMode.OPEN:
            remove, waiting = self.removals.due(
                target, state.port, {CLOSE_MEMBER}, set(), now=now, gate=gate
            )
            if not remove:
                why = waiting.get(CLOSE_MEMBER, "")
                return [], [Change(state.port, CLOSE_MEMBER, "remove", why)], ""
            close = Change(state.port, CLOSE_MEMBER, "remove", "trunk carried every VLAN: "
                           "pruned to the VLANs needed beyond it")  # fmt: skip
            adds = [self._add(state.port, v) for v in sorted(wanted, key=int)]
            return [close, *adds], [], ""
        if state.mode is not PortMode.TRUNK:
            return [], [], f"{state.mode}: not a trunk, left alone"
        have = {str(v) for v in state.vlans}
        changes = [self._add(state.port, v) for v in sorted(wanted - have, key=int)]
        dynamic = {str(v) for v in state.dynamic}
        remove, waiting = self.removals.due(target, state.port, dynamic, wanted, now=now, gate=gate)
        for member in sorted(remove, key=int):
            changes.append(Change(state.port, member, "remove", self._why_not(int(member))))
        held = [Change(state.port, m, "remove", w) for m, w in sorted(waiting.items())]
        return changes, held, ""

    def _add(self, port: str, member: str) -> Change:
        vlan = int(member)
        if vlan in self.policy.keep and vlan not in self._links:
            return Change(port, member, "add", "keep_vlans: carried on every fabric link")
        where = ", ".join(sorted(self._needs.get(vlan, ())))
        return Change(port, member, "add", f"VMs of VLAN {vlan} behind {where}")

    def _why_not(self, vlan: int) -> str:
        where = sorted(self._needs.get(vlan, ()))
        why = (
            f"VLAN {vlan} is needed only behind {where[0]}" if len(where) == 1
            else f"no VM needs VLAN {vlan} beyond this link"
        )  # fmt: skip
        if self.removals.prune_delay:
            why += f" (prune delay {self.removals.prune_delay:g}s elapsed)"
        return why
