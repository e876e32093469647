"""Network namespaces and veth links, as small typed helpers over the ``ip`` command.

This module owns the kernel side of a lab: creating and deleting named network
namespaces, veth pairs, moving links between namespaces, bringing links up, giving them
addresses and running a command inside a namespace. Everything runs ``ip`` through
``subprocess`` without a shell. Deletes are idempotent (deleting what is already gone is
not an error), so cleanup code can call them unconditionally in ``finally`` blocks.

Names: namespaces follow ``ip netns`` rules; link names are at most 15 characters
(``IFNAMSIZ``). Give everything you create a prefix unique to your test or lab so that
``list_netns(prefix)`` finds only your own namespaces.

Errors: a bad name raises ``ConfigError``; a command the kernel refuses raises
``PermanentError`` with the command and its first error line.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence

from vmfabric.core.errors import ConfigError, PermanentError

IFNAMSIZ = 15
_LINK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_NETNS_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_GONE = ("Cannot find device", "No such file or directory", "does not exist")


def check_link_name(name: str) -> str:
    """Return ``name`` if it is a usable interface name (1-15 of ``[A-Za-z0-9_.-]``)."""
    if not _LINK_NAME.match(name):
        raise ConfigError(f"interface name {name!r} is invalid (1-15 of A-Z a-z 0-9 _ . -)")
    return name


def check_netns_name(name: str) -> str:
    """Return ``name`` if it is a usable namespace name (1-64 of ``[A-Za-z0-9_.-]``)."""
    if not _NETNS_NAME.match(name) or name in (".", ".."):
        raise ConfigError(f"namespace name {name!r} is invalid (1-64 of A-Z a-z 0-9 _ . -)")
    return name


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed to run inside ``netns`` (unchanged when ``netns`` is None)."""
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", check_netns_name(netns), *argv]


def run(
    argv: Sequence[str], netns: str | None = None, timeout: float = 15.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (inside ``netns`` if given); raise PermanentError if it fails and ``check``."""
    full = in_netns(netns, argv)
    try:
        done = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PermanentError(f"{' '.join(full)}: no answer within {timeout:g}s") from None
    if check and done.returncode != 0:
        first = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[0]
        raise PermanentError(f"{' '.join(full)}: {first} (exit {done.returncode})")
    return done


def _run_ignoring_gone(argv: Sequence[str], netns: str | None = None) -> None:
    done = run(argv, netns, check=False)
    if done.returncode != 0 and not any(text in done.stderr for text in _GONE):
        first = (done.stderr.strip() or "failed").splitlines()[0]
        raise PermanentError(f"{' '.join(in_netns(netns, argv))}: {first}")


# ---- namespaces --------------------------------------------------------------------------


def list_netns(prefix: str = "") -> list[str]:
    """Names of the network namespaces that start with ``prefix``, sorted."""
    out = run(["ip", "netns", "list"]).stdout
    names = (line.split()[0] for line in out.splitlines() if line.strip())
    return sorted(name for name in names if name.startswith(prefix))


def netns_exists(name: str) -> bool:
    return check_netns_name(name) in list_netns(name)


def add_netns(name: str) -> str:
    """Create namespace ``name`` with its loopback up; return the name."""
    run(["ip", "netns", "add", check_netns_name(name)])
    run(["ip", "link", "set", "lo", "up"], netns=name)
    return name


def delete_netns(name: str) -> None:
    """Delete namespace ``name`` (and every link in it). Nothing happens if it is gone."""
    if netns_exists(name):
        _run_ignoring_gone(["ip", "netns", "del", name])


# ---- links --------------------------------------------------------------------------------


def link_exists(name: str, netns: str | None = None) -> bool:
    done = run(["ip", "link", "show", "dev", check_link_name(name)], netns, check=False)
    return done.returncode == 0


def add_veth(name: str, peer: str, netns: str | None = None, peer_netns: str | None = None) -> None:
    """Create veth pair ``name``/``peer`` in ``netns`` and move ``peer`` to ``peer_netns``.

    Both ends are left down; call ``set_up`` on each. If moving the peer fails, the pair is
    deleted again so that nothing is left behind.
    """
    run(
        [
            "ip",
            "link",
            "add",
            check_link_name(name),
            "type",
            "veth",
            "peer",
            "name",
            check_link_name(peer),
        ],
        netns,
    )
    if peer_netns is not None and peer_netns != netns:
        try:
            move_link(peer, peer_netns, netns)
        except PermanentError:
            delete_link(name, netns)
            raise


def move_link(name: str, to_netns: str, from_netns: str | None = None) -> None:
    """Move link ``name`` from ``from_netns`` (None: this namespace) into ``to_netns``."""
    run(
        ["ip", "link", "set", "dev", check_link_name(name), "netns", check_netns_name(to_netns)],
        from_netns,
    )


def set_up(name: str, netns: str | None = None, mtu: int | None = None) -> None:
    """Bring link ``name`` up (optionally setting its MTU)."""
    argv = ["ip", "link", "set", "dev", check_link_name(name)]
    if mtu is not None:
        argv += ["mtu", str(mtu)]
    run([*argv, "up"], netns)


def add_address(name: str, cidr: str, netns: str | None = None) -> None:
    """Add address ``cidr`` (``10.0.0.1/24`` or an IPv6 prefix) to link ``name``."""
    run(["ip", "address", "add", cidr, "dev", check_link_name(name)], netns)


def delete_link(name: str, netns: str | None = None) -> None:
    """Delete link ``name`` (a veth takes its peer along). Nothing happens if it is gone."""
    _run_ignoring_gone(["ip", "link", "del", "dev", check_link_name(name)], netns)


def exec_in(netns: str, *argv: str, timeout: float = 15.0, check: bool = True) -> str:
    """Run ``argv`` inside ``netns``; return its standard output."""
    return run(argv, netns, timeout=timeout, check=check).stdout


def ping(netns: str, address: str, count: int = 1, wait: float = 1.0) -> bool:
    """True if ``address`` answers ``count`` pings sent from inside ``netns``."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-W", f"{wait:g}", address]
    return run(argv, netns, timeout=count * wait + 5, check=False).returncode == 0
