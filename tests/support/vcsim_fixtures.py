"""Pytest fixtures that run the real vCenter simulator (vcsim) and vcenter sources against it.

- ``vcsim_factory``: starts ``Vcsim`` processes; every one is stopped by PID at teardown,
  also when the test fails.
- ``vcsim_lab``: a ready three-host simulator (hv1..hv3) with a hints file (hv1 CDP, hv2
  LLDP, hv3 silent), port groups ``web`` (VLAN 110), ``trunk`` (200-210,300) and ``pv``
  (PVLAN), and VMs ``web-01`` (hv1, web) and ``std-01`` (hv2, standard ``VM Network``).
- ``source_run``: runs a ``VcenterSource`` in its thread and collects what it emits;
  stopped and joined at teardown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vmfabric.config import VcenterSession
from vmfabric.core.model import SourceEvent
from vmfabric.lab.vcsim import Hints, Vcsim, VcsimControl, build_vcsim, write_hints
from vmfabric.sources.vcenter import VcenterSource

E = TypeVar("E")

LAB_HOSTS = ("hv1", "hv2", "hv3")
LAB_HINTS: Hints = {
    "hv1": {
        "vmnic0": {"cdp": {"devId": "leaf1", "portId": "Ethernet1", "address": "192.0.2.1"}},
        "vmnic1": {"cdp": {"devId": "leaf2", "portId": "Ethernet1", "address": "192.0.2.2"}},
    },
    "hv2": {
        "vmnic0": {
            "lldp": {
                "chassisId": "52:54:00:00:00:01",
                "portId": "Ethernet2",
                "systemName": "leaf1",
                "mgmtAddress": "192.0.2.1",
            }
        },
        "vmnic1": {
            "lldp": {
                "chassisId": "52:54:00:00:00:02",
                "portId": "Ethernet2",
                "systemName": "leaf2",
                "mgmtAddress": "192.0.2.2",
            }
        },
    },
}

VcsimFactory = Callable[..., Vcsim]


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The simulator binary, built once if missing or older than main.go."""
    return build_vcsim()


@pytest.fixture
def vcsim_factory(vcsim_binary: Path) -> Iterator[VcsimFactory]:
    """Start simulators with ``Vcsim`` keyword arguments; all are stopped at teardown."""
    started: list[Vcsim] = []

    def start(**kwargs: Any) -> Vcsim:
        sim = Vcsim(binary=vcsim_binary, **kwargs)
        started.append(sim)
        return sim.start()

    try:
        yield start
    finally:
        for sim in started:
            sim.cleanup()


@dataclass
class Lab:
    sim: Vcsim
    control: VcsimControl
    hints_file: Path

    def set_hints(self, hints: Hints) -> None:
        write_hints(self.hints_file, hints)


@pytest.fixture
def vcsim_lab(vcsim_factory: VcsimFactory, tmp_path: Path) -> Iterator[Lab]:
    hints_file = tmp_path / "hints.json"
    write_hints(hints_file, LAB_HINTS)
    sim = vcsim_factory(host_names=LAB_HOSTS, vms=0, hints_file=hints_file)
    control = VcsimControl.of(sim)
    try:
        control.add_dvportgroup("web", vlan=110)
        control.add_dvportgroup("trunk", trunk=[(200, 210), (300, 300)])
        control.add_dvportgroup("pv", pvlan=501)
        control.create_vm("web-01", "hv1", "web")
        control.create_vm("std-01", "hv2", "VM Network")
        yield Lab(sim, control, hints_file)
    finally:
        control.close()


class Events:
    """What a source emitted, with arrival times, and waiting for a given event."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: list[tuple[float, SourceEvent]] = []

    def __call__(self, event: SourceEvent) -> None:
        with self._cond:
            self.items.append((time.monotonic(), event))
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self.items)

    def of(self, kind: type[E], start: int = 0) -> list[E]:
        with self._cond:
            return [e for _, e in self.items[start:] if isinstance(e, kind)]

    def wait(
        self,
        kind: type[E],
        match: Callable[[E], bool] = lambda e: True,
        start: int = 0,
        timeout: float = 5.0,
    ) -> tuple[float, E]:
        """The first ``kind`` event from index ``start`` matching ``match``, and its time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, event in self.items[start:]:
                    if isinstance(event, kind) and match(event):
                        return at, event
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [type(e).__name__ for _, e in self.items[start:]]
                    raise AssertionError(f"no matching {kind.__name__} in {timeout}s; saw {seen}")
                self._cond.wait(left)


@dataclass
class SourceRun:
    source: VcenterSource
    events: Events
    thread: threading.Thread
    stop: threading.Event


SourceRunner = Callable[..., SourceRun]


@pytest.fixture
def source_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SourceRunner]:
    """Run a VcenterSource against a simulator: ``source_run(sim, **session_options)``."""
    runs: list[SourceRun] = []

    def run(sim: Vcsim, password: str | None = None, **options: Any) -> SourceRun:
        monkeypatch.setenv("VCSIM_TEST_PASSWORD", sim.password if password is None else password)
        config = VcenterSession(
            name="lab",
            kind="vcenter",
            url=sim.url,
            username=sim.username,
            password="env:VCSIM_TEST_PASSWORD",
            **options,
        )
        source = VcenterSource(config, tmp_path)
        events, stop = Events(), threading.Event()
        thread = threading.Thread(target=source.run, args=(events, stop), daemon=True)
        handle = SourceRun(source, events, thread, stop)
        runs.append(handle)
        thread.start()
        return handle

    try:
        yield run
    finally:
        for handle in runs:
            handle.stop.set()
        for handle in runs:
            handle.thread.join(timeout=10)
