"""The pure parts of autovlan wired as the runtime wires them, for unit tests and benches:
the shared inventory, the autovlan intent and removal safety."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vmfabric.core.model import PortState, SourceEvent
from vmfabric.intents import AutovlanIntent, Removals, SessionPolicy, SwitchPolicy, TargetPlan
from vmfabric.inventory.index import Inventory


class Autovlan:
    def __init__(
        self,
        switches: Iterable[SwitchPolicy],
        policies: Iterable[SessionPolicy],
        prune_delay: float,
    ) -> None:
        policies = list(policies)
        self.inventory = Inventory(p.name for p in policies)
        self.removals = Removals(prune_delay)
        self.intent = AutovlanIntent(switches, policies, self.removals)

    def apply_one(self, event: SourceEvent, now: float) -> set[str]:
        return self.apply([event], now)

    def apply(self, events: Iterable[SourceEvent], now: float) -> set[str]:
        delta = self.inventory.apply(events, now)
        return self.intent.update(self.inventory, delta, now)

    def plan(self, states: Mapping[tuple[str, str], PortState], now: float) -> TargetPlan:
        """The plan of the one switch the states name (``leaf1`` if they name none)."""
        switches = {sw for sw, _ in states} or {"leaf1"}
        (switch,) = switches
        ports = {port: st for (_, port), st in states.items()}
        return self.intent.plan(switch, ports, self.inventory, now)

    def next_deadline(self, now: float) -> float | None:
        gate = self.intent.gate(self.inventory)
        return self.removals.next_deadline(now, lambda _target: gate)

    def in_sync(self, session: str) -> bool:
        return self.inventory.in_sync(session)


def adds(plan: TargetPlan) -> set[tuple[str, int]]:
    return {(c.holder, int(c.member)) for c in plan.changes if c.action == "add"}


def removes(plan: TargetPlan) -> set[tuple[str, int]]:
    return {(c.holder, int(c.member)) for c in plan.changes if c.action == "remove"}
