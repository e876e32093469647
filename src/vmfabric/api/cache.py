"""Rendered views kept while the store has not changed, so that a fabric of 10,000 VMs
answers ``GET /api/v1/vms`` without building the view again for every client.

"Not changed" must be exact, never a guess: on SQLite it is ``PRAGMA data_version`` read
on a connection of the cache's own, which changes whenever any other connection (the
controller's writer, ``vmfabric approve``, another process) commits. On other databases
there is no such cheap and exact signal, so nothing is cached: every call renders.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable

from vmfabric.store import db

MAX_ENTRIES = 64


class ViewCache:
    def __init__(self, store_url: str, size: int = MAX_ENTRIES) -> None:
        path = db.sqlite_file(db.parse_url(store_url))
        self._lock = threading.Lock()
        self._size = size
        self._entries: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._flights: dict[str, threading.Lock] = {}
        self._conn: sqlite3.Connection | None = None
        if path is not None:
            try:
                uri = f"file:{path}?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            except sqlite3.Error:
                self._conn = None  # no cache: every call renders

    def _version(self) -> int | None:
        if self._conn is None:
            return None
        try:
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None
        return int(row[0])

    def get(self, key: str, render: Callable[[], bytes]) -> bytes:
        """The rendered view ``key``: kept if the store is unchanged since, else
        ``render()`` (once for all the callers asking for ``key`` meanwhile)."""
        found = self._lookup(key)
        if found is not None:
            return found
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            found = self._lookup(key)  # another caller may have rendered it meanwhile
            if found is not None:
                return found
            version = self._current()
            body = render()
            if version is not None:
                self._keep(key, version, body)
            return body

    def _current(self) -> int | None:
        with self._lock:
            return self._version()

    def _lookup(self, key: str) -> bytes | None:
        with self._lock:
            version = self._version()
            found = self._entries.get(key)
            if version is None or found is None or found[0] != version:
                return None
            self._entries.move_to_end(key)
            return found[1]

    def _keep(self, key: str, version: int, body: bytes) -> None:
        with self._lock:
            self._entries[key] = (version, body)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._entries.clear()
