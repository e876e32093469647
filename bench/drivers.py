"""Apply latency of the vendor switch drivers against their peers, with a floor.

``python -m bench.drivers [--applies N] [--json FILE]`` starts each driver's peer (the EOS
peer: fake-switches' arista_generic, extended; the NX-API peer written in the tests) on
127.0.0.1 and measures, per driver and mode:

- the latency of one-port applies that write (alternately add and remove one VLAN on one
  trunk: a read request and a write request each), and of applies with nothing to write
  (one read request);
- the API requests per plan, counted by the driver and by the peer;
- the floor: one bare request to the same peer with the vendor's usual client (pyeapi's
  ``run_commands`` of the driver's read commands, opening a connection per request as
  pyeapi does; a plain JSON-RPC POST for NX-API).

The peers are simulators: their latency is mostly Python (fake-switches' command
processors, the NX-API peer's parser), so these figures compare the drivers' own cost and
request economy, not real switches.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import pyeapi  # noqa: E402

from bench.stats import summary  # noqa: E402
from support.peers import eos as eos_peer  # noqa: E402
from support.peers import nxos as nxos_peer  # noqa: E402
from vmfabric.config import parse_switch  # noqa: E402
from vmfabric.core.model import PortChange  # noqa: E402
from vmfabric.targets.switchport.base import create_driver  # noqa: E402
from vmfabric.targets.switchport.cliapi import HttpCliDriver  # noqa: E402

READS_EOS = ["show interfaces switchport", "show interfaces description", "show vlan"]
READS_NXOS = ["show interface switchport", "show interface description", "show vlan brief"]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def measure_driver(
    driver: HttpCliDriver, port: str, n: int, peer_stats: Callable[[], int]
) -> dict[str, Any]:
    """One-port applies that write, then no-op applies; requests counted both ends."""
    driver.apply([PortChange(port, add=frozenset({109}))])  # warm: connection, VLAN 109
    requests, peer_before = driver.requests, peer_stats()
    flip = [PortChange(port, add=frozenset({110})), PortChange(port, remove=frozenset({110}))]
    count = iter(range(n))
    writes = timed(lambda: driver.apply([flip[next(count) % 2]]), n)
    write_requests = (driver.requests - requests) / n
    peer_writes = (peer_stats() - peer_before) / n
    requests = driver.requests
    noops = timed(lambda: driver.apply([PortChange(port, add=frozenset({109}))]), n)
    return {
        "apply_ms": summary(writes, 1000),
        "noop_apply_ms": summary(noops, 1000),
        "requests_per_writing_plan": write_requests,
        "requests_per_noop_plan": (driver.requests - requests) / n,
        "peer_config_requests_per_plan": peer_writes,
        "connections": driver._http.connects if driver._http is not None else 0,
    }


def bench_eos(n: int) -> dict[str, Any]:
    os.environ[eos_peer.PASSWORD_ENV] = eos_peer.PASSWORD
    peer = eos_peer.EosPeer().start()
    try:
        peer.set_trunk("Ethernet1", ())
        out: dict[str, Any] = {}

        def writes() -> int:
            return int(peer.stats()["config_requests"])

        for mode, session in (("eos (session)", True), ("eos (config_session: false)", False)):
            options = peer.options(config_session=session)
            config = parse_switch(
                {"name": "leaf1", "driver": "eos", "edge_ports": ["Ethernet1"], **options}
            )
            driver = create_driver(config)
            assert isinstance(driver, HttpCliDriver)
            try:
                out[mode] = measure_driver(driver, "Ethernet1", n, writes)
            finally:
                driver.close()
        node = pyeapi.connect(
            transport="http", host="127.0.0.1", port=peer.port, username="vmfabric",
            password=eos_peer.PASSWORD, return_node=True,
        )  # fmt: skip
        out["floor: bare pyeapi request (eos peer)"] = {
            "request_ms": summary(timed(lambda: node.run_commands(READS_EOS), n), 1000)
        }
        return out
    finally:
        peer.stop()


def bench_nxos(n: int) -> dict[str, Any]:
    os.environ[nxos_peer.PASSWORD_ENV] = nxos_peer.PASSWORD
    peer = nxos_peer.NxosPeer().start()
    try:
        peer.set_trunk("Ethernet1/1", ())
        out: dict[str, Any] = {}

        def writes() -> int:
            return int(peer.stats()["config_requests"])

        for mode, checkpoint in (("nxos (checkpoint)", True), ("nxos (checkpoint: false)", False)):
            options = peer.options(checkpoint=checkpoint)
            config = parse_switch(
                {"name": "leaf1", "driver": "nxos", "edge_ports": ["Ethernet1/1"], **options}
            )
            driver = create_driver(config)
            assert isinstance(driver, HttpCliDriver)
            try:
                out[mode] = measure_driver(driver, "Ethernet1/1", n, writes)
            finally:
                driver.close()
        out["floor: bare JSON-RPC request (nx-api peer)"] = {
            "request_ms": summary(timed(lambda: _nxapi_post(peer.port), n), 1000)
        }
        return out
    finally:
        peer.stop()


def _nxapi_post(port: int) -> None:
    body = json.dumps([{"jsonrpc": "2.0", "method": "cli", "params": {"cmd": c, "version": 1},
                        "id": i} for i, c in enumerate(READS_NXOS, 1)]).encode()  # fmt: skip
    token = base64.b64encode(f"vmfabric:{nxos_peer.PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ins", data=body, method="POST",
        headers={"Content-Type": "application/json-rpc", "Authorization": f"Basic {token}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as reply:  # noqa: S310
        reply.read()


def render(results: dict[str, Any]) -> str:
    lines = [f"{'driver':<42} {'p50 ms':>8} {'p99 ms':>8} {'req/plan':>9} {'no-op p50':>10}"]
    for name, row in results.items():
        if "apply_ms" in row:
            lines.append(
                f"{name:<42} {row['apply_ms']['p50']:>8.2f} {row['apply_ms']['p99']:>8.2f} "
                f"{row['requests_per_writing_plan']:>9.2f} {row['noop_apply_ms']['p50']:>10.2f}"
            )
        else:
            stat = row["request_ms"]
            lines.append(f"{name:<42} {stat['p50']:>8.2f} {stat['p99']:>8.2f} {1:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=200, help="applies per measurement")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    results = {**bench_eos(args.applies), **bench_nxos(args.applies)}
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True))
    return results


if __name__ == "__main__":
    main()
