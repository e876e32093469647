"""Pure desired-state computation: no I/O, no clocks it is not handed.

- ``base``: the intent contract and the typed plans (``Change``, ``TargetPlan``);
- ``removals``: removal safety for every intent (prune delay, fail-static, origin);
- ``guard``: the blast-radius guard;
- ``autovlan``: VLANs on hypervisor-facing switch ports.
"""

from vmfabric.intents.autovlan import (
    AutovlanIntent,
    SessionPolicy,
    SwitchPolicy,
    full_desired,
)
from vmfabric.intents.base import Change, Intent, TargetPlan
from vmfabric.intents.guard import GuardLimits, guard_verdict
from vmfabric.intents.removals import Removals

__all__ = [
    "AutovlanIntent",
    "Change",
    "GuardLimits",
    "Intent",
    "Removals",
    "SessionPolicy",
    "SwitchPolicy",
    "TargetPlan",
    "full_desired",
    "guard_verdict",
]
