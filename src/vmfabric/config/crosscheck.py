"""Checks across the entries of a config, and of values a single type cannot judge alone.

Each check returns the first problem as ``"key.path: message"`` (or ``""``), so the
config model can raise it as one line. What is checked, and why it matters:

- names: two sessions or two switches with one name;
- switches: two entries writing one device (``SwitchConfig.endpoint()``: two controllers
  of one bridge undo each other's changes every reconcile); two switches a neighbour could
  not tell apart (names and aliases compared as the topology resolver compares them, or
  one management address);
- sessions: two sessions watching one manager (each would report the same VMs); for
  vCenter, as one user (two users may see different parts of one vCenter);
- links: a link to an unknown switch or session, to a port that is not an edge port, two
  links for one host NIC, or one switch port wired to two hosts (two NICs of one host may
  share a port: a bond on a port-channel).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from vmfabric.config import Config, LinkConfig, SwitchConfig

_LIBVIRT_URI = r"^[A-Za-z][A-Za-z0-9+.-]*://"


def first_problem(config: Config) -> str:
    """The first problem across the entries of ``config``, or ``""``."""
    for check in (_names, _switches, _sessions, _links):
        problem = check(config)
        if problem:
            return problem
    return ""


def http_url_problem(url: str) -> str:
    """Why ``url`` is not a usable http(s) URL of a manager, or ``""``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{url!r} is not an http(s) URL"
    try:
        port = parts.port
    except ValueError:
        return f"{url!r} has an invalid port"
    if port == 0:
        return f"{url!r} has an invalid port"
    if not parts.hostname:
        return f"{url!r} names no host"
    if parts.password is not None or parts.username is not None:
        return "the URL carries credentials: use username and password (env:/file:) instead"
    return ""


def libvirt_uris_problem(uris: Mapping[str, str]) -> str:
    """Why the hypervisor -> libvirt URI map is unusable, or ``""``."""
    seen: dict[str, str] = {}
    for host, uri in uris.items():
        if not re.match(_LIBVIRT_URI, uri.strip()):
            return f"{host}: {uri!r} is not a libvirt URI (qemu+ssh://HOST/system, ...)"
        if uri.strip() in seen:
            return f"{host}: {uri!r} is also hypervisor {seen[uri.strip()]}'s URI"
        seen[uri.strip()] = host
    return ""


def _first_duplicate(items: Iterable[str]) -> tuple[int, int] | None:
    """(first index, second index) of the first item seen twice."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item in seen:
            return seen[item], i
        seen[item] = i
    return None


def _names(config: Config) -> str:
    for what, key, names in (
        ("session", "sessions", [s.name for s in config.sessions]),
        ("switch", "switches", [s.name for s in config.switches]),
    ):
        dup = _first_duplicate(names)
        if dup is not None:
            first, second = dup
            return (
                f"{key}[{second}].name: {what} name {names[second]!r} is used twice "
                f"(also {key}[{first}])"
            )
    return ""


def _switches(config: Config) -> str:
    switches = config.switches
    for problem in (_same_device(switches), _same_names(switches), _same_address(switches)):
        if problem:
            return problem
    return ""


def _same_device(switches: Sequence[SwitchConfig]) -> str:
    seen: dict[str, int] = {}
    for i, sw in enumerate(switches):
        device = sw.endpoint()
        if not device:
            continue
        if device in seen:
            other = switches[seen[device]].name
            return (
                f"switches[{i}]: {sw.name} writes the same device as {other} ({device}); "
                "two entries for one device undo each other's changes"
            )
        seen[device] = i
    return ""


def _same_names(switches: Sequence[SwitchConfig]) -> str:
    """Names and aliases compared as the topology resolver compares neighbours' names."""
    from vmfabric.inventory.topology.resolve import canonical_name

    owner: dict[str, str] = {}
    for i, sw in enumerate(switches):
        for key, name in ((f"switches[{i}].name", sw.name), *_aliases(i, sw)):
            canonical = canonical_name(name)
            if owner.get(canonical, sw.name) != sw.name:
                return (
                    f"{key}: {name!r} also names switch {owner[canonical]} (neighbour names "
                    "are compared without case or domain)"
                )
            owner[canonical] = sw.name
    return ""


def _aliases(i: int, sw: SwitchConfig) -> list[tuple[str, str]]:
    return [(f"switches[{i}].aliases[{j}]", alias) for j, alias in enumerate(sw.aliases)]


def _same_address(switches: Sequence[SwitchConfig]) -> str:
    seen: dict[str, str] = {}
    for i, sw in enumerate(switches):
        addr = sw.mgmt_address
        if addr is None:
            continue
        if addr in seen:
            return f"switches[{i}].mgmt_address: {addr} is also switch {seen[addr]}'s address"
        seen[addr] = sw.name
    return ""


def _sessions(config: Config) -> str:
    seen: dict[str, str] = {}
    for i, session in enumerate(config.sessions):
        for key, manager in _managers(session):
            if manager in seen:
                return (
                    f"sessions[{i}].{key}: session {seen[manager]} already watches {manager}; "
                    "two sessions would report the same VMs"
                )
            seen[manager] = session.name
    return ""


def _managers(session: object) -> list[tuple[str, str]]:
    """(key, what identifies the manager) for each manager a session watches."""
    kind = getattr(session, "kind", "")
    if kind == "vcenter":
        parts = urlsplit(str(getattr(session, "url", "")))
        port = parts.port or (443 if parts.scheme == "https" else 80)
        user = str(getattr(session, "username", "")).lower()  # vSphere names ignore case
        return [("url", f"vCenter {parts.hostname}:{port}{parts.path.rstrip('/')} as {user}")]
    if kind == "libvirt":
        uris: dict[str, str] = getattr(session, "uris", {})
        return [(f"uris.{host}", f"libvirt {uri.strip()}") for host, uri in uris.items()]
    if kind == "static":
        return [("path", f"inventory file {getattr(session, 'path', '')}")]
    return []


def _links(config: Config) -> str:
    switches = {s.name: s for s in config.switches}
    sessions = {s.name for s in config.sessions}
    for i, link in enumerate(config.links):
        problem = _link_target(i, link, switches, sessions)
        if problem:
            return problem
    return _links_overlap(config.links)


def _link_target(
    i: int, link: LinkConfig, switches: Mapping[str, SwitchConfig], sessions: set[str]
) -> str:
    if link.switch not in switches:
        return f"links[{i}].switch: switch {link.switch!r} is not configured"
    if link.session is not None and link.session not in sessions:
        return f"links[{i}].session: session {link.session!r} is not configured"
    edge = switches[link.switch].edge_ports
    if link.port not in edge:
        return (
            f"links[{i}].port: {link.port!r} is not an edge port of switch {link.switch} "
            f"(edge_ports: {', '.join(edge)})"
        )
    return ""


def _overlap(a: LinkConfig, b: LinkConfig) -> bool:
    """Whether the two links can apply to one host (same session, or either for all)."""
    return a.session is None or b.session is None or a.session == b.session


def _scope(a: LinkConfig, b: LinkConfig) -> str:
    return f" (session {a.session})" if a.session is not None and a.session == b.session else ""


def _links_overlap(links: Sequence[LinkConfig]) -> str:
    by_nic: dict[tuple[str, str], list[int]] = {}
    by_port: dict[tuple[str, str], list[int]] = {}
    for i, link in enumerate(links):
        for j in by_nic.setdefault((link.host, link.nic), []):
            if _overlap(links[j], link):
                return (
                    f"links[{i}]: host {link.host} NIC {link.nic}{_scope(links[j], link)} is "
                    f"already wired by links[{j}]; one NIC has one switch port"
                )
        for j in by_port.setdefault((link.switch, link.port), []):
            if _overlap(links[j], link) and links[j].host != link.host:
                return (
                    f"links[{i}].port: {link.switch} {link.port} is already wired to host "
                    f"{links[j].host} by links[{j}]; a port reaches one host (set each "
                    "link's session if two managers name one host differently)"
                )
        by_nic[(link.host, link.nic)].append(i)
        by_port[(link.switch, link.port)].append(i)
    return ""
