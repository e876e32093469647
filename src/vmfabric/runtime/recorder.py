"""The recorder: the store's one writer thread.

Every store write of the runtime goes through ``Recorder.call`` (awaited) or
``Recorder.submit`` (fire and forget, failures logged): a slow or locked store (SQLite's
busy timeout is 5 s) then delays only the work that waits for that write, never the event
loop, the intake of source events or another target's reconcile loop.

It also turns the reconcile loop's typed ``Change``s into the store's audit entries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from vmfabric.intents.base import Change
from vmfabric.store import AuditEntry, Store

log = logging.getLogger("vmfabric")
T = TypeVar("T")


class Recorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="store-writer")

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the writer thread and wait for it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., object], /, *args: Any, **kwargs: Any) -> Future[object]:
        """Queue ``fn`` on the writer thread; a failure is logged, not raised."""
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(_log_failure)
        return future

    def close(self) -> None:
        """Finish the queued writes and stop the thread."""
        self._pool.shutdown(wait=True)


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
    """A plan as JSON for the store, ``show plan``, ``approve`` and ``sync --json``:
    ``changes`` lists every change with its member as text (any target kind); ``ports``
    groups VLAN changes per switch port:
    {"ports": [{"switch", "port", "add", "remove", "reasons": [{vlan, action, note}]}]}."""
    ports: dict[str, dict[str, Any]] = {}
    for c in changes:
        if not (c.member.isdigit() or c.member == "all"):
            continue
        entry = ports.setdefault(
            c.holder, {"switch": target, "port": c.holder, "add": [], "remove": [], "reasons": []}
        )
        vlan = int(c.member) if c.member.isdigit() else 0
        entry[c.action].append(vlan)
        entry["reasons"].append(
            {"vlan": vlan, "action": c.action, "note": c.reason, "sessions": list(c.sessions)}
        )
    for entry in ports.values():
        entry["add"].sort()
        entry["remove"].sort()
    listed = [
        {"holder": c.holder, "member": c.member, "action": c.action, "reason": c.reason}
        for c in changes
    ]
    return {"ports": [ports[k] for k in sorted(ports)], "changes": listed}
