"""The switch-port target: one switch's driver joined with the autovlan intent.

It keeps the last state read from the switch's edge ports, asks the intent for the plan,
renders ``Change``s as the driver's ``PortChange``s (one per port), and says which changes
the switch shows as done. Drivers whose origin record lives in the store get it from here:
the store's record is overlaid on what they read, and kept up to date after every apply.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from vmfabric.config import SwitchConfig
from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.intents.autovlan import CLOSE_MEMBER, AutovlanIntent
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.inventory.index import Inventory
from vmfabric.targets.switchport.base import Driver


class SwitchPortTarget:
    kind = "switchport"

    def __init__(
        self,
        config: SwitchConfig,
        driver: Driver,
        intent: AutovlanIntent,
        inventory: Inventory,
        origins: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.driver_name = config.driver
        self.mode = config.mode
        self.driver = driver
        self.capabilities = driver.capabilities
        self.intent = intent
        self.inventory = inventory
        self.states: dict[str, PortState] = {}
        self._origins = {p: frozenset(int(v) for v in m) for p, m in (origins or {}).items()}

    @property
    def store_origin(self) -> bool:
        return self.capabilities.origin == "store"

    def connect(self) -> None:
        self.driver.connect()

    def close(self) -> None:
        self.driver.close()

    def read(self) -> None:
        self._keep(self.driver.read_ports().values())

    def missing_ports(self) -> list[str]:
        return [p for p, st in sorted(self.states.items()) if st.mode is PortMode.MISSING]

    def _keep(self, states: Collection[PortState]) -> None:
        for read in states:
            st = read
            if self.store_origin:
                record = self._origins.get(st.port, frozenset())
                st = PortState(st.switch, st.port, st.mode, st.vlans, record & st.vlans)
            self.states[st.port] = st

    def plan(self, now: float) -> TargetPlan:
        return self.intent.plan(self.name, self.states, self.inventory, now)

    def admit(self, changes: Sequence[Change]) -> list[Change]:
        """An open port is written only together with its closing (``open_ports: close``):
        when the guard holds the closing, adding VLANs to a port that carries every VLAN
        would narrow it all the same."""
        closing = {c.holder for c in changes if c.member == CLOSE_MEMBER}
        return [
            c
            for c in changes
            if c.holder in closing
            or (st := self.states.get(c.holder)) is None
            or st.mode is not PortMode.OPEN
        ]

    def apply(self, changes: Sequence[Change]) -> None:
        before = dict(self.states)
        result = self.driver.apply(port_changes(changes))
        if self.store_origin:
            self._track_origins(changes, before, result)
        self._keep(result.values())

    def _track_origins(
        self,
        changes: Sequence[Change],
        before: Mapping[str, PortState],
        after: Mapping[str, PortState],
    ) -> None:
        for change in changes:
            if not change.member.isdigit():
                continue
            vlan, port = int(change.member), change.holder
            record = set(self._origins.get(port, frozenset()))
            was = before.get(port)
            now = after.get(port)
            if change.action == "add" and now is not None and vlan in now.vlans:
                if was is None or vlan not in was.vlans:
                    record.add(vlan)
            elif change.action == "remove":
                record.discard(vlan)
            self._origins[port] = frozenset(record)

    def confirmed(self, changes: Sequence[Change]) -> list[Change]:
        return [c for c in changes if self._done(c)]

    def _done(self, change: Change) -> bool:
        state = self.states.get(change.holder)
        if state is None:
            return False
        if change.member == CLOSE_MEMBER:
            return state.mode is not PortMode.OPEN
        vlan = int(change.member)
        return (vlan in state.vlans) == (change.action == "add")

    def dynamic_count(self) -> int:
        return sum(len(st.dynamic) for st in self.states.values())

    def origins(self) -> Mapping[str, Collection[str]] | None:
        if not self.store_origin:
            return None
        return {p: sorted(str(v) for v in vlans) for p, vlans in self._origins.items()}

    def applied(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.action == "remove":
                self.intent.removals.forget(self.name, change.holder, (change.member,))


def port_changes(changes: Sequence[Change]) -> list[PortChange]:
    """One PortChange per port; the close change of an open port becomes an empty change
    (the driver narrows the port to what is added)."""
    adds: dict[str, set[int]] = {}
    removes: dict[str, set[int]] = {}
    for c in changes:
        adds.setdefault(c.holder, set())
        removes.setdefault(c.holder, set())
        if c.member.isdigit():
            (adds if c.action == "add" else removes)[c.holder].add(int(c.member))
    return [
        PortChange(port, frozenset(adds[port]), frozenset(removes[port])) for port in sorted(adds)
    ]
