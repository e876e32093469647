"""The read views the API serves, one function per ``show`` view: the switch-over point to
``vmfabric.views`` (the typed views shared with ``show``).

Until ``vmfabric.views`` provides a view, the function here calls the same ``Store``
method ``show`` calls, so ``/api/v1/<view>`` and ``show <view> --json`` are one code path.
"""

from __future__ import annotations

from typing import Any

from vmfabric.store import Store

Json = list[dict[str, Any]]


def open_reader(url: str) -> Store:
    """The API's store: it only reads (``Store(url, readonly=True)`` once views land)."""
    return Store(url)


def sessions(store: Store, name: str | None = None) -> Json:
    return store.show_sessions(name)


def vms(store: Store, name: str | None = None) -> Json:
    return store.show_vms(name)


def hosts(store: Store) -> Json:
    return store.show_hosts()


def interfaces(store: Store, port: str | None = None) -> Json:
    rows = store.show_interfaces()
    return rows if port is None else [r for r in rows if r["port"] == port]


def vlans(store: Store, vlan: int | None = None, dynamic: bool = False) -> Json:
    rows = store.show_vlans(dynamic)
    return rows if vlan is None else [r for r in rows if r["vlan"] == vlan]


def switches(store: Store) -> Json:
    return store.show_switches()


def plans(store: Store, plan_id: int | None = None, status: str | None = None) -> Json:
    if plan_id is not None:
        found = store.plan(plan_id)
        return [] if found is None else [found]
    return store.plans(status)


def audit(store: Store, limit: int, switch: str | None = None) -> Json:
    return store.audit(limit, switch)
