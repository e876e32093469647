"""The reconcile loop: one task per target, the only place that writes to targets.

Each target (a switch, a firewall, a VTEP) has one ``Reconciler``, handling one step at a
time (kopf's one queue per object); different targets run in parallel, so a slow or
unreachable one delays only itself. A step is:

    wake -> coalesce -> read -> settle -> plan -> guard -> record "applying" -> apply
         -> confirm -> record

- **wake**: the intake wakes a target whose desired state changed; the prune timer wakes
  it when a removal falls due; a quiet target is re-read every ``reread`` seconds anyway
  (manual edits, re-created ports).
- **coalesce**: changes arriving within ``coalesce`` go to the target as one transaction.
- **settle**: plans a previous step (or a previous process) left ``applying`` (a timeout,
  a crash, a frozen peer that committed later) are checked against what was just read;
  every change found on the target is audited then, so no change goes unaudited.
- **guard**: removals beyond the blast-radius limits are held for approval (saved once
  per change of the held set; older held plans of the target expire); additions go.
- **record, apply, confirm**: the plan is recorded as ``applying`` before anything is sent;
  after the apply, only the changes the target shows as done are audited, and the plan
  becomes ``applied``. A target in ``mode: check`` records its plan and applies nothing.

Every exception is handled: ``TransientError`` marks the target ``unreachable``,
``PermanentError``/``ConfigError`` mark it ``error`` with the target's message, anything
else is a bug: logged with its traceback and marked ``error``. All are retried with
exponential backoff capped at ``retry_max``. A store failure holds the step (nothing is
applied that cannot be recorded) and is retried the same way. A worker never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from vmfabric.core.backoff import Backoff
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.intents.base import Change, TargetPlan
from vmfabric.intents.guard import GuardLimits, guard_verdict
from vmfabric.runtime.approvals import Approvals, plan_keys
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.lease import LeaseLost
from vmfabric.runtime.recorder import Recorder, audit_entries, plan_doc
from vmfabric.runtime.target import Target
from vmfabric.store import AuditEntry, Store, StoreError

log = logging.getLogger("vmfabric")
Clock = Callable[[], float]
CHECK_TARGET = "switch is in check mode: nothing applied"
CHECK_SESSIONS = "sessions in check mode would add these: nothing applied"
UNITS = {
    "switchport": "(port, VLAN) memberships",
    "addrset": "(set, address) memberships",
    "vtep": "(VNI, VTEP) flood-list entries",
}


@dataclass(frozen=True)
class LoopSettings:
    coalesce: float = 0.02
    retry_max: float = 60.0
    reread: float = 30.0
    limits: GuardLimits = field(default_factory=GuardLimits)


@dataclass(frozen=True)
class LoopContext:
    """What every target's loop shares: settings, the recorder, approvals, the bus."""

    settings: LoopSettings
    recorder: Recorder
    approvals: Approvals
    bus: EventBus
    clock: Clock = time.time
    removals_waiting: Callable[[], None] = lambda: None  # the prune timer must look again
    check_leader: Callable[[], None] = lambda: None  # raises LeaseLost when not the leader


@dataclass
class StepResult:
    """What one step did: the intent's plan, what was sent after the guard, what the
    target confirmed, and why removals were held."""

    target: str
    plan: TargetPlan
    sent: tuple[Change, ...] = ()
    applied: tuple[Change, ...] = ()
    guarded: str = ""
    guard_held: tuple[Change, ...] = ()
    check: bool = False
    plan_id: int | None = None


class Reconciler:
    """See the module docstring."""

    def __init__(self, target: Target, ctx: LoopContext) -> None:
        self.target = target
        self.settings = ctx.settings
        self.recorder = ctx.recorder
        self.store = ctx.recorder.store
        self.approvals = ctx.approvals
        self.bus = ctx.bus
        self.clock = ctx.clock
        self.removals_waiting = ctx.removals_waiting
        self.check_leader = ctx.check_leader
        self.wake = asyncio.Event()
        self.connected = False
        self.state = "connecting"
        self.error = ""
        self.last_apply: float | None = None
        self.pending = 0
        self.dirty_since: float | None = None  # oldest change not yet applied (telemetry)
        self._held_plans: dict[int, frozenset[tuple[str, str]]] | None = None
        self._recorded_status: tuple[str, str, int] | None = None
        self._last_check: dict[str, dict[str, Any]] = {}
        self._recorded_states: Any = None
        self._holding = False  # a hold on the recorder's inventory lane (see recorder.py)
        # plans left "applying" can exist only after a start or a failed step
        self._maybe_unconfirmed = True

    @property
    def name(self) -> str:
        return self.target.name

    def poke(self, at: float | None = None) -> None:
        """Wake the loop: the target's desired state changed (at ``at``)."""
        if at is not None and self.dirty_since is None:
            self.dirty_since = at
        self.wake.set()
        self._hold()

    def _hold(self) -> None:
        """While a connected target has a change to make, the store's copy of the
        inventory waits: the target's plan goes first."""
        if self.connected and not self._holding:
            self.recorder.hold()
            self._holding = True

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.recorder.release()

    # ---- the loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(cap=self.settings.retry_max)
        try:
            while not stop.is_set():
                stepped = await self._guarded_step(stop)
                self._release()
                if stepped:
                    if self.wake.is_set():
                        self._hold()
                    backoff.reset()
                    continue
                self.wake.set()  # the retry reconciles again, woken or not
                delay = backoff.next()
                log.warning("%s %s: retrying in %.0fs", self._what(), self.name, delay)
                await _sleep_until(stop, delay)
        finally:
            self._release()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.target.close)

    async def _guarded_step(self, stop: asyncio.Event) -> bool:
        """One step; False (after logging and recording why) when it must be retried."""
        try:
            await self._step(stop)
        except LeaseLost as exc:
            log.warning("%s %s: nothing applied: %s", self._what(), self.name, exc)
        except StoreError as exc:
            log.error("store: %s (%s %s: plan held until it can be recorded)", exc,
                      self._what(), self.name)  # fmt: skip
        except TransientError as exc:
            self.connected = False
            self._status("unreachable", str(exc))
        except (PermanentError, ConfigError) as exc:
            self.connected = False
            self._status("error", str(exc))
        except Exception as exc:
            log.exception("%s %s: unexpected error", self._what(), self.name)
            self.connected = False
            self._status("error", f"unexpected {type(exc).__name__}: {exc}")
        else:
            return True
        self._maybe_unconfirmed = True
        return False

    async def _step(self, stop: asyncio.Event) -> None:
        if not self.connected:
            await asyncio.to_thread(self.target.connect)
            self.connected = True
            self.wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=self.settings.reread)
        if stop.is_set():
            return
        self.wake.clear()
        await asyncio.sleep(self.settings.coalesce)
        await self.reconcile()

    # ---- one step ------------------------------------------------------------------------

    async def reconcile(self, *, dry_run: bool = False, read: bool = True) -> StepResult:
        """Read, plan, guard, apply and record once (``vmfabric sync`` calls this too,
        after reading every switch itself: ``read=False``)."""
        if read:
            await asyncio.to_thread(self.target.read)
        if dry_run:
            return StepResult(self.name, self.target.plan(self.clock()))
        await self._after_read()
        now = self.clock()
        plan = self.target.plan(now)
        if plan.held:
            self.removals_waiting()
        await self._record_check(plan.check, CHECK_SESSIONS, now)
        kept, verdict, withheld = await self._guard(plan, now)
        result = StepResult(self.name, plan, guarded=verdict, guard_held=withheld)
        if self.target.mode == "check":
            await self._record_check(kept, CHECK_TARGET, now)
            result.check = True
            self._status("ok")
            return result
        self.pending = len(kept)
        if kept:
            result.sent = tuple(kept)
            result.plan_id, result.applied = await self._apply(plan, kept, now)
        else:
            await self._settle_approvals(plan, set())
        self.dirty_since = None
        self._status("ok")
        return result

    async def _after_read(self) -> None:
        await self._record_states()
        if not self._maybe_unconfirmed:
            return
        for plan_id, entries in await self.recorder.call(self.store.unconfirmed, self.name):
            found = self.target.confirmed([_change(e) for e in entries])
            keys = {c.key for c in found}
            done = [e for e in entries if _change(e).key in keys]
            await self.recorder.call(self.store.finish_apply, plan_id, done, self.clock())
            log.warning(
                "%s %s: plan %d was left applying; %d of %d changes found done and audited",
                self._what(), self.name, plan_id, len(done), len(entries),
            )  # fmt: skip
        self._maybe_unconfirmed = False

    async def _record_states(self) -> None:
        states = getattr(self.target, "states", None)
        if states is None:
            return
        snapshot = dict(states)
        if snapshot != self._recorded_states:
            await self.recorder.call(
                self.store.set_port_states, list(snapshot.values()), self.clock()
            )
            self._recorded_states = snapshot

    async def _apply(
        self, plan: TargetPlan, kept: Sequence[Change], now: float
    ) -> tuple[int, tuple[Change, ...]]:
        self.check_leader()
        sessions = sorted({s for c in kept for s in c.sessions})
        plan_id = await self.recorder.call(
            _begin_apply, self.store, self.name, kept, kind=self.target.kind, now=now,
            sessions=sessions,
        )  # fmt: skip
        started = time.monotonic()
        await asyncio.to_thread(self.target.apply, kept)
        seconds = time.monotonic() - started
        confirmed = self.target.confirmed(kept)
        await self._record_states()
        # approved plans are settled before their removals reach the audit log: whoever
        # sees the audit entries sees the plan applied
        await self._settle_approvals(plan, {(c.holder, c.member) for c in confirmed})
        done = self.clock()
        await self.recorder.call(
            _finish_apply, self.store, self.name, plan_id, kind=self.target.kind,
            confirmed=confirmed, done=done, origins=self.target.origins(),
        )  # fmt: skip
        self.target.applied(confirmed)
        self.last_apply = done
        self.pending = len(kept) - len(confirmed)
        self._publish_applied(plan_id, confirmed, seconds)
        return plan_id, tuple(confirmed)

    def _publish_applied(self, plan_id: int, confirmed: Sequence[Change], seconds: float) -> None:
        what, name, kind = self._what(), self.name, self.target.kind
        if log.isEnabledFor(logging.INFO):
            for c in confirmed:
                log.info("%s %s: %s %s %s (%s)", what, name, c.holder,
                         "+" if c.action == "add" else "-", c.member, c.reason)  # fmt: skip
        port = kind == "switchport"  # switch ports also by their wave-1 names
        self.bus.publish_many("member", [
            {"kind": kind, "target": name, "holder": c.holder, "member": c.member,
             "action": c.action, "plan": plan_id,
             **({"switch": name, "port": c.holder,
                 "vlan": int(c.member) if c.member.isdigit() else None} if port else {})}
            for c in confirmed
        ])  # fmt: skip
        age = None if self.dirty_since is None else self.clock() - self.dirty_since
        self.bus.publish("apply", {
            "target": self.name, "kind": self.target.kind, "changes": len(confirmed),
            "seconds": seconds, "age": age,
        })  # fmt: skip
        self.bus.publish("plan", {"id": plan_id, "target": self.name, "status": "applied"})

    # ---- guard and approvals -------------------------------------------------------------

    def forget_held(self, plan_id: int) -> None:
        """The plan was approved: approvals settle it now, not the held-plan expiry."""
        if self._held_plans is not None:
            self._held_plans.pop(plan_id, None)

    async def _guard(
        self, plan: TargetPlan, now: float
    ) -> tuple[list[Change], str, tuple[Change, ...]]:
        """The plan's changes the guard lets through, its verdict, and what it holds.

        A held plan is saved once per distinct set of held removals; a held plan whose
        removals are no longer all wanted (due or waiting) expires."""
        approved = self.approvals.keys(self.name)
        changes = list(plan.changes)
        held = [c for c in changes if c.action == "remove" and (c.holder, c.member) not in approved]
        unit = UNITS.get(self.target.kind, "members")
        verdict = guard_verdict(len(held), self.target.dynamic_count(), self.name,
                                self.settings.limits, unit)  # fmt: skip
        await self._expire_held(plan, now)
        if not verdict:
            return changes, "", ()
        keys = frozenset((c.holder, c.member) for c in held)
        assert self._held_plans is not None
        if keys not in self._held_plans.values():
            log.warning("%s %s: plan held: %s", self._what(), self.name, verdict)
            sessions = sorted({s for c in held for s in c.sessions})
            plan_id = await self.recorder.call(
                self.store.save_plan, self.name, "held", plan_doc(self.name, held), verdict,
                now, sessions=sessions,
            )  # fmt: skip
            self._held_plans[plan_id] = keys
            self.bus.publish("plan", {"id": plan_id, "target": self.name, "status": "held"})
        kept = [c for c in changes if c.action == "add" or (c.holder, c.member) in approved]
        return self.target.admit(kept), verdict, tuple(held)

    async def _expire_held(self, plan: TargetPlan, now: float) -> None:
        if self._held_plans is None:  # held plans of an earlier run or process
            found = await self.recorder.call(self.store.plans, "held")
            self._held_plans = {p["id"]: frozenset(plan_keys(p)) for p in found
                                if p["switch"] == self.name}  # fmt: skip
        wanted = {(c.holder, c.member) for c in (*plan.changes, *plan.held) if c.action == "remove"}
        stale = [i for i, keys in self._held_plans.items() if not keys <= wanted]
        if not stale:
            return
        for plan_id in stale:
            del self._held_plans[plan_id]
        await self.recorder.call(self.store.expire_plans, self.name, list(self._held_plans), now)
        for plan_id in stale:
            log.info("%s %s: held plan %d no longer applies: expired", self._what(),
                     self.name, plan_id)  # fmt: skip
            self.bus.publish("plan", {"id": plan_id, "target": self.name, "status": "expired"})

    async def _settle_approvals(self, plan: TargetPlan, done: set[tuple[str, str]]) -> None:
        wanted = {(c.holder, c.member) for c in (*plan.changes, *plan.held) if c.action == "remove"}
        applied, expired = self.approvals.settle(self.name, done, wanted)
        now = self.clock()
        for plan_id, status in [(i, "applied") for i in applied] + [
            (i, "expired") for i in expired
        ]:
            await self.recorder.call(self.store.set_plan_status, plan_id, status, now)
            self.bus.publish("plan", {"id": plan_id, "target": self.name, "status": status})

    async def _record_check(self, changes: Sequence[Change], reason: str, now: float) -> None:
        """Record what check mode keeps from being applied, once per change of it."""
        doc = plan_doc(self.name, changes)
        if reason not in self._last_check:  # the last one recorded, by any run or sync
            found = await self.recorder.call(self.store.plans, "check")
            mine = [p["plan"] for p in found if p["switch"] == self.name and p["reason"] == reason]
            self._last_check[reason] = mine[-1] if mine else {"ports": []}
        if doc == self._last_check[reason]:
            return
        self._last_check[reason] = doc
        if changes:
            log.info("%s %s: check mode: %s", self._what(), self.name, reason)
            sessions = sorted({s for c in changes for s in c.sessions})
            await self.recorder.call(
                self.store.save_plan, self.name, "check", doc, reason, now, sessions=sessions
            )

    # ---- status --------------------------------------------------------------------------

    def _status(self, state: str, error: str = "") -> None:
        recorded = (state, error, self.pending)
        if recorded == self._recorded_status:
            return
        changed = (state, error) != (self.state, self.error)
        if changed and state == "ok" and self.state in ("unreachable", "error"):
            log.info("%s %s: ok again", self._what(), self.name)
        elif changed and state != "ok":
            log.warning("%s %s: %s: %s", self._what(), self.name, state, error)
        self.state, self.error, self._recorded_status = state, error, recorded
        self.recorder.submit(
            self.store.set_switch_status, self.name, state, error, now=self.clock(),
            driver=self.target.driver_name, pending=self.pending,
        )  # fmt: skip
        if changed:
            self.bus.publish("target", {"name": self.name, "kind": self.target.kind,
                                        "driver": self.target.driver_name, "state": state,
                                        "error": error})  # fmt: skip

    def _what(self) -> str:
        kinds = {"switchport": "switch", "addrset": "firewall", "vtep": "vtep"}
        return kinds.get(self.target.kind, "target")


def _change(entry: AuditEntry) -> Change:
    action: Literal["add", "remove"] = "remove" if entry.action == "remove" else "add"
    return Change(entry.holder, entry.member, action, entry.reason)


async def _sleep_until(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# The audit entries and the JSON document of a plan are made on the writer thread, right
# before they are written: a cold start's plans (100,000 changes) do not all wait in
# memory, made at once, for their turn on the store.


def _begin_apply(
    store: Store, target: str, kept: Sequence[Change], *, kind: str, now: float,
    sessions: Sequence[str],
) -> int:  # fmt: skip
    entries = audit_entries(kind, target, kept, now)
    return store.begin_apply(target, None, entries, now, sessions)  # the doc: of the entries


def _finish_apply(
    store: Store, target: str, plan_id: int, *, kind: str, confirmed: Sequence[Change],
    done: float, origins: Mapping[str, Collection[str]] | None,
) -> None:  # fmt: skip
    entries = audit_entries(kind, target, confirmed, done)
    store.finish_apply(plan_id, entries, done, origins=origins)
