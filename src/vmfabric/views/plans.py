"""Views of what vmfabric decided and did: plans and the audit log (``show plan|audit``).

A plan's document is the runtime's (``{"ports": [{"port", "add", "remove", ...}]}`` for
switch ports); the view lifts its ports and VLANs out so that tables and scripts need not
know the document. Entries without a port (other target kinds) name their holder.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vmfabric.store import Store
from vmfabric.store.records import SWITCHPORT, AuditEntry, PlanRecord
from vmfabric.views.common import iso_utc, iso_utc_ms
from vmfabric.views.models import AuditView, PlanPort, PlanView


def _ints(values: Any) -> list[int]:
    return sorted({int(v) for v in values or () if isinstance(v, int | str) and str(v).isdigit()})


def _ports(doc: Mapping[str, Any]) -> list[PlanPort]:
    found = doc.get("ports")
    if not isinstance(found, list):
        return []
    return [
        {
            "port": str(p.get("port", p.get("holder", ""))),
            "add": _ints(p.get("add")),
            "remove": _ints(p.get("remove")),
        }
        for p in found
        if isinstance(p, Mapping)
    ]


def _plan(plan: PlanRecord) -> PlanView:
    ports = _ports(plan.doc)
    return {
        "id": plan.id,
        "switch": plan.target,
        "target": plan.target,
        "status": plan.status,
        "created": iso_utc(plan.created),
        "updated": iso_utc(plan.updated),
        "reason": plan.reason,
        "sessions": list(plan.sessions),
        "ports": ports,
        "vlans": sorted({v for p in ports for v in (*p["add"], *p["remove"])}),
        "plan": plan.doc,
    }


def plans(store: Store, plan_id: int | None = None, status: str | None = None) -> list[PlanView]:
    """Plans in id order (only ``plan_id``, or only those of ``status``, when given)."""
    with store.reader() as read:
        if plan_id is not None:
            one = read.plan(plan_id)
            found = [one] if one is not None and status in (None, one.status) else []
        else:
            found = read.plans(status)
    return [_plan(p) for p in found]


def _audit(entry_id: int, e: AuditEntry) -> AuditView:
    view: AuditView = {
        "id": entry_id,
        "time": iso_utc_ms(e.time),
        "kind": e.kind,
        "target": e.target,
        "holder": e.holder,
        "member": e.member,
        "action": e.action,
        "reason": e.reason,
        "session": e.session,
        "plan": e.plan,
    }
    if e.kind == SWITCHPORT:
        view["switch"], view["port"], view["vlan"] = e.target, e.holder, e.vlan or 0
    return view


def audit(store: Store, limit: int = 50, switch: str | None = None) -> list[AuditView]:
    """The newest ``limit`` audit entries (of one switch, or any target, when given),
    newest first."""
    with store.reader() as read:
        found = read.audit(limit, switch)
    return [_audit(i, e) for i, e in found]
