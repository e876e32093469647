"""What the running controller does for its REST API (``api.app.Control``): a dry-run
sync and approvals. Called from the API's worker threads."""

from __future__ import annotations

import time
from typing import Any

from vmfabric.core.errors import ConfigError
from vmfabric.runtime.root import Controller
from vmfabric.runtime.sync import sync_once


class RuntimeControl:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def sync(self, dry_run: bool) -> dict[str, Any]:
        """The plan a one-shot sync would apply now (sessions and switches read afresh).
        A running controller applies continuously: only ``dry_run`` is offered."""
        if not dry_run:
            raise ConfigError("the running controller applies continuously: use dry_run=true")
        return sync_once(self.controller.config, None, dry_run=True).to_json()

    def approve(self, plan_id: int) -> dict[str, Any]:
        """Approve a held plan; the maintenance loop releases it within a second."""
        store = self.controller.store
        store.approve_plan(plan_id, time.time())
        plan = store.plan(plan_id)
        assert plan is not None
        self.controller.bus.publish(
            "plan", {"id": plan_id, "target": plan["switch"], "status": "approved"}
        )
        return plan
