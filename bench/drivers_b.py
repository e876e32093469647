"""Apply latency of the junos, cumulus and cli drivers against their peers.

``python -m bench.drivers_b [--applies N] [--json FILE]`` starts each driver's peer on
127.0.0.1 (junos: fake-switches' ELS Junos over NETCONF/SSH, extended; cumulus: the NVUE
peer written in the tests, over HTTPS; cli: fake-switches' IOS over SSH, extended) and
measures, per driver:

- the latency of one-port applies that write (alternately add and remove one VLAN on one
  trunk), and of applies with nothing to write;
- the requests per plan the driver sends (NETCONF RPCs, HTTP requests, or SSH round trips:
  commands that each wait for a prompt), and the configuration transactions the peer saw;
- the logins the driver made over the whole run (one: the session is kept).

The junos figure is also taken with ncclient's own 100 ms reader tick, which the driver
lowers to 5 ms (``junos.NCCLIENT_TICK``), to show what that buys. The peers are
simulators written in Python: the figures compare the drivers' own cost and request
economy, not real switches (a real commit or NVUE apply takes seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from ncclient.transport import session as nc_session  # noqa: E402

from bench.stats import summary  # noqa: E402
from support.peers.cisco import CiscoPerson, cli_config  # noqa: E402
from support.peers.cumulus import CumulusPerson, cumulus_config, make_tls  # noqa: E402
from support.peers.fakeswitches import FakeSwitchesPeer  # noqa: E402
from support.peers.junos import JunosPeer, junos_config  # noqa: E402
from support.peers.nvue import NvuePeer  # noqa: E402
from vmfabric.core.model import PortChange  # noqa: E402
from vmfabric.targets.switchport.cli import CliDriver  # noqa: E402
from vmfabric.targets.switchport.cumulus import CumulusDriver  # noqa: E402
from vmfabric.targets.switchport.junos import NCCLIENT_TICK, JunosDriver  # noqa: E402

Driver = JunosDriver | CumulusDriver | CliDriver


def requests(driver: Driver) -> int:
    if isinstance(driver, CliDriver):
        return driver.round_trips
    return driver.requests


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure(driver: Driver, port: str, n: int, peer_writes: Callable[[], int]) -> dict[str, Any]:
    driver.apply([PortChange(port, add=frozenset({109}))])  # warm: session, VLAN 109 known
    before, peer_before = requests(driver), peer_writes()
    flip = [PortChange(port, add=frozenset({110})), PortChange(port, remove=frozenset({110}))]
    count = iter(range(n))
    writes = timed(lambda: driver.apply([flip[next(count) % 2]]), n)
    per_plan = (requests(driver) - before) / n
    peer_per_plan = (peer_writes() - peer_before) / n
    before = requests(driver)
    noops = timed(lambda: driver.apply([PortChange(port, add=frozenset({109}))]), n)
    return {
        "apply_ms": summary(writes, 1000),
        "noop_apply_ms": summary(noops, 1000),
        "requests_per_writing_plan": per_plan,
        "requests_per_noop_plan": (requests(driver) - before) / n,
        "peer_transactions_per_plan": peer_per_plan,
        "logins": driver.logins,
    }


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="vmf-bench-") as path:
        yield Path(path)


def bench_junos(n: int, tick: float) -> dict[str, Any]:
    nc_session.TICK = tick
    with workdir() as tmp:
        peer = FakeSwitchesPeer("junos", tmp, ports=6).start()
        try:
            person = JunosPeer(peer)
            person.set_trunk("ge-0/0/1", ())
            person.close()
            driver = JunosDriver(junos_config(peer))
            try:
                return measure(driver, "ge-0/0/1", n, peer.writes)
            finally:
                driver.close()
        finally:
            peer.stop()
            nc_session.TICK = NCCLIENT_TICK


def bench_cumulus(n: int) -> dict[str, Any]:
    with workdir() as tmp:
        peer = NvuePeer(tmp, tls=make_tls(tmp)).start()
        try:
            CumulusPerson(peer).set_trunk("swp1", ())
            driver = CumulusDriver(cumulus_config(peer))
            try:
                return measure(driver, "swp1", n, peer.writes)
            finally:
                driver.close()
        finally:
            peer.stop()


def bench_cli(n: int) -> dict[str, Any]:
    with workdir() as tmp:
        peer = FakeSwitchesPeer("cisco", tmp, ports=6).start()
        try:
            person = CiscoPerson(peer)
            person.set_trunk("GigabitEthernet0/1", ())
            person.close()
            driver = CliDriver(cli_config(peer))
            try:
                return measure(driver, "GigabitEthernet0/1", n, peer.writes)
            finally:
                driver.close()
        finally:
            peer.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    n = args.applies
    results = {
        "junos (ELS, fake-switches)": bench_junos(n, NCCLIENT_TICK),
        "junos with ncclient's 0.1 s tick": bench_junos(max(n // 4, 20), 0.1),
        "cumulus (NVUE peer, https)": bench_cumulus(n),
        "cli cisco_ios (fake-switches)": bench_cli(n),
    }
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
