"""The live event bus: what happened, in order, for the SSE stream, metrics and logs.

``publish(kind, data)`` is thread-safe and never blocks; every event gets a increasing id.
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
  source event the apply serves, or null)
- ``events``: count (source events received in one batch)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Listener = Callable[["BusEvent"], None]


@dataclass(frozen=True, slots=True)
class BusEvent:
    id: int
    time: float
    kind: str
    data: dict[str, Any]


class EventBus:
    """An in-process publish/subscribe log with a bounded replay buffer."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._recent: deque[BusEvent] = deque(maxlen=keep)
        self._listeners: list[Listener] = []

    def publish(self, kind: str, data: dict[str, Any]) -> BusEvent:
        with self._lock:
            event = BusEvent(next(self._ids), time.time(), kind, data)
            self._recent.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)
        return event

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every later event (from the publisher's thread: keep it
        quick and thread-safe). Returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def since(self, last_id: int) -> list[BusEvent]:
        """Events after ``last_id`` still in the replay buffer (for Last-Event-ID)."""
        with self._lock:
            return [e for e in self._recent if e.id > last_id]
