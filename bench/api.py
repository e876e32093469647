"""``python -m bench.api [--quick]``: the figures of issue 13, each printed with its floor.

- **sse**: a switch commit to the Server-Sent Event a client receives (target <= 100 ms).
  The real controller on a static inventory with ``fake`` switches whose ``apply`` notes
  the commit time; each of N VMs (one VLAN each) moves to a host on another port, and the
  client waits for the ``member`` event of that VLAN on that port. The inventory-edit to
  event time is printed too (it includes the static source's 250 ms file poll).
- **vms**: ``GET /api/v1/vms`` at 10,000 VMs on 250 hosts (target <= 200 ms): the store
  unchanged since the last request (the rendered view is kept), and right after a write
  (the view is built again: the cost of the store's view code).
- **throughput**: requests per second at 10,000 VMs, C clients at once, for the whole VM
  list, one VM by name and the session list (no target: measured and reported).
- **takeover**: ``kill -9`` of the leader among three controllers on a real PostgreSQL
  (started here) to the new leader's first fenced write (target <= 5 s); also SIGSTOP of
  the leader (a frozen one is deposed after its ttl, 3 s by default).

Run as root on the project's machine (PostgreSQL is started as the postgres user).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from vmfabric.api.server import start
from vmfabric.config import Config, SwitchConfig, parse_config
from vmfabric.core.model import (
    Host,
    Neighbor,
    Nic,
    PortChange,
    PortGroup,
    PortState,
    Power,
    Uplink,
    Vm,
)
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.lease import controllers
from vmfabric.runtime.switchports import SwitchPortTarget
from vmfabric.store import Store
from vmfabric.targets.switchport.base import Driver
from vmfabric.targets.switchport.fake import FakeDriver

ROOT = Path(__file__).resolve().parents[1]
# the tests' helpers (live fabric, SSE reader, PostgreSQL server), imported where used
sys.path.insert(0, str(ROOT / "tests"))
TOKEN_ENV = "VMFABRIC_BENCH_API_TOKEN"  # noqa: S105 (a variable name)
CONTENDER = ROOT / "tests" / "support" / "ha_contender.py"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def spread(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"n": len(ordered), "p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1]}


def line(name: str, values: Sequence[float], floor: str, unit: Callable[[float], str] = ms) -> None:
    s = spread(values)
    print(f"{name:<46} p50 {unit(s['p50']):>10}  p95 {unit(s['p95']):>10}  "
          f"max {unit(s['max']):>10}  (n={s['n']}; target {floor})")  # fmt: skip


# ---- SSE: switch commit -> event ----------------------------------------------------------


class TimedFake(FakeDriver):
    """The fake switch, noting when each apply committed, per (port, VLAN) added."""

    def __init__(self, config: SwitchConfig) -> None:
        super().__init__(config)
        self.committed: dict[tuple[str, int], float] = {}

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        result = super().apply(changes)
        now = time.time()
        for change in changes:
            for vlan in change.add:
                self.committed[(change.port, vlan)] = now
        return result


def timed_drivers(config: Config) -> dict[str, Driver]:
    return {sw.name: TimedFake(sw) for sw in config.switches}


def bench_sse(moves: int) -> None:
    from support.live_fabric import live_fabric

    vms = [(f"vm{i:03}", "esx1", f"pg{i}") for i in range(moves)]
    pgs = {f"pg{i}": 200 + i for i in range(moves)}
    os.environ[TOKEN_ENV] = secrets.token_urlsafe(24)
    commit_to_event: list[float] = []
    edit_to_event: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, live_fabric(
        Path(tmp), TOKEN_ENV, vms=vms, pgs=pgs, engine={"prune_delay": "1h"},
        drivers=timed_drivers,
    ) as fabric:  # fmt: skip
        target = fabric.controller.targets["leaf1"]
        assert isinstance(target, SwitchPortTarget)
        driver = target.driver
        assert isinstance(driver, TimedFake), "the controller must use the timed driver"
        url = f"{fabric.api.url}/api/v1/events?kinds=member"
        from support.sse import SseReader

        with SseReader(url, fabric.token) as reader:
            for i in range(moves):
                edited = time.time()
                fabric.move(f"vm{i:03}", "esx2")
                received = wait_member(reader, "p2", 200 + i)
                commit_to_event.append(received - driver.committed[("p2", 200 + i)])
                edit_to_event.append(received - edited)
    line("SSE event after the switch commit", commit_to_event, "<= 100 ms")
    line("SSE event after the inventory file edit", edit_to_event, "none (250 ms file poll)")


def wait_member(reader: Any, port: str, vlan: int) -> float:
    while True:
        event = reader.next_of("member", timeout=60)
        data = event.json()["data"]
        if (data["port"], data["vlan"], data["action"]) == (port, vlan, "add"):
            return float(event.received)


# ---- GET /api/v1/vms and throughput at 10,000 VMs -------------------------------------------


def big_inventory(n_hosts: int, n_vms: int) -> tuple[list[Host], list[PortGroup], list[Vm]]:
    hosts = [
        Host("big", f"esx{h:03}",
             nics=tuple(Nic(f"vmnic{n}", Neighbor("lldp", f"leaf{h % 8 + 8 * n}", f"p{h}"))
                        for n in (0, 1)),
             uplinks=tuple(Uplink(f"vmnic{n}", f"leaf{h % 8 + 8 * n}", f"p{h}", "lldp")
                           for n in (0, 1)))
        for h in range(n_hosts)
    ]  # fmt: skip
    pgs = [PortGroup("big", f"pg{i}", frozenset({100 + i})) for i in range(200)]
    vms = [Vm("big", f"vm-{i}", f"vm{i:05}", f"esx{i % n_hosts:03}", Power.ON,
              (f"pg{i % 200}", f"pg{(i * 7) % 200}")) for i in range(n_vms)]  # fmt: skip
    return hosts, pgs, vms


@contextlib.contextmanager
def big_api(folder: Path, n_vms: int) -> Iterator[tuple[str, dict[str, str], Store]]:
    os.environ[TOKEN_ENV] = token = secrets.token_urlsafe(24)
    data = {"store": f"sqlite:///{folder / 'big.db'}",
            "api": {"listen": "127.0.0.1:0", "token": f"env:{TOKEN_ENV}"}}  # fmt: skip
    config = parse_config(data, "bench", folder)
    store = Store(config.store_url())
    store.set_session("big", "vcenter", "https://vc/sdk", True, frozenset(range(1, 4095)),
                      "enforce")  # fmt: skip
    hosts, pgs, vms = big_inventory(max(1, n_vms // 40), n_vms)
    store.replace_inventory("big", hosts, pgs, vms, time.time())
    handle = start(config, config.store_url(), EventBus())
    try:
        yield handle.url, {"Authorization": f"Bearer {token}"}, store
    finally:
        handle.stop()
        store.close()


def bench_vms(n_vms: int, reps: int, clients: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, big_api(Path(tmp), n_vms) as (url, headers, store):
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            assert len(client.get("/api/v1/vms").json()) == n_vms
            warm, cold = [], []
            for i in range(reps):
                warm.append(timed(lambda: client.get("/api/v1/vms").raise_for_status()))
                store.set_session_status("big", "connected", in_sync=True, now=time.time() + i)
                cold.append(timed(lambda: client.get("/api/v1/vms").raise_for_status()))
        line(f"GET /api/v1/vms, {n_vms} VMs, store unchanged", warm, "<= 200 ms")
        line(f"GET /api/v1/vms, {n_vms} VMs, just after a write", cold, "<= 200 ms")
        for path in ("/api/v1/vms", f"/api/v1/vms?name=vm{n_vms // 2:05}", "/api/v1/sessions"):
            rate = throughput(url, headers, path, clients, seconds)
            print(f"throughput {path:<34} {rate:8.1f} requests/s ({clients} clients, "
                  f"{n_vms} VMs, store unchanged; no target)")  # fmt: skip


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def throughput(url: str, headers: dict[str, str], path: str, clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def work(slot: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            while time.monotonic() < stop:
                client.get(path).raise_for_status()
                done[slot] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


# ---- takeover on PostgreSQL -------------------------------------------------------------------


def leader_of(url: str) -> str | None:
    return next((c["id"] for c in controllers(url) if c["role"] == "leader"), None)


def until(probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)
    return found


def first_write_after(url: str, controller: str, after: float) -> float | None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT min(at) FROM ha_journal WHERE controller = :c AND at > :t"),
            {"c": controller, "t": after},
        ).scalar()
    engine.dispose()
    return None if found is None else float(found)


def one_takeover(url: str, how: signal.Signals, ttl: float) -> float:
    procs = {name: subprocess.Popen([sys.executable, str(CONTENDER), url, name, str(ttl)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for name in ("ctl-a", "ctl-b", "ctl-c")}  # fmt: skip
    try:
        until(lambda: len(controllers(url)) == 3)
        old = until(lambda: leader_of(url))
        until(lambda: first_write_after(url, old, 0.0))
        at = time.time()
        os.kill(procs[old].pid, how)
        new = until(lambda: (x := leader_of(url)) and x != old and x)
        return float(until(lambda: first_write_after(url, new, at))) - at
    finally:
        for proc in procs.values():
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait(10)


def bench_takeover(reps: int) -> None:
    from support import postgres

    why = postgres.missing()
    if why:
        print(f"takeover: skipped ({why})")
        return
    from sqlalchemy import create_engine

    from support.ha_contender import journal_metadata

    with postgres.postgres_server() as url:
        journal_metadata.create_all(create_engine(url))
        killed = [one_takeover(url, signal.SIGKILL, 3.0) for _ in range(reps)]
        frozen = [one_takeover(url, signal.SIGSTOP, 3.0) for _ in range(max(1, reps // 2))]
    line("takeover after kill -9 of the leader", killed, "<= 5 s", lambda s: f"{s:.2f} s")
    line("takeover after SIGSTOP of the leader (ttl 3 s)", frozen, "none (ttl + poll)",
         lambda s: f"{s:.2f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", choices=["sse", "vms", "takeover"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["sse", "vms", "takeover"])
    quick = args.quick
    print(
        f"bench.api on {os.cpu_count()} CPUs{' (quick: not the published sizes)' if quick else ''}"
    )
    if "sse" in only:
        bench_sse(10 if quick else 60)
    if "vms" in only:
        bench_vms(1_000 if quick else 10_000, 3 if quick else 15, 4, 2.0 if quick else 10.0)
    if "takeover" in only:
        bench_takeover(1 if quick else 5)


if __name__ == "__main__":
    main()
