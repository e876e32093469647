"""Typed read views shared by ``vmfabric show`` and the REST API: the JSON contract.

Each function takes a Store (open it with ``readonly=True`` to read beside a running
controller) and returns exactly the documents ``vmfabric show <view> --json`` prints; the
models in ``vmfabric.views.models`` type them and docs/json.md documents them
(``python -m vmfabric.views.doc``). Views import only the store and core.
"""

from vmfabric.views.inventory import hosts, session_autovlan, sessions, vms
from vmfabric.views.models import (
    AuditView,
    HostView,
    InterfaceView,
    PlanView,
    SessionAutovlanView,
    SessionView,
    SwitchView,
    VlanView,
    VmView,
)
from vmfabric.views.plans import audit, plans
from vmfabric.views.targets import interfaces, switches, vlans

__all__ = [
    "AuditView",
    "HostView",
    "InterfaceView",
    "PlanView",
    "SessionAutovlanView",
    "SessionView",
    "SwitchView",
    "VlanView",
    "VmView",
    "audit",
    "hosts",
    "interfaces",
    "plans",
    "session_autovlan",
    "sessions",
    "switches",
    "vlans",
    "vms",
]
