"""Run the controller in a background thread for a test, and stop it on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vmfabric.config import Config
from vmfabric.lab.ovs import OvsInstance
from vmfabric.runtime import Controller
from vmfabric.sources.base import Source
from vmfabric.store import Store


@contextlib.contextmanager
def running_controller(
    config: Config,
    sources: Sequence[Source] | None = None,
    drivers: dict[str, Any] | None = None,
    port_reread: float | None = None,
) -> Iterator[Controller]:
    """A Controller running on its own event loop in a thread; joined on exit, and what
    it raised is raised here. ``drivers``/``sources`` replace the configured ones by
    name (tests inspect them); ``port_reread`` shortens the quiet-switch re-read."""
    store = Store(config.store_url())
    ctl = Controller(config, store, drivers=drivers, sources=sources)
    if port_reread is not None:
        ctl.port_reread = port_reread
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main() -> None:
        try:
            loop.run_until_complete(ctl.run(stop))
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)

    thread = threading.Thread(target=main, name="controller", daemon=True)
    thread.start()
    try:
        yield ctl
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        store.close()
    if thread.is_alive():
        raise AssertionError("the controller did not stop within 30 s")
    if failure:
        raise failure[0]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()`` is true; AssertionError naming ``what`` after ``timeout``.

    A LookupError from ``check`` (a store row not written yet: ``show_sessions(x)[0]``
    while the controller starts) counts as "not yet"; the last one is in the message."""
    start = time.monotonic()
    last: LookupError | None = None
    while True:
        try:
            if check():
                return time.monotonic() - start
        except LookupError as exc:
            last = exc
        if time.monotonic() - start > timeout:
            why = f" (last: {last!r})" if last is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{why}")
        time.sleep(0.02)


def trunks(ovs: OvsInstance | str, port: str) -> set[int]:
    """The VLANs an OVS port trunks, read with ovs-vsctl (the closed-port 4095 included).
    ``ovs`` is an OvsInstance or an OVSDB URL ("unix:/.../db.sock", e.g. a lab switch's)."""
    if isinstance(ovs, OvsInstance):
        text = ovs.vsctl("get", "Port", port, "trunks")
    else:
        argv = ["ovs-vsctl", f"--db={ovs}", "--timeout=10", "get", "Port", port, "trunks"]
        text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return {int(v) for v in re.findall(r"\d+", text)}
