"""The live event bus: what happened, in order, for the SSE stream, metrics and logs.

``publish(kind, data)`` is thread-safe and never blocks; every event gets an increasing id.
Subscribers (the API's Server-Sent Events, the metrics) read from it. Event kinds and their
data (a JSON object):

- ``vm``: session, vm, host, power, change (placed | moved | powered | removed)
- ``member``: kind, target, holder, member, action (add | remove), plan; for switch ports
  also switch, port, vlan (int)
- ``plan``: id, target, status (held | approved | applying | applied | failed | expired |
  check)
- ``session``: name, state, in_sync, error
- ``target``: name, kind, driver, state (ok | unreachable | error), error
- ``apply``: target, kind, changes, seconds (apply time), age (seconds since the oldest
  source event the apply serves, or null), error (optional: the one-line message of an
  apply that failed; absent or null when it succeeded)
- ``events``: count (source events received in one batch)
- ``controller``: id, host, pid, role (leader | standby), since, epoch (a controller
  became leader or standby: ``Lease.describe()``)

Replay: the bus keeps the last ``keep`` events. ``replay(last_id)`` says whether it still
holds everything after ``last_id``; ``boot`` names this bus instance (a controller's life),
so that an id from a previous life is not taken for one of this life.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

log = logging.getLogger("vmfabric.bus")
Listener = Callable[["BusEvent"], None]


class BusEvent(NamedTuple):
    """One event (a named tuple: a cold start publishes one per change, 90,000 at 100,000
    VMs)."""

    id: int
    time: float
    kind: str
    data: dict[str, Any]


class EventBus:
    """An in-process publish/subscribe log with a bounded replay buffer."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._last = 0
        self._recent: deque[BusEvent] = deque(maxlen=keep)
        self._listeners: list[Listener] = []
        self.boot = secrets.token_hex(4)

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 before the first)."""
        with self._lock:
            return self._last

    def publish(self, kind: str, data: dict[str, Any]) -> BusEvent:
        with self._lock:  # listeners run under the lock: every one sees events in id order
            event = BusEvent(next(self._ids), time.time(), kind, data)
            self._last = event.id
            self._recent.append(event)
            for listener in list(self._listeners):
                _deliver(listener, event)
        return event

    def publish_many(self, kind: str, datas: Iterable[dict[str, Any]]) -> None:
        """``publish(kind, data)`` for each of ``datas`` in order, under one lock."""
        with self._lock:
            listeners = list(self._listeners)
            append, ids, now = self._recent.append, self._ids, time.time()
            for data in datas:
                event = BusEvent(next(ids), now, kind, data)
                self._last = event.id
                append(event)
                for listener in listeners:
                    _deliver(listener, event)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every later event, in id order (from the publisher's thread,
        under the bus's lock: keep it quick and thread-safe, and never publish from it).
        Returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)
        return lambda: self._unsubscribe(listener)

    def _unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def since(self, last_id: int) -> list[BusEvent]:
        """Events after ``last_id`` still in the replay buffer (for Last-Event-ID)."""
        return self.replay(last_id)[0]

    def replay(self, last_id: int) -> tuple[list[BusEvent], bool]:
        """Events after ``last_id``, and whether they are all of them: False when some were
        already dropped from the buffer, or ``last_id`` is newer than any event (it came
        from another bus)."""
        with self._lock:
            return self._after(last_id)

    def _after(self, last_id: int) -> tuple[list[BusEvent], bool]:
        oldest = self._recent[0].id if self._recent else self._last + 1
        skip = max(0, last_id + 1 - oldest)  # ids in the buffer are consecutive
        found = list(itertools.islice(self._recent, skip, None))
        return found, 0 <= last_id <= self._last and oldest <= last_id + 1

    def subscribe_from(self, last_id: int, listener: Listener) -> tuple[bool, Callable[[], None]]:
        """Replay the events after ``last_id`` to ``listener``, then every later one, with
        none lost or doubled between the two. Returns (whether the replay was complete,
        the function that unsubscribes)."""
        with self._lock:
            found, complete = self._after(last_id)
            for event in found:
                _deliver(listener, event)
            self._listeners.append(listener)
        return complete, lambda: self._unsubscribe(listener)


def _deliver(listener: Listener, event: BusEvent) -> None:
    try:
        listener(event)
    except Exception:  # a broken subscriber must not break the publisher
        log.exception("event bus subscriber %r failed on event %d", listener, event.id)
