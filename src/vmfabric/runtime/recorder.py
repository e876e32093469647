"""The recorder: the store's one writer thread.

Every store write of the runtime goes through ``Recorder.call`` (awaited) or
``Recorder.submit`` (fire and forget, failures logged): a slow or locked store (SQLite's
busy timeout is 5 s) then delays only the work that waits for that write, never the event
loop, the intake of source events or another target's reconcile loop.

Writes run in two lanes, each in the order given. The ``targets`` lane (plans, the audit
log, port states, statuses, incremental inventory changes: what a reconcile step waits
for or follows) goes first; the ``inventory`` lane (whole inventories: a session's
snapshot for ``show`` and the API, what the intake queues behind one, and their live
events) runs when the targets lane is empty and no target is between a wake-up and its
recorded apply (``hold``/``release``), or once its oldest write has waited ``max_defer``
seconds. A 100,000-VM snapshot takes the store a second or more to copy: the switches'
plans no longer wait for it, and ``show`` catches up right after.

It also turns the reconcile loop's typed ``Change``s into the store's audit entries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Literal, TypeVar

from vmfabric.core.gcpause import HeapFreeze
from vmfabric.intents.base import Change
from vmfabric.store import AuditEntry, Store
from vmfabric.store.records import plan_document

log = logging.getLogger("vmfabric")
T = TypeVar("T")
Lane = Literal["targets", "inventory"]
_Job = tuple[Callable[[], Any], "Future[Any]", float]


class Recorder:
    def __init__(self, store: Store, *, max_defer: float = 5.0) -> None:
        self.store = store
        self.max_defer = max_defer
        self._lanes: dict[Lane, deque[_Job]] = {"targets": deque(), "inventory": deque()}
        self._ready = threading.Condition()
        self._closed = False
        self._holds = 0
        self._heap = HeapFreeze()
        self._running: Lane | None = None  # the lane of the job the thread runs
        self._thread: threading.Thread | None = None

    def hold(self) -> None:
        """A target has work to record soon: keep the inventory lane waiting (at most
        ``max_defer`` seconds per write)."""
        with self._ready:
            self._holds += 1

    def freeze_heap(self) -> None:
        """Keep what is alive now (a whole inventory just handled) out of the cyclic
        collector's reach until the targets are at rest: nothing queued in the targets
        lane and no hold (``core.gcpause.HeapFreeze``)."""
        with self._ready:
            self._heap.freeze()
            self._ready.notify()

    def release(self) -> None:
        """The work of a ``hold`` is recorded (or failed)."""
        with self._ready:
            self._holds = max(0, self._holds - 1)
            self._ready.notify()

    async def call(
        self, fn: Callable[..., T], /, *args: Any, lane: Lane = "targets", **kwargs: Any
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the writer thread in ``lane`` and wait for it."""
        future: Future[T] = self._queue(lane, functools.partial(fn, *args, **kwargs))
        return await asyncio.wrap_future(future)

    def submit(
        self, fn: Callable[..., object], /, *args: Any, lane: Lane = "targets", **kwargs: Any
    ) -> Future[object]:
        """Queue ``fn`` on the writer thread in ``lane``; a failure is logged, not raised."""
        future: Future[object] = self._queue(lane, functools.partial(fn, *args, **kwargs))
        future.add_done_callback(_log_failure)
        return future

    def idle(self) -> bool:
        """Nothing queued in either lane and nothing running: the store has caught up."""
        with self._ready:
            return not any(self._lanes.values()) and self._running is None

    def inventory_pending(self) -> bool:
        """Whether a write of the inventory lane is queued or running: what must follow
        it in order goes to that lane too."""
        with self._ready:
            return bool(self._lanes["inventory"]) or self._running == "inventory"

    def close(self) -> None:
        """Finish the queued writes (both lanes) and stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        self._heap.thaw_all()

    def _queue(self, lane: Lane, job: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the store's writer is closed")
            self._lanes[lane].append((job, future, time.monotonic()))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
                self._thread.start()
            self._ready.notify()
        return future

    def _next(self) -> _Job | None:
        targets, inventory = self._lanes["targets"], self._lanes["inventory"]
        with self._ready:
            while True:
                self._running = None
                if not targets and not self._holds:
                    self._heap.thaw()  # the targets are at rest
                if targets:
                    self._running = "targets"
                    return targets.popleft()
                if inventory:
                    waited = time.monotonic() - inventory[0][2]
                    if not self._holds or self._closed or waited >= self.max_defer:
                        self._running = "inventory"
                        return inventory.popleft()
                    self._ready.wait(self.max_defer - waited)
                    continue
                if self._closed:
                    return None
                self._ready.wait()

    def _run(self) -> None:
        while (job := self._next()) is not None:
            fn, future, _ = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, as an executor does
                future.set_exception(exc)
            else:
                future.set_result(result)


def _log_failure(future: Future[object]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("store: %s", exc)


def audit_entries(
    kind: str, target: str, changes: Sequence[Change], now: float
) -> list[AuditEntry]:
    """Audit entries for a target's changes, whatever its kind (member as text: a VLAN, an
    address, a VTEP; "all" for the closing of an open switch port)."""
    return [
        AuditEntry(now, kind, target, c.holder, c.member, c.action, c.reason, ",".join(c.sessions))
        for c in changes
    ]


def plan_doc(target: str, changes: Sequence[Change]) -> dict[str, Any]:
    """A plan as JSON (``records.plan_document``) from its changes."""
    return plan_document(target, ((c.holder, c.member, c.action, c.reason, c.sessions)
                                  for c in changes))  # fmt: skip
