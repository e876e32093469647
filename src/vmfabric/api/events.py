"""``GET /api/v1/events``: the event bus as Server-Sent Events.

One SSE event per bus event: ``id: <boot>-<n>``, ``event: <kind>`` and ``data:`` a JSON
object ``{"id", "kind", "time", "data"}`` (the bus kinds are listed in
``vmfabric.runtime.bus``). A client that reconnects with ``Last-Event-ID`` (the header, or
the ``last_event_id`` query parameter where a client cannot set headers) gets every event it
missed; when the bus no longer holds them all (or the id is of an earlier life of the
controller) it first gets one ``reset`` event, meaning "re-read the views". A comment line
every ``KEEPALIVE`` seconds keeps proxies from closing a quiet stream.

Each client has its own queue on the server's event loop, fed from the publisher's thread;
a client too slow to drain ``QUEUE_LIMIT`` events is disconnected (it resumes with
``Last-Event-ID``), so no client can hold the bus back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from vmfabric.api.render import dumps
from vmfabric.core.errors import ConfigError
from vmfabric.runtime.bus import BusEvent, EventBus

KEEPALIVE = 15.0
QUEUE_LIMIT = 10_000
_LAST_ID = re.compile(r"^([0-9a-f]{1,32})-(\d{1,18})$")


def iso(when: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{stamp}.{int(when % 1 * 1000):03d}Z"


def frame(boot: str, event: BusEvent) -> str:
    """One SSE event (JSON in one data line: the JSON has no raw line breaks)."""
    sse_id = f"{boot}-{event.id}"
    body = {"id": sse_id, "kind": event.kind, "time": iso(event.time), "data": event.data}
    return f"id: {sse_id}\nevent: {event.kind}\ndata: {dumps(body).decode()}\n\n"


def parse_last_id(value: str | None, boot: str) -> int | None:
    """The bus id to resume after; None when the client has none of this bus's ids (a
    fresh client, or one from an earlier life). ConfigError for a malformed id."""
    if value is None or value == "":
        return None
    match = _LAST_ID.match(value.strip())
    if match is None:
        raise ConfigError(f"Last-Event-ID {value[:40]!r} is not an id of this stream")
    return int(match.group(2)) if match.group(1) == boot else -1


@dataclass(eq=False)
class _Feed:
    """One client's queue; ``push`` runs on the publisher's thread."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[BusEvent | None]
    overflow: bool = False

    def push(self, event: BusEvent | None) -> None:
        self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: BusEvent | None) -> None:
        if self.queue.qsize() >= QUEUE_LIMIT:
            self.overflow = True
            event = None
        self.queue.put_nowait(event)


class EventStreams:
    """The open streams of one API server, so that stopping the server ends them."""

    def __init__(self, bus: EventBus, on_count: Callable[[int], None] | None = None) -> None:
        self.bus = bus
        self._feeds: set[_Feed] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._on_count = on_count or (lambda _n: None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            feeds = list(self._feeds)
        for feed in feeds:
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                feed.push(None)

    def _track(self, feed: _Feed, add: bool) -> None:
        with self._lock:
            (self._feeds.add if add else self._feeds.discard)(feed)
            self._on_count(len(self._feeds))

    async def stream(self, after: int | None, kinds: frozenset[str]) -> AsyncIterator[str]:
        """The SSE text of one client resuming after bus id ``after`` (``parse_last_id``)."""
        feed = _Feed(asyncio.get_running_loop(), asyncio.Queue())
        start = self.bus.last_id if after is None or after < 0 else after
        complete, unsubscribe = self.bus.subscribe_from(start, feed.push)
        self._track(feed, True)
        try:
            yield "retry: 1000\n\n"
            if after is not None and (after < 0 or not complete):
                yield f"event: reset\ndata: {dumps({'reason': 'events were missed'}).decode()}\n\n"
            async for text in self._frames(feed, kinds):
                yield text
        finally:
            unsubscribe()
            self._track(feed, False)

    async def _frames(self, feed: _Feed, kinds: frozenset[str]) -> AsyncIterator[str]:
        while not self._closed:
            try:
                event = await asyncio.wait_for(feed.queue.get(), KEEPALIVE)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if event is None:  # the server stops, or the client fell too far behind
                return
            if not kinds or event.kind in kinds:
                yield frame(self.bus.boot, event)
