"""The service: wires sources -> engine -> drivers and the store. The only place with
asyncio tasks, clocks and threads.

How it runs
-----------
- Every session's source runs in a thread of its own and hands its events to the event
  loop (``call_soon_threadsafe``). The main task drains them in batches, resolves hosts'
  neighbours to switch ports, feeds the engine, records the inventory in the store and
  wakes the workers of the switches whose desired state changed.
- Every switch has one worker task (one queue per object, as kopf does): it waits to be
  woken, lets changes gather for ``engine.coalesce`` seconds, re-reads the edge ports, asks
  the engine for this switch's plan and applies it as one transaction in a worker thread.
  A slow or unreachable switch delays only itself; it is retried with backoff.
- A timer wakes the workers when the next pending removal is due (prune delay).
- Removals beyond the blast-radius limits are held for ``vmfabric approve``; additions
  are never held. A switch in ``mode: check`` records its plans and applies nothing.
- Nothing is applied that cannot be recorded: if the store cannot be written, the
  workers hold their plans and retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmfabric.config import Config, SessionConfig, SwitchConfig
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import (
    HostUpsert,
    Plan,
    PortGroupRemoved,
    PortGroupUpsert,
    PortMode,
    PortPlan,
    PortState,
    SessionStatus,
    Snapshot,
    SourceEvent,
)
from vmfabric.core.vlans import format_vlans
from vmfabric.intents import AutovlanEngine, GuardLimits, SessionPolicy, SwitchPolicy, guard_verdict
from vmfabric.inventory.topology.resolve import Resolver
from vmfabric.sources.base import Backoff, Source, create_source
from vmfabric.store import AuditEntry, Store, StoreError
from vmfabric.targets.switchport.base import Driver, create_driver

log = logging.getLogger("vmfabric")
Clock = Callable[[], float]
PortKey = tuple[str, str]
BATCH = 5000  # events handled per engine pass at most
PORT_REREAD = 30.0  # seconds: re-read a quiet switch's ports (manual edits, re-created ports)
CHECK_SWITCH = "switch is in check mode: nothing applied"
CHECK_SESSIONS = "sessions in check mode would add these: nothing applied"
APPROVAL_POLL = 1.0  # seconds between looks for plans approved with `vmfabric approve`


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


def build_engine(config: Config, prune_delay: float | None = None) -> AutovlanEngine:
    delay = config.engine.prune_delay if prune_delay is None else prune_delay
    return AutovlanEngine(switch_policies(config), session_policies(config), delay)


def guard_limits(config: Config) -> GuardLimits:
    return GuardLimits(config.engine.max_removals, config.engine.max_removal_share)


def session_url(s: SessionConfig) -> str:
    if s.kind == "vcenter":
        return s.url
    if s.kind == "libvirt":
        return ",".join(s.uris.values())
    return str(s.path)


def plan_json(ports: Iterable[PortPlan]) -> dict[str, Any]:
    """A plan as JSON for the store, ``show plan`` and ``sync --json``."""
    return {
        "ports": [
            {
                "switch": p.switch,
                "port": p.port,
                "add": sorted(p.add),
                "remove": sorted(p.remove),
                "reasons": [dataclasses.asdict(r) for r in p.reasons],
            }
            for p in ports
        ]
    }


def reason_text(port: PortPlan, vlan: int) -> str:
    for r in port.reasons:
        if r.vlan == vlan:
            who = ", ".join(r.vms)
            pgs = ", ".join(r.portgroups)
            text = f"VMs {who} (port group {pgs})" if who else r.note
            return f"{text}; {r.note}" if who and r.note else text
    return ""


def audit_entries(ports: Iterable[PortPlan], now: float) -> list[AuditEntry]:
    out = []
    for p in ports:
        for vlan in sorted(p.add):
            out.append(
                AuditEntry.switchport(now, p.switch, p.port, vlan, "add", reason_text(p, vlan))
            )
        for vlan in sorted(p.remove):
            out.append(
                AuditEntry.switchport(now, p.switch, p.port, vlan, "remove", reason_text(p, vlan))
            )
    return out


def strip_removals(ports: Iterable[PortPlan]) -> list[PortPlan]:
    kept = []
    for p in ports:
        if p.add:
            reasons = tuple(r for r in p.reasons if r.action == "add")
            kept.append(dataclasses.replace(p, remove=frozenset(), reasons=reasons))
    return kept


def keep_removals(ports: Iterable[PortPlan], kept: Collection[tuple[str, int]]) -> list[PortPlan]:
    """The port plans with only the removals (port, VLAN) in ``kept``; additions stay."""
    out = []
    for p in ports:
        remove = frozenset(v for v in p.remove if (p.port, v) in kept)
        if p.add or remove:
            reasons = tuple(r for r in p.reasons if r.action != "remove" or r.vlan in remove)
            out.append(dataclasses.replace(p, remove=remove, reasons=reasons))
    return out


def plan_removals(plan: dict[str, Any]) -> frozenset[tuple[str, int]]:
    """The (port, VLAN) removals of a stored plan (``Store.plan``)."""
    ports = plan.get("plan", {}).get("ports", [])
    return frozenset((str(p["port"]), int(v)) for p in ports for v in p.get("remove", []))


@dataclass
class SwitchWorker:
    """Applies one switch's plans, one at a time."""

    ctl: Controller
    config: SwitchConfig
    driver: Driver
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    connected: bool = False
    held_reason: str = ""
    last_check: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(cap=self.ctl.config.engine.retry_max)
        while not stop.is_set():
            try:
                await self._step(stop)
                backoff.reset()
            except (TransientError, PermanentError, StoreError) as exc:
                self.connected = False
                delay = backoff.next()
                text = str(exc)
                prefix = "" if text.startswith(f"switch {self.name}:") else f"switch {self.name}: "
                log.warning("%s%s; retrying in %.0fs", prefix, text, delay)
                self.ctl.record_switch(self.name, "unreachable", str(exc))
                await _sleep_until(stop, delay)
        await asyncio.to_thread(self.driver.close)

    async def _step(self, stop: asyncio.Event) -> None:
        if not self.connected:
            await asyncio.to_thread(self.driver.connect)
            self.connected = True
            self.ctl.record_switch(self.name, "ok")
            self.wake.set()
        with contextlib.suppress(TimeoutError):  # quiet: re-read and reconcile anyway
            await asyncio.wait_for(self.wake.wait(), timeout=self.ctl.port_reread)
        if stop.is_set():
            return
        self.wake.clear()
        await asyncio.sleep(self.ctl.config.engine.coalesce)
        await self.reconcile()

    async def reconcile(self) -> None:
        states = await asyncio.to_thread(self.driver.read_ports)
        self.ctl.update_states(states.values())
        now = self.ctl.clock()
        plan = self.ctl.engine.plan(self.ctl.states, now, [self.name])
        self.ctl.note_held(plan)
        self._record_check(list(plan.check), CHECK_SESSIONS, now)
        ports = list(plan.for_switch(self.name))
        ports = self._guard(ports, now)
        if self.config.mode == "check":
            self._record_check(ports, CHECK_SWITCH, now)
            return
        if not ports:
            return
        self.ctl.store.set_switch_status(self.name, "ok", now=now)  # fails if unrecordable
        result = await asyncio.to_thread(self.driver.apply, [p.change() for p in ports])
        self.ctl.update_states(result.values())
        self.ctl.applied(ports, now)

    def _record_check(self, ports: list[PortPlan], reason: str, now: float) -> None:
        """Record what check mode keeps from being applied, once per change of it."""
        doc = plan_json(ports)
        if doc == self.last_check.get(reason, {"ports": []}):
            return
        self.last_check[reason] = doc
        if ports:
            log.info("switch %s: check mode: %s", self.name, reason)
            self.ctl.store.save_plan(self.name, "check", doc, reason, now)

    def _guard(self, ports: list[PortPlan], now: float) -> list[PortPlan]:
        """The plan minus removals the blast-radius guard holds. Removals in an approved
        plan go; the others are judged alone (a plan grown since approval is held again)."""
        approved = self.ctl.take_approved(self.name)
        planned = {(p.port, v) for p in ports for v in p.remove}
        unapproved = keep_removals(ports, planned - approved)
        verdict = guard_verdict(unapproved, self.ctl.states, self.name, self.ctl.limits)
        if not verdict:
            self.held_reason = ""
            return ports
        if verdict != self.held_reason:
            log.warning("switch %s: plan held: %s", self.name, verdict)
            self.ctl.save_plan(self.name, "held", unapproved, verdict, now)
            self.held_reason = verdict
        return keep_removals(ports, planned & approved)


async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


class Controller:
    """The running controller for one configuration."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Clock = time.time,
        drivers: dict[str, Driver] | None = None,
        sources: Sequence[Source] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.engine = build_engine(config)
        self.limits = guard_limits(config)
        self.resolver = Resolver(config.switches, config.links)
        self.states: dict[PortKey, PortState] = {}
        self._drivers = drivers
        self._sources = sources
        self._approved: dict[str, frozenset[tuple[str, int]]] = {}
        self._status: dict[str, SessionStatus] = {}  # last status per session
        self._problems: dict[str, dict[str, str]] = {}  # session -> port group -> problem
        self._unrecorded: set[str] = set()  # sessions whose inventory the store missed
        self._timer_reset = asyncio.Event()
        self.workers: dict[str, SwitchWorker] = {}
        self.events_handled = 0
        self.port_reread = PORT_REREAD  # seconds; tests and benchmarks may shorten it

    # ---- wiring --------------------------------------------------------------------------

    def _make_sources(self) -> list[Source]:
        if self._sources is not None:
            return list(self._sources)
        return [create_source(s, self.config.base_dir) for s in self.config.sessions]

    def _make_driver(self, sw: SwitchConfig) -> Driver:
        if self._drivers is not None and sw.name in self._drivers:
            return self._drivers[sw.name]
        return create_driver(sw)

    def _register_sessions(self) -> None:
        register_sessions(self.config, self.store, self.clock())

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until ``stop`` is set. Sources stop and threads are joined on the way out."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[SourceEvent] = asyncio.Queue()
        self._register_sessions()
        thread_stop = threading.Event()

        def emit(event: SourceEvent) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        threads = [
            threading.Thread(target=src.run, args=(emit, thread_stop), name=f"src-{src.name}")
            for src in self._make_sources()
        ]
        self.workers = {
            sw.name: SwitchWorker(self, sw, self._make_driver(sw)) for sw in self.config.switches
        }
        tasks = [asyncio.create_task(w.run(stop), name=f"sw-{n}") for n, w in self.workers.items()]
        tasks.append(asyncio.create_task(self._timer(stop), name="prune-timer"))
        tasks.append(asyncio.create_task(self._approvals(stop), name="approvals"))
        for t in threads:
            t.start()
        if ready is not None:
            ready.set()
        try:
            await self._consume(queue, stop)
        finally:
            thread_stop.set()
            self._timer_reset.set()
            self.wake_all()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in threads:
                await asyncio.to_thread(t.join, 10)

    async def _consume(self, queue: asyncio.Queue[SourceEvent], stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, stopper}, return_when="FIRST_COMPLETED")
                if getter not in done:
                    getter.cancel()
                    break
                batch = [getter.result()]
                while not queue.empty() and len(batch) < BATCH:
                    batch.append(queue.get_nowait())
                self.handle(batch)
        finally:
            stopper.cancel()

    # ---- events --------------------------------------------------------------------------

    def handle(self, batch: Sequence[SourceEvent]) -> None:
        """Feed one batch of source events to the engine and the store, wake switches."""
        now = self.clock()
        events = [resolve_hosts(e, self.resolver) for e in batch]
        self.engine.apply(events, now)
        self.events_handled += len(events)
        self._record_events(events, now)
        for name in self.engine.take_dirty():
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake.set()
        if any(isinstance(e, Snapshot) for e in events):
            self.wake_all()  # a session back in sync may release held removals
        self._timer_reset.set()

    def _record_events(self, events: Sequence[SourceEvent], now: float) -> None:
        changes: list[Any] = []
        try:
            if self._unrecorded:  # the engine has this batch too: record its whole view
                self._unrecorded.update(s.name for s in self.config.sessions)
                self._rerecord(now)
                return
            problems = self._track_problems(events)
            for ev in events:
                if isinstance(ev, SessionStatus | Snapshot):
                    if changes:
                        self.store.apply_changes(changes, now)
                        changes = []
                    self._record_session_event(ev, now)
                    problems.discard(ev.session)
                else:
                    changes.append(ev)
            if changes:
                self.store.apply_changes(changes, now)
            for session in problems:  # a port group's problem changed: refresh the warnings
                status = self._status.get(session, SessionStatus(session, "connected"))
                self._record_session_event(status, now)
        except StoreError as exc:
            self._unrecorded.update(s.name for s in self.config.sessions)
            log.error("store: %s", exc)

    def _rerecord(self, now: float) -> None:
        """Record the engine's inventory of sessions whose events the store missed (it
        failed): ``show`` must not stay stale once the store is writable again."""
        for name in sorted(self._unrecorded):
            eng = self.engine
            hosts = [h for k, h in eng.hosts.items() if k[0] == name]
            portgroups = [p for k, p in eng.portgroups.items() if k[0] == name]
            vms = [v for k, v in eng.vms.items() if k[0] == name]
            self.store.replace_inventory(name, hosts, portgroups, vms, now)
            last = self._status.get(name)
            if last is not None:
                self.store.set_session_status(
                    name, last.state, in_sync=self.engine.in_sync(name), error=last.error,
                    version=last.version, warnings=last.warnings, now=now,
                )  # fmt: skip
            self._unrecorded.discard(name)

    def _track_problems(self, events: Sequence[SourceEvent]) -> set[str]:
        """Keep each session's port groups that vmfabric cannot serve (a PVLAN, say), to
        show as warnings; return the sessions whose set changed."""
        changed: set[str] = set()
        for ev in events:
            if isinstance(ev, Snapshot):
                found = {pg.name: pg.problem for pg in ev.portgroups if pg.problem}
                if found != self._problems.get(ev.session, {}):
                    changed.add(ev.session)
                self._problems[ev.session] = found
            elif isinstance(ev, PortGroupUpsert):
                pg = ev.portgroup
                self._set_problem(pg.session, pg.name, pg.problem, changed)
            elif isinstance(ev, PortGroupRemoved):
                self._set_problem(ev.session, ev.name, "", changed)
        return changed

    def _set_problem(self, session: str, name: str, problem: str, changed: set[str]) -> None:
        known = self._problems.setdefault(session, {})
        if known.get(name, "") == problem:
            return
        changed.add(session)
        known.pop(name, None)
        if problem:
            known[name] = problem

    def _problem_warnings(self, session: str) -> tuple[str, ...]:
        found = self._problems.get(session, {})
        return tuple(f"port group {n}: {p}" for n, p in sorted(found.items()))

    def _record_session_event(self, ev: SessionStatus | Snapshot, now: float) -> None:
        if isinstance(ev, Snapshot):
            self.store.replace_inventory(ev.session, ev.hosts, ev.portgroups, ev.vms, now)
            last = self._status.get(ev.session, SessionStatus(ev.session, "connected"))
            ev = dataclasses.replace(last, state="connected")  # keep version and warnings
        else:
            self._status[ev.session] = ev
        if ev.state != "connected" or ev.error:
            log.log(
                logging.WARNING if ev.error else logging.INFO,
                "session %s: %s%s", ev.session, ev.state, f": {ev.error}" if ev.error else "",
            )  # fmt: skip
        self.store.set_session_status(
            ev.session, ev.state, in_sync=self.engine.in_sync(ev.session), error=ev.error,
            version=ev.version, warnings=(*ev.warnings, *self._problem_warnings(ev.session)),
            now=now,
        )  # fmt: skip

    def wake_all(self) -> None:
        for w in self.workers.values():
            w.wake.set()

    async def _timer(self, stop: asyncio.Event) -> None:
        """Wake every switch when the next pending removal becomes due."""
        while not stop.is_set():
            self._timer_reset.clear()
            due = self.engine.next_deadline(self.clock())
            wait = 3600.0 if due is None else max(due - self.clock(), 0.0) + 0.001
            try:
                await asyncio.wait_for(self._timer_reset.wait(), timeout=wait)
            except TimeoutError:
                self.wake_all()

    async def _approvals(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if self._unrecorded:
                    self._rerecord(self.clock())
                for plan_id in self.store.pending_approvals():
                    plan = self.store.plan(plan_id)
                    if plan is not None:
                        sw = plan["target"]
                        self._approved[sw] = self._approved.get(sw, frozenset()) | plan_removals(
                            plan
                        )
                        self.store.set_plan_status(plan_id, "applied", self.clock())
                        worker = self.workers.get(plan["target"])
                        if worker is not None:
                            worker.wake.set()
            except StoreError as exc:
                log.error("store: %s", exc)
            await _sleep_until(stop, APPROVAL_POLL)

    def take_approved(self, switch: str) -> frozenset[tuple[str, int]]:
        """The (port, VLAN) removals approved for ``switch`` since last taken."""
        return self._approved.pop(switch, frozenset())

    # ---- results -------------------------------------------------------------------------

    def update_states(self, states: Iterable[PortState]) -> None:
        batch = list(states)
        for st in batch:
            self.states[(st.switch, st.port)] = st
        if batch:
            self.store.set_port_states(batch, self.clock())

    def applied(self, ports: Sequence[PortPlan], now: float) -> None:
        for p in ports:
            if p.remove:
                self.engine.forget_removed(p.switch, p.port, p.remove)
            log.info(
                "%s %s: +[%s] -[%s]", p.switch, p.port, format_vlans(p.add), format_vlans(p.remove)
            )
        self.store.record_audit(audit_entries(ports, now))

    def save_plan(
        self, switch: str, status: str, ports: Sequence[PortPlan], reason: str, now: float
    ) -> None:
        self.store.save_plan(switch, status, plan_json(ports), reason, now)

    def note_held(self, plan: Plan) -> None:
        """A plan may start removal timers (a dynamic VLAN on the switch that no VM needs,
        as after a restart): let the prune timer look again so they fire when due."""
        if plan.held:
            self._timer_reset.set()

    def record_switch(self, switch: str, state: str, error: str = "") -> None:
        try:
            self.store.set_switch_status(switch, state, error, now=self.clock())
        except StoreError as exc:
            log.error("store: %s", exc)


# ---- one-shot reconcile (`vmfabric sync`) ------------------------------------------------


def register_sessions(config: Config, store: Store, now: float) -> None:
    """Record the configured sessions (state connecting) and forget removed ones."""
    for s in config.sessions:
        store.set_session(s.name, s.kind, session_url(s), s.autovlan, s.allowed_vlans, s.mode)
        store.set_session_status(s.name, "connecting", in_sync=False, now=now)
    store.forget_sessions_except([s.name for s in config.sessions])


@dataclass
class SyncResult:
    plan: list[PortPlan]
    held: list[PortPlan]
    guarded: dict[str, str]
    applied: bool
    transactions: int = 0


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


def resolve_hosts(ev: SourceEvent, resolver: Resolver) -> SourceEvent:
    """The event with its hosts' uplinks filled from static links and CDP/LLDP neighbours."""
    if isinstance(ev, Snapshot):
        return dataclasses.replace(ev, hosts=tuple(resolver.resolve(h) for h in ev.hosts))
    if isinstance(ev, HostUpsert):
        return HostUpsert(resolver.resolve(ev.host))
    return ev


def _check_ports(states: dict[str, PortState], sw: SwitchConfig) -> None:
    missing = [p for p, st in states.items() if st.mode is PortMode.MISSING]
    if missing:
        where = f" on bridge {sw.bridge}" if sw.bridge else ""
        raise ConfigError(f"switch {sw.name}: edge port {missing[0]} does not exist{where}")


def sync_once(
    config: Config,
    store: Store | None,
    dry_run: bool,
    clock: Clock = time.time,
    timeout: float = 30.0,
) -> SyncResult:
    """Read every session once, read every switch, and apply the plan (unless dry_run).

    A deliberate one-shot reconcile has no prune delay; removals still require every
    session in sync and pass the blast-radius guard. Nothing is applied when any switch or
    session fails to read."""
    engine = build_engine(config, prune_delay=0.0)
    resolver = Resolver(config.switches, config.links)
    snapshots: list[Snapshot] = []
    for source in (create_source(s, config.base_dir) for s in config.sessions):
        for raw in first_snapshot(source, timeout):
            ev = resolve_hosts(raw, resolver)
            engine.apply_one(ev, clock())
            if isinstance(ev, Snapshot):
                snapshots.append(ev)
    if store is not None:
        register_sessions(config, store, clock())
        for snap in snapshots:
            store.replace_inventory(snap.session, snap.hosts, snap.portgroups, snap.vms, clock())
            store.set_session_status(snap.session, "connected", in_sync=True, now=clock())
    drivers = {sw.name: create_driver(sw) for sw in config.switches}
    try:
        return _sync_switches(config, engine, drivers, store, dry_run=dry_run, clock=clock)
    finally:
        for d in drivers.values():
            d.close()


def _sync_switches(
    config: Config,
    engine: AutovlanEngine,
    drivers: dict[str, Driver],
    store: Store | None,
    *,
    dry_run: bool,
    clock: Clock,
) -> SyncResult:
    states: dict[PortKey, PortState] = {}
    for sw in config.switches:
        driver = drivers[sw.name]
        driver.connect()
        read = driver.read_ports()
        _check_ports(read, sw)
        states.update({(s.switch, s.port): s for s in read.values()})
    now = clock()
    plan = engine.plan(states, now)  # no prune delay: a removal is due when planned
    limits = guard_limits(config)
    result = SyncResult(list(plan.ports), list(plan.held), {}, applied=False)
    if dry_run:
        return result
    for sw in config.switches:
        ports = list(plan.for_switch(sw.name))
        verdict = guard_verdict(ports, states, sw.name, limits)
        if verdict:
            result.guarded[sw.name] = verdict
            if store is not None:
                store.save_plan(sw.name, "held", plan_json(ports), verdict, now)
            ports = strip_removals(ports)
        if not ports or sw.mode == "check":
            continue
        new = drivers[sw.name].apply([p.change() for p in ports])
        result.transactions += 1
        states.update({(s.switch, s.port): s for s in new.values()})
        if store is not None:
            store.record_audit(audit_entries(ports, now))
    result.applied = True
    if store is not None:
        store.set_port_states(list(states.values()), now)
    return result


__all__ = ["Controller", "SyncResult", "build_engine", "sync_once"]
