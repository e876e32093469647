"""The composition root: builds the runtime's parts from one configuration and runs them.

Parts (each a module of its own): the shared ``Inventory``; the intents (autovlan); the
``Intake`` of source events; one ``Reconciler`` per target (switches), each driving a
``SwitchPortTarget``; the ``Recorder`` (the store's writer thread); ``Approvals``; the
prune timer; the live ``EventBus``. ``Controller`` wires them; ``reload`` swaps in a new
configuration (SIGHUP) without a restart: changed sessions reconnect, changed switches
get a new loop, links and engine settings take effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vmfabric.config import Config, SessionConfig, SwitchConfig
from vmfabric.core.errors import VmfabricError
from vmfabric.core.model import HostUpsert, SessionStatus, SourceEvent
from vmfabric.intents.autovlan import AutovlanIntent, SessionPolicy, SwitchPolicy
from vmfabric.intents.base import Intent
from vmfabric.intents.guard import GuardLimits
from vmfabric.intents.removals import Gate, Removals
from vmfabric.inventory.index import Delta, Inventory
from vmfabric.inventory.topology.resolve import Resolver
from vmfabric.runtime.approvals import Approvals, plan_keys
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.groups import build as build_groups
from vmfabric.runtime.intake import Intake, register_sessions
from vmfabric.runtime.lease import Lease, fence
from vmfabric.runtime.overlay import build as build_overlay
from vmfabric.runtime.overlay import build_pruning
from vmfabric.runtime.reconciler import LoopContext, LoopSettings, Reconciler
from vmfabric.runtime.recorder import Recorder
from vmfabric.runtime.switchports import SwitchPortTarget
from vmfabric.runtime.target import Target
from vmfabric.sources.base import Source, create_source
from vmfabric.store import Store, StoreError
from vmfabric.targets.switchport.base import Driver, create_driver

log = logging.getLogger("vmfabric")
Clock = Callable[[], float]
PORT_REREAD = 30.0  # seconds: re-read a quiet switch's ports (manual edits, re-created ports)
MAINTENANCE = 1.0  # seconds between looks for approvals, a replaced store, unrecorded data


def session_policies(config: Config) -> list[SessionPolicy]:
    return [
        SessionPolicy(s.name, s.autovlan, s.allowed_vlans, check=s.mode == "check")
        for s in config.sessions
    ]


def switch_policies(config: Config) -> list[SwitchPolicy]:
    return [
        SwitchPolicy(s.name, frozenset(s.edge_ports), s.open_ports == "close")
        for s in config.switches
    ]


def loop_settings(config: Config, reread: float = PORT_REREAD) -> LoopSettings:
    limits = GuardLimits(config.engine.max_removals, config.engine.max_removal_share)
    return LoopSettings(config.engine.coalesce, config.engine.retry_max, reread, limits)


Feature = tuple[Intent, Sequence[Target]]
# what each feature is built from: a reload rebuilds the feature when it changed
FEATURE_INPUTS: dict[str, Callable[[Config], tuple[object, ...]]] = {
    "groups": lambda c: (c.groups, c.policies, c.firewalls),
    "overlay": lambda c: (c.overlay, c.switches, c.engine),
    "pruning": lambda c: (c.pruning, c.fabric_links, c.switches, c.engine),
}


LEASE_WATCH = 0.25  # seconds between looks at whether the lease is still ours


def _restarted_sessions(old: Config, new: Config) -> set[str]:
    """Sessions a reload added or changed: they reconnect (the others keep running)."""
    before = {s.name: s for s in old.sessions}
    return {s.name for s in new.sessions if before.get(s.name) != s}


def _always_leader() -> None:
    """The lease check of a controller without a lease (it leads alone)."""


class StoreReplacedError(VmfabricError):
    """The store file was deleted or replaced while running: stop rather than apply
    changes that cannot be recorded where ``show`` looks."""


@dataclass
class _SourceRun:
    source: Source
    thread: threading.Thread
    stop: threading.Event


class Controller:
    """The running controller for one configuration (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        clock: Clock = time.time,
        drivers: dict[str, Driver] | None = None,
        sources: Sequence[Source] | None = None,
        bus: EventBus | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.bus = bus or EventBus()
        self.recorder = Recorder(store)
        self.inventory = Inventory(s.name for s in config.sessions)
        self.removals = Removals(config.engine.prune_delay)
        self.autovlan = AutovlanIntent(
            switch_policies(config), session_policies(config), self.removals
        )
        self.approvals = Approvals()
        self.intake = Intake(self.inventory, self.intents, self.recorder, self.bus, self._poke)
        self.intake.resolver = Resolver(config.switches, config.links)
        self.targets: dict[str, Target] = {}
        self.reconcilers: dict[str, Reconciler] = {}
        self.features: dict[str, Feature] = self._build_features(config)
        self._intent_of: dict[str, Any] = {}  # target -> the intent whose removals it has
        self.port_reread = PORT_REREAD
        self._drivers = drivers
        self._sources = sources
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, _SourceRun] = {}
        self._timer_reset = asyncio.Event()
        self._emit: Callable[[SourceEvent], None] | None = None
        self._stop: asyncio.Event | None = None
        self.failure: VmfabricError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lease = lease  # None: this controller leads alone (SQLite lock held by the CLI)
        self.leader = False

    # ---- parts -----------------------------------------------------------------------------

    def intents(self) -> list[Intent]:
        return [self.autovlan, *(intent for intent, _ in self.features.values())]

    def _build_features(self, config: Config) -> dict[str, Feature]:
        """The intents beyond autovlan that the configuration asks for, with their
        targets: security groups, the VXLAN overlay, inter-switch VLAN pruning."""
        built = {name: self._build_feature(name, config) for name in FEATURE_INPUTS}
        return {name: feature for name, feature in built.items() if feature is not None}

    def _build_feature(self, name: str, config: Config) -> Feature | None:
        if name == "groups":
            return build_groups(config, self.inventory)
        if name == "overlay":
            return build_overlay(config, self.inventory, self.removals)
        return build_pruning(config, self.inventory, self.removals)

    @property
    def resolver(self) -> Resolver:
        assert self.intake.resolver is not None
        return self.intake.resolver

    @property
    def events_handled(self) -> int:
        return self.intake.events_handled

    def _poke(self, target: str, at: float) -> None:
        loop = self.reconcilers.get(target)
        if loop is not None:
            loop.poke(at)
        self._timer_reset.set()

    def wake_all(self) -> None:
        for loop in self.reconcilers.values():
            loop.wake.set()

    def handle(self, batch: Sequence[SourceEvent]) -> None:
        """Feed one batch of source events (tests and benchmarks call this directly)."""
        self.intake.handle(batch, self.clock())
        self._timer_reset.set()

    def _make_driver(self, sw: SwitchConfig) -> Driver:
        if self._drivers is not None and sw.name in self._drivers:
            return self._drivers[sw.name]
        return create_driver(sw)

    def _make_sources(self, sessions: Sequence[SessionConfig]) -> list[Source]:
        if self._sources is not None:
            wanted = {s.name for s in sessions}
            return [s for s in self._sources if s.name in wanted]
        return [create_source(s, self.config.base_dir) for s in sessions]

    def _context(self) -> LoopContext:
        settings = loop_settings(self.config, self.port_reread)
        check = self.lease.check if self.lease is not None else _always_leader
        return LoopContext(
            settings, self.recorder, self.approvals, self.bus, self.clock, self._timer_reset.set,
            check,
        )  # fmt: skip

    # ---- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set. Sources stop and threads are joined on the way out.
        Raises ``StoreReplacedError`` when the store file was deleted or replaced."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self._stop = stop

        def emit(ev: SourceEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ev)

        self._emit = emit
        if self.lease is None:
            await self._lead()  # before the sources: their first events find it recorded
        else:
            self.intake.recording = False  # a standby records and applies nothing
        aux = [
            asyncio.create_task(self._prune_timer(stop), name="prune-timer"),
            asyncio.create_task(self._maintenance(stop), name="maintenance"),
        ]
        if self.lease is not None:
            aux.append(asyncio.create_task(self._leadership(stop), name="leadership"))
        for source in self._make_sources(self.config.sessions):
            self._start_source(source)
        if ready is not None:
            ready.set()
        try:
            await self.intake.consume(queue, stop, self.clock)
        finally:
            await self._shutdown(aux)
        if self.failure is not None:
            raise self.failure

    # ---- leadership (HA) ---------------------------------------------------------------

    async def _lead(self) -> None:
        """Become the one writer: record the sessions, start every target's loop."""
        self.leader = True
        await self.recorder.call(
            register_sessions, self.config, self.store, self.clock(), lane="inventory"
        )
        if not self.intake.recording:  # a standby until now: record its warm inventory
            self.intake.recording = True
            self.intake.mark_unrecorded()
        for sw in self.config.switches:
            self._start_target(sw)
        for name in self.features:
            self._start_feature(name)

    async def _leadership(self, stop: asyncio.Event) -> None:
        """Standby until the lease is ours, lead while it is, stand by again if lost."""
        lease = self.lease
        assert lease is not None
        while not stop.is_set():
            if not await asyncio.to_thread(lease.acquire, True) or stop.is_set():
                return
            log.info("controller %s: leader (epoch %d)", lease.identity.id, lease.epoch)
            if self.store.dialect() != "sqlite":  # a deposed leader's late writes refused
                self.store.set_write_guard(lambda conn: fence(conn, lease.epoch))
            await self._lead()
            while not stop.is_set() and lease.is_leader():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=LEASE_WATCH)
            if stop.is_set():
                return
            log.warning("controller %s: lease lost: standing by", lease.identity.id)
            await self._stand_down()

    async def _stand_down(self) -> None:
        self.leader = False
        self.intake.recording = False
        self.store.set_write_guard(None)
        for name in list(self._tasks):
            await self._stop_target(name)

    async def _shutdown(self, aux: list[asyncio.Task[None]]) -> None:
        if self.lease is not None:
            await asyncio.to_thread(self.lease.release)
        for run in self._runs.values():
            run.stop.set()
        self._timer_reset.set()
        self.wake_all()
        await asyncio.gather(*self._tasks.values(), *aux, return_exceptions=True)
        for run in self._runs.values():
            await asyncio.to_thread(run.thread.join, 10)
        await asyncio.to_thread(self.recorder.close)

    def _start_source(self, source: Source) -> None:
        assert self._emit is not None
        stop = threading.Event()
        thread = threading.Thread(
            target=source.run, args=(self._emit, stop), name=f"src-{source.name}", daemon=True
        )
        self._runs[source.name] = _SourceRun(source, thread, stop)
        thread.start()

    def _start_target(self, sw: SwitchConfig) -> None:
        target = SwitchPortTarget(sw, self._make_driver(sw), self.autovlan, self.inventory)
        self._run_target(target)

    def _run_target(self, target: Target) -> None:
        assert self._stop is not None
        loop = Reconciler(target, self._context())
        self.targets[target.name] = target
        self.reconcilers[target.name] = loop
        self._tasks[target.name] = asyncio.create_task(
            loop.run(self._stop), name=f"{target.kind}-{target.name}"
        )

    def _start_feature(self, name: str) -> None:
        intent, targets = self.features[name]
        for target in targets:
            self._intent_of[target.name] = intent
            self._run_target(target)

    async def _stop_target(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        self.reconcilers.pop(name, None)
        self.targets.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _prune_timer(self, stop: asyncio.Event) -> None:
        """Wake every switch when the next pending removal becomes due."""
        while not stop.is_set():
            self._timer_reset.clear()
            try:
                due = self.removals.next_deadline(self.clock(), self._gate_for)
            except Exception:  # a bug: wake every target now and then rather than never
                log.exception("prune timer: unexpected error")
                due = self.clock() + 5.0
            wait = 3600.0 if due is None else max(due - self.clock(), 0.0) + 0.001
            try:
                await asyncio.wait_for(self._timer_reset.wait(), timeout=wait)
            except TimeoutError:
                self.wake_all()

    def _gate_for(self, target: str) -> Gate:
        """The sync gate of the intent whose removals ``target`` holds."""
        intent = self._intent_of.get(target, self.autovlan)
        gate: Gate = intent.gate(self.inventory)
        return gate

    async def _maintenance(self, stop: asyncio.Event) -> None:
        """Approvals made with `vmfabric approve`, a replaced store, unrecorded data."""
        while not stop.is_set():
            try:
                await self._check_store(stop)
                if self.leader and self.intake.unrecorded():
                    self.intake.rerecord(self.clock())
                await self._take_approvals()
            except StoreError as exc:
                log.error("store: %s", exc)
            except Exception:  # a bug: logged with its traceback, retried next round
                log.exception("maintenance: unexpected error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=MAINTENANCE)

    async def _check_store(self, stop: asyncio.Event) -> None:
        try:
            await self.recorder.call(self.store.check_same)
        except StoreError as exc:
            self.failure = StoreReplacedError(
                f"{exc}; stopping: restart vmfabric run to rebuild it"
            )
            log.error("%s", self.failure)
            stop.set()

    async def _take_approvals(self) -> None:
        known = self.approvals.known()
        for plan in await self.recorder.call(self.store.approved_plans):
            if plan["id"] in known:
                continue
            self.approvals.add(plan["switch"], plan["id"], plan_keys(plan))
            log.info("plan %d approved: releasing its removals on %s", plan["id"], plan["switch"])
            self.bus.publish("plan", {"id": plan["id"], "target": plan["switch"],
                                      "status": "approved"})  # fmt: skip
            loop = self.reconcilers.get(plan["switch"])
            if loop is not None:
                loop.forget_held(plan["id"])
                loop.wake.set()

    # ---- reload (SIGHUP) -----------------------------------------------------------------

    async def reload(self, new: Config) -> None:
        """Swap in a new configuration without a restart (call on the event loop)."""
        old, self.config = self.config, new
        now = self.clock()
        self.removals.prune_delay = new.engine.prune_delay
        await self._reload_sessions(old, new)
        self.intake.resolver = Resolver(new.switches, new.links)
        self.autovlan.set_policies(session_policies(new), self.inventory, now)
        self.autovlan.set_switches(switch_policies(new), self.inventory, now)
        await self._reload_switches(old, new)
        await self._reload_features(old, new, now)
        settings = loop_settings(new, self.port_reread)
        for loop in self.reconcilers.values():
            loop.settings = settings
        hosts = [HostUpsert(h) for h in self.inventory.hosts.values()]
        self.handle(hosts)  # links or switches changed: resolve every host's uplinks again
        restarted = _restarted_sessions(old, new)
        await self.recorder.call(
            register_sessions, new, self.store, now, restarted, lane="inventory"
        )
        self.wake_all()
        log.info("configuration reloaded: %d sessions, %d switches",
                 len(new.sessions), len(new.switches))  # fmt: skip

    async def _reload_sessions(self, old: Config, new: Config) -> None:
        before = {s.name: s for s in old.sessions}
        after = {s.name: s for s in new.sessions}
        changed = [n for n in after if n in before and after[n] != before[n]]  # reconnect
        for name in [n for n in before if n not in after] + changed:
            run = self._runs.pop(name, None)
            if run is not None:
                run.stop.set()
                await asyncio.to_thread(run.thread.join, 10)
        self.wake_dirty(self.inventory.set_sessions(after))
        if changed:  # out of sync until the new source's snapshot
            self.handle([SessionStatus(n, "connecting") for n in changed])
        starting = [after[n] for n in after if n not in before or n in changed]
        for source in self._make_sources(starting):
            self._start_source(source)

    def wake_dirty(self, delta: Any) -> None:
        self.intake.wake_dirty(delta, self.clock())

    async def _reload_features(self, old: Config, new: Config, now: float) -> None:
        """Rebuild a feature whose configuration changed; its intent recomputes from the
        whole inventory and its targets get new loops."""
        for name, of in FEATURE_INPUTS.items():
            if of(old) == of(new):
                continue
            for target in self.features.pop(name, (None, []))[1]:
                await self._stop_target(target.name)
                self.removals.forget_target(target.name)
            feature = self._build_feature(name, new)
            if feature is not None:
                self.features[name] = feature
                everything = Delta(set(self.inventory.vms), sessions=set(self.inventory.sessions()))
                feature[0].update(self.inventory, everything, now)
                if self.leader:
                    self._start_feature(name)

    async def _reload_switches(self, old: Config, new: Config) -> None:
        before = {s.name: s for s in old.switches}
        after = {s.name: s for s in new.switches}
        for name, sw in before.items():
            if after.get(name) != sw:
                await self._stop_target(name)
        for name, sw in after.items():
            if before.get(name) != sw and self.leader:
                self._start_target(sw)
