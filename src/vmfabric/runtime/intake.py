"""Event intake: source events in, inventory and intents updated, targets woken, the
inventory recorded.

Every session's source runs in a thread of its own and hands its events to the event loop
(``call_soon_threadsafe``). ``Intake.consume`` drains them in batches; ``handle`` resolves
hosts' CDP/LLDP neighbours to switch ports, applies the batch to the shared inventory,
lets every intent compute its dirty targets, wakes those targets' loops and queues the
batch for the store on the recorder's writer thread. When the store cannot be written,
the sessions are marked unrecorded and their whole inventory is recorded again once it
can be (``show`` must not stay stale).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from vmfabric.config import Config, SessionConfig
from vmfabric.core.gcpause import gc_paused
from vmfabric.core.model import (
    HostUpsert,
    PortGroupRemoved,
    PortGroupUpsert,
    SessionStatus,
    Snapshot,
    SourceEvent,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.intents.base import Intent
from vmfabric.inventory.index import Delta, Inventory
from vmfabric.inventory.topology.resolve import Resolver
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.recorder import Recorder
from vmfabric.store import Store, StoreError

log = logging.getLogger("vmfabric")
BATCH = 5000  # events handled per pass at most
Wake = Callable[[str, float], None]
Notice = tuple[str, dict[str, Any]]  # a live event to publish once the batch is recorded


def session_url(s: SessionConfig) -> str:
    if s.kind == "vcenter":
        return s.url
    if s.kind == "libvirt":
        return ",".join(s.uris.values())
    return str(s.path)


def register_sessions(
    config: Config, store: Store, now: float, connecting: Collection[str] | None = None
) -> None:
    """Record the configured sessions and forget removed ones. The sessions in
    ``connecting`` (all when None) are recorded as connecting, out of sync; the others
    keep their live status (a reload that did not change them)."""
    for s in config.sessions:
        store.set_session(s.name, s.kind, session_url(s), s.autovlan, s.allowed_vlans, s.mode)
        if connecting is None or s.name in connecting:
            store.set_session_status(s.name, "connecting", in_sync=False, now=now)
    store.forget_sessions_except([s.name for s in config.sessions])


def resolve_hosts(ev: SourceEvent, resolver: Resolver) -> SourceEvent:
    """The event with its hosts' uplinks filled from static links and CDP/LLDP neighbours."""
    if isinstance(ev, Snapshot):
        return dataclasses.replace(ev, hosts=tuple(resolver.resolve(h) for h in ev.hosts))
    if isinstance(ev, HostUpsert):
        return HostUpsert(resolver.resolve(ev.host))
    return ev


class Intake:
    def __init__(
        self,
        inventory: Inventory,
        intents: Callable[[], Sequence[Intent]],
        recorder: Recorder,
        bus: EventBus,
        wake: Wake,
    ) -> None:
        self.inventory = inventory
        self.intents = intents
        self.recorder = recorder
        self.store = recorder.store
        self.bus = bus
        self.wake = wake
        self.resolver: Resolver | None = None
        self.events_handled = 0
        self.status: dict[str, SessionStatus] = {}  # last status per session
        self._problems: dict[str, dict[str, str]] = {}  # session -> port group -> problem
        self._unrecorded: set[str] = set()  # sessions whose inventory the store missed
        self._lock = threading.Lock()  # guards _unrecorded (set by the writer thread)
        self.recording = True  # False on a standby controller: the leader records

    # ---- the queue ---------------------------------------------------------------------

    async def consume(
        self, queue: asyncio.Queue[SourceEvent], stop: asyncio.Event, clock: Callable[[], float]
    ) -> None:
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
                try:
                    self.handle(batch, clock())
                except Exception:  # a bug: say so, keep the controller serving the rest
                    log.exception("intake: unexpected error handling %d events", len(batch))
        finally:
            stopper.cancel()

    # ---- one batch ---------------------------------------------------------------------

    def handle(self, batch: Sequence[SourceEvent], now: float) -> Delta:
        """Feed one batch to the inventory and the intents, wake dirty targets, record.

        A batch with a whole inventory (a snapshot) is handled with the cyclic garbage
        collector paused (building the indexes of 100,000 VMs made it rescan the growing
        heap again and again), and the heap is then kept out of its reach until the
        targets are at rest (``Recorder.freeze_heap``)."""
        if not any(isinstance(e, Snapshot) for e in batch):
            return self._handle(batch, now)
        with gc_paused():
            delta = self._handle(batch, now)
            self.recorder.freeze_heap()  # until the targets it woke are at rest
        return delta

    def _handle(self, batch: Sequence[SourceEvent], now: float) -> Delta:
        resolver = self.resolver
        events = [resolve_hosts(e, resolver) for e in batch] if resolver else list(batch)
        before = {k: self.inventory.vms.get(k) for k in self._vm_keys(events)}
        delta = self.inventory.apply(events, now)
        self.wake_dirty(delta, now)
        self.events_handled += len(events)
        notices: list[tuple[str, dict[str, Any]]] = [("events", {"count": len(events)})]
        notices += self._vm_notices(before)
        self._record(events, now, notices)
        return delta

    def wake_dirty(self, delta: Delta, now: float) -> None:
        for intent in self.intents():
            for target in intent.update(self.inventory, delta, now):
                self.wake(target, now)

    def _vm_keys(self, events: Iterable[SourceEvent]) -> list[tuple[str, str]]:
        """The VMs a batch may change: named by upserts and removals, and every VM of a
        session a snapshot replaces (before and after), unless it is the session's first."""
        keys: list[tuple[str, str]] = []
        for ev in events:
            if isinstance(ev, VmUpsert):
                keys.append(ev.vm.key)
            elif isinstance(ev, VmRemoved):
                keys.append((ev.session, ev.id))
            elif isinstance(ev, Snapshot):
                known = [k for k in self.inventory.vms if k[0] == ev.session]
                if known:  # a session's first inventory is no news per VM: its session
                    keys.extend(known)  # event says to read the views (100,000 VMs would
                    keys.extend(vm.key for vm in ev.vms)  # flush the 10,000 events kept)
        return keys

    def _vm_notices(self, before: dict[tuple[str, str], Vm | None]) -> list[Notice]:
        out: list[Notice] = []
        for key, old in before.items():
            new = self.inventory.vms.get(key)
            change = _vm_change(old, new)
            if change:
                vm = new or old
                assert vm is not None
                out.append(("vm", {"session": vm.session, "vm": vm.name, "host": vm.host,
                                   "power": str(vm.power), "change": change}))  # fmt: skip
        return out

    # ---- recording ---------------------------------------------------------------------

    def _record(self, events: Sequence[SourceEvent], now: float, notices: list[Notice]) -> None:
        """Queue the batch for the store; its live events are published once written, so
        that whoever reads a view on an event sees the change."""
        if not self.recording:
            self._track_problems(events)
            for ev in events:
                if isinstance(ev, SessionStatus):
                    self.status[ev.session] = ev
            self._submit(False, self._publish, notices)
            return
        with self._lock:
            unrecorded = bool(self._unrecorded)
        if unrecorded:  # the inventory has this batch too: record its whole view
            self.rerecord(now)
            self._submit(True, self._publish, notices)
            return
        problems = self._track_problems(events)
        steps: list[tuple[str, Any]] = []
        changes: list[Any] = []
        # a status row written before its session's snapshot (one batch, one transaction
        # each) must not claim an inventory the store does not have yet: the snapshot's
        # own row, written with the inventory, says in sync
        snapshot_at = {ev.session: i for i, ev in enumerate(events) if isinstance(ev, Snapshot)}
        for i, ev in enumerate(events):
            if isinstance(ev, SessionStatus | Snapshot):
                if changes:
                    steps.append(("changes", changes))
                    changes = []
                early = snapshot_at.get(ev.session, -1) > i
                steps.append(("session", self._session_row(ev, notices, early=early)))
                problems.discard(ev.session)
            else:
                changes.append(ev)
        if changes:
            steps.append(("changes", changes))
        for session in problems:  # a port group's problem changed: refresh the warnings
            status = self.status.get(session, SessionStatus(session, "connected"))
            steps.append(("session", self._session_row(status, notices)))
        whole = any(isinstance(ev, Snapshot) for ev in events)
        self._submit(whole, self._write, steps, now)
        self._submit(whole, self._publish, notices)

    def _submit(self, whole: bool, fn: Callable[..., object], *args: Any) -> None:
        """Queue a write of the inventory's copy (or the live events that follow it). A
        whole inventory (a snapshot, a re-record) goes to the recorder's inventory lane,
        after the switches' plans; so does everything queued behind one, in order. Other
        changes go with the plans, in order, so that a view read on a plan's live event
        already shows the VM change that made the plan."""
        deferred = whole or self.recorder.inventory_pending()
        self.recorder.submit(fn, *args, lane="inventory" if deferred else "targets")

    def _publish(self, notices: list[Notice]) -> None:
        for kind, data in notices:
            self.bus.publish(kind, data)

    def _session_row(
        self, ev: SessionStatus | Snapshot, notices: list[Notice] | None = None,
        *, early: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        row: dict[str, Any] = {"session": ev.session}
        if isinstance(ev, Snapshot):
            row["inventory"] = (ev.hosts, ev.portgroups, ev.vms)
            last = self.status.get(ev.session, SessionStatus(ev.session, "connected"))
            ev = dataclasses.replace(last, state="connected")  # keep version and warnings
        else:
            self.status[ev.session] = ev
        if ev.state != "connected" or ev.error:
            log.log(
                logging.WARNING if ev.error else logging.INFO,
                "session %s: %s%s", ev.session, ev.state, f": {ev.error}" if ev.error else "",
            )  # fmt: skip
        warnings = (*ev.warnings, *self._warnings(ev.session))
        in_sync = self.inventory.in_sync(ev.session) and not early
        row.update(state=ev.state, in_sync=in_sync, error=ev.error, version=ev.version,
                   warnings=warnings)  # fmt: skip
        if notices is not None:
            notices.append(("session", {"name": ev.session, "state": ev.state,
                                        "in_sync": row["in_sync"], "error": ev.error}))  # fmt: skip
        return row

    def _write(self, steps: list[tuple[str, Any]], now: float) -> None:
        """On the writer thread: the batch's inventory changes and session rows."""
        try:
            for kind, item in steps:
                if kind == "changes":
                    self.store.apply_changes(item, now)
                    continue
                if "inventory" in item:
                    hosts, portgroups, vms = item["inventory"]
                    self.store.replace_inventory(item["session"], hosts, portgroups, vms, now)
                self.store.set_session_status(
                    item["session"], item["state"], in_sync=item["in_sync"], error=item["error"],
                    version=item["version"], warnings=item["warnings"], now=now,
                )  # fmt: skip
        except StoreError as exc:
            with self._lock:
                self._unrecorded.update(self.inventory.sessions())
            log.error("store: %s", exc)

    def rerecord(self, now: float) -> None:
        """Queue the whole inventory of the sessions the store missed (it failed)."""
        with self._lock:
            names, self._unrecorded = sorted(self._unrecorded), set()
        if not names:
            return
        steps: list[tuple[str, Any]] = []
        inv = self.inventory
        for name in names:
            hosts = tuple(h for k, h in inv.hosts.items() if k[0] == name)
            pgs = tuple(p for k, p in inv.portgroups.items() if k[0] == name)
            vms = tuple(v for k, v in inv.vms.items() if k[0] == name)
            last = self.status.get(name, SessionStatus(name, "connecting"))
            row = {"session": name, "inventory": (hosts, pgs, vms), "state": last.state,
                   "in_sync": inv.in_sync(name), "error": last.error, "version": last.version,
                   "warnings": (*last.warnings, *self._warnings(name))}  # fmt: skip
            steps.append(("session", row))
        self._submit(True, self._write, steps, now)

    def mark_unrecorded(self) -> None:
        """Record every session's whole inventory at the next look (a new leader)."""
        with self._lock:
            self._unrecorded.update(self.inventory.sessions())

    def unrecorded(self) -> bool:
        with self._lock:
            return bool(self._unrecorded)

    # ---- port groups vmfabric cannot serve -------------------------------------------------

    def _track_problems(self, events: Iterable[SourceEvent]) -> set[str]:
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

    def _warnings(self, session: str) -> tuple[str, ...]:
        found = self._problems.get(session, {})
        return tuple(f"port group {n}: {p}" for n, p in sorted(found.items()))


def _vm_change(old: Vm | None, new: Vm | None) -> str:
    if old == new:
        return ""
    if new is None:
        return "removed"
    if old is None:
        return "placed"
    if old.host != new.host:
        return "moved"
    if old.power != new.power:
        return "powered"
    return ""
