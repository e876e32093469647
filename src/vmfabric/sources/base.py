"""The source contract: a full snapshot, then a stream of changes, from one session.

A source runs in a thread of its own (vSphere and libvirt clients block) and reports
through ``emit``, which is thread-safe. It must:

- emit ``SessionStatus("connecting")`` before it connects, ``"connected"`` once connected,
  and ``"disconnected"`` with the reason whenever the connection is lost;
- after (re)connecting, emit one ``Snapshot`` of the whole inventory; only after that may it
  emit incremental changes (``VmUpsert``, ``HostUpsert``...);
- get changes from the manager's events, not by re-reading the inventory;
- reconnect by itself with exponential backoff capped at 60 s, until ``stop`` is set;
- never raise out of ``run`` for a connection problem: report it and retry.

Hosts carry the CDP/LLDP neighbours their NICs heard (``Nic.neighbor``); the service
resolves them to switch ports (``vmfabric.inventory.topology``), so sources know nothing
of switches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from vmfabric.config import SessionConfig
from vmfabric.core.backoff import Backoff
from vmfabric.core.model import SourceEvent
from vmfabric.plugins import Registry

Emit = Callable[[SourceEvent], None]


class Source(Protocol):
    name: str

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """Report the session's inventory until ``stop`` is set."""


SourceFactory = Callable[[SessionConfig, Path], Source]

SOURCES: Registry[SourceFactory] = Registry(
    "session kind",
    "vmfabric.sources",
    {
        "static": "vmfabric.sources.static",
        "vcenter": "vmfabric.sources.vcenter",
        "libvirt": "vmfabric.sources.libvirt",
    },
)


def create_source(config: SessionConfig, base_dir: Path) -> Source:
    return SOURCES.get(config.kind)(config, base_dir)


__all__ = ["SOURCES", "Backoff", "Emit", "Source", "create_source"]
