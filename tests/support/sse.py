"""A Server-Sent Events client for tests and benchmarks: reads a stream in a thread of its
own and hands out parsed events with a deadline, so a test waits for a condition, never
for luck."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class SseEvent:
    event: str
    data: str
    id: str | None = None
    received: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.data)


class StreamClosedError(Exception):
    """The server ended the stream."""


class SseReader:
    """``GET url`` as an event stream; ``next()`` returns the next event (comments and the
    ``retry`` field are skipped). ``close()`` shuts the socket down, which ends the reading
    thread at once."""

    def __init__(
        self,
        url: str,
        token: str,
        last_event_id: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        if parts.scheme == "https":
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=60, context=tls
            )
        else:
            self._conn = http.client.HTTPConnection(host, port, timeout=60)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            self._headers["Last-Event-ID"] = last_event_id
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._events: queue.Queue[SseEvent | Exception] = queue.Queue()
        self._opened = threading.Event()
        self.status = 0
        self.body = ""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._opened.wait(30):
            raise TimeoutError(f"no answer from {url}")

    def _read(self) -> None:
        try:
            self._conn.request("GET", self._path, headers=self._headers)
            response = self._conn.getresponse()
            self.status = response.status
            if response.status != 200:
                self.body = response.read().decode()
                self._opened.set()
                return
            self._parse(response)
            self._events.put(StreamClosedError("the server ended the stream"))
        except Exception as err:  # closed by us, or the server went away
            self._events.put(err)
        finally:
            self._opened.set()

    def _parse(self, response: http.client.HTTPResponse) -> None:
        fields: dict[str, str] = {}
        for raw in response:
            self._opened.set()  # the server subscribes before it sends the first line
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if "data" in fields or "event" in fields:
                    kind, data = fields.get("event", "message"), fields.get("data", "")
                    self._events.put(SseEvent(kind, data, fields.get("id")))
                fields = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data" and "data" in fields:
                value = fields["data"] + "\n" + value
            if name != "retry":
                fields[name] = value

    def next(self, timeout: float = 10.0) -> SseEvent:
        """The next event; TimeoutError if none comes within ``timeout``;
        StreamClosedError (or the transport's error) when the stream ended."""
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {timeout}s") from None
        if isinstance(item, Exception):
            raise item
        return item

    def next_of(self, kind: str, timeout: float = 10.0) -> SseEvent:
        """The next event of ``kind``, skipping others, within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.0, deadline - time.monotonic()))
            if event.event == kind:
                return event

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        self._thread.join(5)

    def __enter__(self) -> SseReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
