"""``vmfabric sync``: the reconcile step of ``run``, once, for every switch.

Every session is read once (its first full snapshot), every switch is read, and then each
switch goes through exactly the step ``run`` uses (``Reconciler.reconcile``): check mode,
the blast-radius guard, approvals made with ``vmfabric approve``, the "applying" record
and the audit of confirmed changes all behave as they do in ``run``. A deliberate one-shot
has no prune delay: a removal is due when first planned (still gated by every session
being in sync, and by the guard). Nothing is applied when any session or switch fails to
read, or an edge port does not exist (bad input).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vmfabric.config import Config
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.core.model import SessionStatus, Snapshot, SourceEvent
from vmfabric.intents.autovlan import AutovlanIntent
from vmfabric.intents.base import Change
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory
from vmfabric.inventory.topology.resolve import Resolver
from vmfabric.runtime.approvals import Approvals, plan_keys
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.intake import register_sessions, resolve_hosts
from vmfabric.runtime.reconciler import LoopContext, Reconciler, StepResult
from vmfabric.runtime.recorder import Recorder, plan_doc
from vmfabric.runtime.root import loop_settings, session_policies, switch_policies
from vmfabric.runtime.switchports import SwitchPortTarget
from vmfabric.sources.base import Source, create_source
from vmfabric.store import Store
from vmfabric.targets.switchport.base import create_driver

Clock = Callable[[], float]


@dataclass
class SyncResult:
    """Per switch, what the step planned and did."""

    steps: list[StepResult] = field(default_factory=list)
    dry_run: bool = False

    @property
    def applied(self) -> bool:
        """True only when some change was written and confirmed by a switch."""
        return any(s.applied for s in self.steps)

    @property
    def transactions(self) -> int:
        """Switch transactions sent (one per switch with something to write)."""
        return sum(1 for s in self.steps if s.sent)

    def planned(self) -> list[tuple[str, Change]]:
        return [(s.target, c) for s in self.steps for c in s.plan.changes]

    def to_json(self) -> dict[str, Any]:
        def ports(pick: Callable[[StepResult], tuple[Change, ...]]) -> list[Any]:
            return [p for s in self.steps for p in plan_doc(s.target, pick(s))["ports"]]

        return {
            "ports": ports(lambda s: s.plan.changes),
            "applied_ports": ports(lambda s: s.applied),
            "held": ports(lambda s: (*s.guard_held, *s.plan.held)),
            "check": ports(lambda s: s.plan.changes if s.check else s.plan.check),
            "guarded": {s.target: s.guarded for s in self.steps if s.guarded},
            "check_mode": sorted(s.target for s in self.steps if s.check),
            "applied": self.applied,
            "dry_run": self.dry_run,
        }


def first_snapshot(source: Source, timeout: float) -> list[SourceEvent]:
    """Run a source until it delivers its first full snapshot. Raises TransientError with
    the session's last error when it does not within ``timeout`` seconds."""
    events: list[SourceEvent] = []
    done = threading.Event()
    failure: SessionStatus | None = None

    def emit(ev: SourceEvent) -> None:
        nonlocal failure
        events.append(ev)
        if isinstance(ev, SessionStatus) and ev.error:
            failure = ev
            if ev.bad_input:
                done.set()
        if isinstance(ev, Snapshot):
            done.set()

    thread = threading.Thread(target=source.run, args=(emit, done), daemon=True)
    thread.start()
    arrived = done.wait(timeout)
    done.set()
    thread.join(10)
    if failure is not None and failure.bad_input:
        raise ConfigError(f"session {source.name}: {failure.error}")
    if not arrived:
        why = failure.error if failure is not None else f"no inventory within {timeout:g}s"
        raise TransientError(f"session {source.name}: {why}")
    return events


def _record_inventory(config: Config, store: Store, inventory: Inventory, now: float) -> None:
    """Record the sessions as read (``show`` works after a sync), each in sync."""
    register_sessions(config, store, now)
    for name in inventory.sessions():
        hosts = [h for k, h in inventory.hosts.items() if k[0] == name]
        pgs = [p for k, p in inventory.portgroups.items() if k[0] == name]
        vms = [v for k, v in inventory.vms.items() if k[0] == name]
        store.replace_inventory(name, hosts, pgs, vms, now)
        store.set_session_status(name, "connected", in_sync=inventory.in_sync(name), now=now)


def sync_once(
    config: Config,
    store: Store | None,
    dry_run: bool,
    clock: Clock = time.time,
    timeout: float = 30.0,
) -> SyncResult:
    """Read every session once, read every switch, and run the reconcile step once per
    switch (planning only, with ``dry_run``). ``store`` None: an in-memory store."""
    own = store is None
    store = store if store is not None else Store("sqlite://")
    try:
        return asyncio.run(_sync(config, store, dry_run, clock, timeout))
    finally:
        if own:
            store.close()


async def _sync(
    config: Config, store: Store, dry_run: bool, clock: Clock, timeout: float
) -> SyncResult:
    inventory = Inventory(s.name for s in config.sessions)
    resolver = Resolver(config.switches, config.links)
    snapshots: list[SourceEvent] = []
    for source in (create_source(s, config.base_dir) for s in config.sessions):
        events = await asyncio.to_thread(first_snapshot, source, timeout)
        snapshots.extend(resolve_hosts(ev, resolver) for ev in events)
    delta = inventory.apply(snapshots, clock())
    intent = AutovlanIntent(switch_policies(config), session_policies(config), Removals(0.0))
    intent.update(inventory, delta, clock())
    recorder = Recorder(store)
    try:
        parts = (intent, inventory)
        return await _steps(config, store, recorder, parts, dry_run=dry_run, clock=clock)
    finally:
        await asyncio.to_thread(recorder.close)


async def _steps(
    config: Config,
    store: Store,
    recorder: Recorder,
    parts: tuple[AutovlanIntent, Inventory],
    *,
    dry_run: bool,
    clock: Clock,
) -> SyncResult:
    intent, inventory = parts
    approvals = Approvals()
    if not dry_run:
        await recorder.call(_record_inventory, config, store, inventory, clock())
        for plan in await recorder.call(store.approved_plans):
            approvals.add(plan["switch"], plan["id"], plan_keys(plan))
    ctx = LoopContext(loop_settings(config), recorder, approvals, EventBus(), clock)
    targets = [SwitchPortTarget(sw, create_driver(sw), intent, inventory) for sw in config.switches]
    result = SyncResult(dry_run=dry_run)
    try:
        for target in targets:
            await asyncio.to_thread(target.connect)
            await asyncio.to_thread(target.read)
            missing = target.missing_ports()
            if missing:
                where = f" ({target.config.endpoint()})" if target.config.endpoint() else ""
                raise ConfigError(
                    f"switch {target.name}: edge port {missing[0]} does not exist{where}"
                )
        for target in targets:
            step = await Reconciler(target, ctx).reconcile(dry_run=dry_run, read=False)
            result.steps.append(step)
    finally:
        for target in targets:
            await asyncio.to_thread(target.close)
    return result
