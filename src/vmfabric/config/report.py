"""What ``vmfabric config check`` reports once everything passed, and the checks that need
the static inventories (read by the caller, with the static source's own parser).

One line per section, saying what was checked::

    store: sqlite /srv/vmfabric/vmfabric.db (folder writable)
    sessions: 2 ok (lab vcenter, inv static)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from vmfabric.config.local import sqlite_path
from vmfabric.config.store_url import shown
from vmfabric.core.model import Snapshot

if TYPE_CHECKING:
    from vmfabric.config import Config

Problem = tuple[str, str]  # (key path, message)


def inventory_link_problem(config: Config, inventories: Mapping[str, Snapshot]) -> Problem | None:
    """A link scoped to a static session whose host or NIC that inventory does not have."""
    for i, link in enumerate(config.links):
        snap = inventories.get(link.session or "")
        if snap is None:
            continue
        hosts = {h.name: h for h in snap.hosts}
        if link.host not in hosts:
            return f"links[{i}].host", f"host {link.host!r} is not in session {snap.session}"
        nics = [n.name for n in hosts[link.host].nics]
        if nics and link.nic not in nics:
            return (
                f"links[{i}].nic",
                f"host {link.host} of session {snap.session} has no NIC {link.nic!r} "
                f"(nics: {', '.join(nics)})",
            )
    return None


def summary(config: Config, inventories: Mapping[str, Snapshot]) -> list[str]:
    """The lines ``config check`` prints once every check passed."""
    from vmfabric.config import format_duration

    e = config.engine
    secrets = [getattr(s, "password", None) for s in config.sessions]
    refs = [ref for ref in secrets if ref]
    return [
        f"store: {_store(config)}",
        f"engine: prune_delay {format_duration(e.prune_delay)}, coalesce "
        f"{format_duration(e.coalesce)}, retry_max {format_duration(e.retry_max)}, guard "
        f"{e.max_removals} removals or {e.max_removal_share:.0%}",
        _section("sessions", [f"{s.name} {s.kind}" for s in config.sessions]),
        _section("secrets", refs),
        _section("inventories", [_inventory(s) for s in inventories.values()]),
        _section(
            "switches", [f"{s.name} {s.driver}, {len(s.edge_ports)} ports" for s in config.switches]
        ),
        _section("links", [f"{k.host} {k.nic} -> {k.switch} {k.port}" for k in config.links]),
    ]


def _store(config: Config) -> str:
    path = sqlite_path(config)
    if path is not None:
        return f"sqlite {path} (folder writable)"
    if config.store.startswith("sqlite"):
        return "sqlite in memory (nothing kept after the process ends)"
    return f"{shown(config.store)} (not contacted: the check is offline)"


def _inventory(snap: Snapshot) -> str:
    return f"{snap.session}: {len(snap.hosts)} hosts, {len(snap.portgroups)} port groups, " + (
        f"{len(snap.vms)} VMs"
    )


def _section(name: str, items: list[str], shown: int = 4) -> str:
    if not items:
        return f"{name}: none"
    more = f", {len(items) - shown} more" if len(items) > shown else ""
    return f"{name}: {len(items)} ok ({', '.join(items[:shown])}{more})"
