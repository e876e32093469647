"""The lab's L3 underlay: FRR (zebra, bgpd or ospfd, bfdd) inside each switch's namespace.

Each switch runs its own FRR daemons in its namespace with a path space of its own
(``-N vfl-<lab>-<switch>``) and every socket, PID file and config in
``<state_dir>/frr/<switch>/`` (vty sockets, ``zserv.api``, ``bfdd.sock``). Daemons get
one config file each, generated here from the topology:

- ``bgp``: eBGP on every fabric /31, AS ``asn_base + node index`` (or the node's ``asn``),
  ``bfd`` on every neighbour, the loopback (and a leaf's VTEP /31) announced, ECMP across
  spines (``as-path multipath-relax``); datacenter timers.
- ``ospf``: area 0 point-to-point on every fabric link (hello 1 s, dead 3 s) with BFD,
  the loopback (and a leaf's VTEP /31, passive) in area 0; LSAs retransmitted after 1 s
  (the default 5 s holds adjacencies in Loading).

``wait_converged`` polls ``vtysh`` until every session/adjacency is up and BFD agrees.
Stopping is the builder's job (by PID file); ``remove_pathspaces`` deletes the
``/var/run/frr/vfl-<lab>-*`` directories the daemons may create and ``remove_crash_dir``
the ``/var/tmp/frr/<daemon>.<pid>`` one each daemon keeps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp

FRR_DIR = Path("/usr/lib/frr")
RUN_DIR = Path("/var/run/frr")
FRR_USER = "frr"


def fabric_neighbors(topo: tp.Topology, name: str) -> list[tuple[str, str, str]]:
    """(local port, peer address, peer node) for every fabric link of switch ``name``."""
    p2p = tp.p2p_addresses(topo)
    found: list[tuple[str, str, str]] = []
    for link in tp.fabric_links(topo):
        a, b = tp.endpoints(link)
        for here, there in ((a, b), (b, a)):
            if here.node == name:
                found.append((here.port, str(p2p[there.node, there.port].ip), there.node))
    return found


def bgpd_config(topo: tp.Topology, name: str) -> str:
    """bgpd.conf for switch ``name``."""
    lines = [
        "frr defaults datacenter",
        f"hostname {name}",
        "!",
        f"router bgp {tp.asn(topo, name)}",
        f" bgp router-id {tp.loopback(topo, name)}",
        " no bgp ebgp-requires-policy",
        " no bgp network import-check",
        " bgp bestpath as-path multipath-relax",
    ]
    for _port, address, peer in fabric_neighbors(topo, name):
        lines += [
            f" neighbor {address} remote-as {tp.asn(topo, peer)}",
            f" neighbor {address} bfd",
            f" neighbor {address} timers connect 1",
        ]
    lines += [" address-family ipv4 unicast", f"  network {tp.loopback(topo, name)}/32"]
    if name in tp.vtep_leaves(topo):
        lines.append(f"  network {tp.vtep_link(topo, name)[0].network}")
    lines += [
        "  maximum-paths 8",
        " exit-address-family",
        "!",
    ]
    return "\n".join(lines) + "\n"


def ospfd_config(topo: tp.Topology, name: str) -> str:
    """ospfd.conf for switch ``name``."""
    lines = [
        "frr defaults datacenter",
        f"hostname {name}",
        "!",
        "interface lo",
        " ip ospf area 0",
        " ip ospf passive",
        "!",
    ]
    if name in tp.vtep_leaves(topo):
        lines += [f"interface {tp.VTEP_UNDERLAY_PORT}", " ip ospf area 0", " ip ospf passive", "!"]
    for port, _address, _peer in fabric_neighbors(topo, name):
        lines += [
            f"interface {port}",
            " ip ospf area 0",
            " ip ospf network point-to-point",
            " ip ospf hello-interval 1",
            " ip ospf dead-interval 3",
            " ip ospf retransmit-interval 1",
            " ip ospf bfd",
            "!",
        ]
    lines += [
        "router ospf",
        f" ospf router-id {tp.loopback(topo, name)}",
        " timers throttle spf 0 50 1000",
        " maximum-paths 8",
        "!",
    ]
    return "\n".join(lines) + "\n"


def simple_config(name: str) -> str:
    """zebra.conf / bfdd.conf: hostname only."""
    return f"frr defaults datacenter\nhostname {name}\n!\n"


def daemons(topo: tp.Topology) -> list[str]:
    """FRR daemons a switch runs for ``topo``'s underlay (zebra first)."""
    if topo.underlay == tp.Underlay.NONE:
        return []
    routing = "bgpd" if topo.underlay == tp.Underlay.BGP else "ospfd"
    return ["zebra", "bfdd", routing]


def _config(topo: tp.Topology, name: str, daemon: str) -> str:
    if daemon == "bgpd":
        return bgpd_config(topo, name)
    if daemon == "ospfd":
        return ospfd_config(topo, name)
    return simple_config(name)


def pathspace(lab: str, name: str) -> str:
    return tp.netns_name(lab, name)


def _own_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.chown(path, FRR_USER, FRR_USER)
    return path


def _argv(daemon: str, ps: str, directory: Path) -> list[str]:
    argv = [
        str(FRR_DIR / daemon),
        "-d",
        "-N",
        ps,
        "-i",
        str(directory / f"{daemon}.pid"),
        "--vty_socket",
        str(directory),
        "-f",
        str(directory / f"{daemon}.conf"),
        "-z",
        str(directory / "zserv.api"),
        "-u",
        FRR_USER,
        "-g",
        FRR_USER,
        "--log",
        f"file:{directory / (daemon + '.log')}",
    ]
    if daemon == "bfdd":
        argv += ["--bfdctl", str(directory / "bfdd.sock")]
    return argv


def start(topo: tp.Topology, name: str, state_dir: Path) -> Path:
    """Write configs and start the FRR daemons of switch ``name``; return their directory."""
    ps = pathspace(topo.name, name)
    directory = _own_dir(state_dir / "frr" / name)
    _own_dir(RUN_DIR / ps)
    for daemon in daemons(topo):
        conf = directory / f"{daemon}.conf"
        conf.write_text(_config(topo, name, daemon))
        shutil.chown(conf, FRR_USER, FRR_USER)
        nsx.run(_argv(daemon, ps, directory), tp.netns_name(topo.name, name), timeout=30)
    return directory


TMP_DIR = Path("/var/tmp/frr")


def remove_crash_dir(pidfile: Path, pid: int) -> None:
    """Delete ``/var/tmp/frr/<daemon>.<pid>``, the log buffer a stopped daemon leaves."""
    shutil.rmtree(TMP_DIR / f"{pidfile.stem}.{pid}", ignore_errors=True)


def remove_pathspaces(prefix: str) -> list[str]:
    """Delete ``/var/run/frr/<prefix>*`` directories; return what was removed."""
    removed: list[str] = []
    for path in sorted(RUN_DIR.glob(f"{prefix}*")) if RUN_DIR.exists() else []:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(f"directory {path}")
    return removed


# ---- reading state -------------------------------------------------------------------------


def vtysh(lab: str, name: str, directory: str | Path, command: str) -> str:
    """Run one vtysh ``command`` against switch ``name``'s daemons; return the output."""
    argv = ["vtysh", "--vty_socket", str(directory), "-c", command]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        raise TransientError(f"vtysh {name}: no answer to {command!r}") from None
    if done.returncode != 0:
        raise TransientError(f"vtysh {name}: {command!r}: exit {done.returncode}")
    return done.stdout


def _json(lab: str, name: str, directory: str | Path, command: str) -> Any:
    text = vtysh(lab, name, directory, command)
    try:
        return json.loads(text or "{}")
    except ValueError:
        raise TransientError(f"vtysh {name}: {command!r} gave no JSON") from None


def bgp_sessions(lab: str, name: str, directory: str | Path) -> dict[str, str]:
    """BGP neighbour address -> state (``Established``...)."""
    data = _json(lab, name, directory, "show bgp ipv4 unicast summary json")
    peers = data.get("peers", {}) if isinstance(data, dict) else {}
    return {peer: str(info.get("state", "?")) for peer, info in peers.items()}


def ospf_neighbors(lab: str, name: str, directory: str | Path) -> dict[str, str]:
    """OSPF neighbour interface address -> state (``Full/-``...)."""
    data = _json(lab, name, directory, "show ip ospf neighbor json")
    found: dict[str, str] = {}
    for router_id, entries in (data.get("neighbors", {}) if isinstance(data, dict) else {}).items():
        for entry in entries:
            address = str(entry.get("ifaceAddress", router_id))
            found[address] = str(entry.get("nbrState", entry.get("state", "?")))
    return found


def bfd_peers(lab: str, name: str, directory: str | Path) -> dict[str, str]:
    """BFD peer address -> status (``up``...)."""
    data = _json(lab, name, directory, "show bfd peers json")
    items = data if isinstance(data, list) else []
    return {str(item.get("peer")): str(item.get("status")) for item in items}


def _switch_ok(topo: tp.Topology, name: str, directory: str | Path) -> bool:
    expected = {address for _port, address, _peer in fabric_neighbors(topo, name)}
    if topo.underlay == tp.Underlay.BGP:
        sessions = bgp_sessions(topo.name, name, directory)
        routing = all(sessions.get(peer) == "Established" for peer in expected)
    else:
        adjacencies = ospf_neighbors(topo.name, name, directory)
        routing = all(adjacencies.get(peer, "").startswith("Full") for peer in expected)
    bfd = bfd_peers(topo.name, name, directory)
    return routing and all(bfd.get(peer) == "up" for peer in expected)


def wait_converged(topo: tp.Topology, dirs: dict[str, str], timeout: float = 40.0) -> float:
    """Wait until every switch's sessions and BFD peers are up; return the seconds it took."""
    started = time.monotonic()
    pending = dict(dirs)
    while pending and time.monotonic() - started < timeout:
        for name, directory in list(pending.items()):
            try:
                if _switch_ok(topo, name, directory):
                    del pending[name]
            except TransientError:
                pass
        if pending:
            time.sleep(0.5)
    if pending:
        raise PermanentError(
            f"underlay {topo.underlay} not up after {timeout:g}s on {', '.join(sorted(pending))}"
        )
    return time.monotonic() - started
