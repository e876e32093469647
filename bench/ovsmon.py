"""An OVSDB monitor of the Port table's ``trunks``: ``ovsdb-client monitor --timestamp``.

ovsdb-client stamps every update it receives with the wall-clock time (UTC, millisecond
resolution), so the moment a VLAN reached a port is the server's notification time as seen
by an independent client, not the time this process got round to reading the line. A
reader thread parses the CSV stream into ``PortUpdate`` records and the current trunks of
every port; ``wait`` sleeps on a condition the reader signals (no polling).
"""

from __future__ import annotations

import calendar
import csv
import re
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\.(\d{3})$")
CLOSED = 4095


@dataclass(frozen=True, slots=True)
class PortUpdate:
    """One port's row in one OVSDB update (one transaction): trunks before and after."""

    at: float  # epoch seconds, from ovsdb-client's timestamp
    block: int  # the update (transaction) it belongs to, counted from 1
    port: str
    old: frozenset[int]
    new: frozenset[int]


def parse_stamp(line: str) -> float | None:
    match = _STAMP.match(line.strip())
    if match is None:
        return None
    day, clock, millis = match.groups()
    tm = time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
    return calendar.timegm(tm) + int(millis) / 1000.0


def parse_set(text: str) -> frozenset[int]:
    return frozenset(int(v) for v in re.findall(r"\d+", text))


class OvsMonitor:
    """Watches Port.trunks on ``db_url``. ``start``/``stop`` (stop kills its process)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.trunks: dict[str, frozenset[int]] = {}
        self.updates: list[PortUpdate] = []
        self.blocks = 0
        self._names: dict[str, str] = {}
        self._pending_old: dict[str, frozenset[int]] = {}
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._stamp = 0.0
        self._initial_done = False
        self._last_uuid = ""

    def start(self, timeout: float = 10.0) -> OvsMonitor:
        argv = ["ovsdb-client", "monitor", self.db_url, "Open_vSwitch", "Port", "name",
                "trunks", "--format=csv", "--no-headings", "--timestamp"]  # fmt: skip
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._read, name="ovsdb-monitor", daemon=True)
        self._thread.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._initial_done, timeout):
                self.stop()
                raise RuntimeError(f"ovsdb-client monitor {self.db_url}: no initial rows")
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._thread is not None:
            self._thread.join(5)

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            stamp = parse_stamp(line)
            if stamp is not None:
                with self._cond:
                    self._stamp = stamp
                    self.blocks += 1
                continue
            if line.strip():
                self._row(next(csv.reader([line])))

    def _row(self, row: list[str]) -> None:
        if len(row) < 4:
            return
        uuid, action, name, trunks = row[:4]
        with self._cond:
            if action == "old":
                self._pending_old[uuid] = parse_set(trunks)
                self._last_uuid = uuid
                return
            if action == "new" and not uuid:
                uuid = self._last_uuid
            if name:
                self._names[uuid] = name
            port = self._names.get(uuid, uuid)
            new = parse_set(trunks)
            old = self._pending_old.pop(uuid, self.trunks.get(port, frozenset()))
            self.trunks[port] = new
            if action == "initial":
                self._initial_done = True
            else:
                self.updates.append(PortUpdate(self._stamp, self.blocks, port, old, new))
            self._cond.notify_all()

    # ---- queries --------------------------------------------------------------------

    def mark(self) -> int:
        """An index into ``updates``: later waits look only at updates after it."""
        with self._cond:
            return len(self.updates)

    def wait_vlan(self, port: str, vlan: int, since: int, timeout: float) -> PortUpdate | None:
        """The first update after ``since`` that put ``vlan`` on ``port`` (None on timeout)."""

        def found() -> PortUpdate | None:
            for up in self.updates[since:]:
                if up.port == port and vlan in up.new and vlan not in up.old:
                    return up
            return None

        with self._cond:
            hit: list[PortUpdate | None] = [None]

            def check() -> bool:
                hit[0] = found()
                return hit[0] is not None

            self._cond.wait_for(check, timeout)
            return hit[0]

    def wait(
        self, predicate: Callable[[Mapping[str, frozenset[int]]], bool], timeout: float
    ) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.trunks), timeout)

    def since(self, index: int) -> list[PortUpdate]:
        with self._cond:
            return list(self.updates[index:])

    def vlans(self, port: str) -> frozenset[int]:
        with self._cond:
            return self.trunks.get(port, frozenset()) - {CLOSED}
