"""Removal safety, one component for every intent: when may a member leave a holder?

Keyed by (target, holder, member): a VLAN on an edge port, an address in an address set, a
remote VTEP in a VNI's flood list. Additions never come here: they are applied at once.

A member vmfabric added (it is in the target's origin record, ``dynamic``) and that no
longer is desired is removed only when all of these hold:

- **prune delay**: ``prune_delay`` seconds passed since its last user left (``vacated``),
  or since removal safety first saw it undesired (after a restart); a user coming back
  (``reclaimed``) cancels the timer, so a vMotion does not flap;
- **fail-static**: every session that could want the member (``gate``) is in sync; the
  delay counts from the latest time one of them (re)gained sync;
- **origin**: only members in ``dynamic`` are ever removed: what people configured stays.

The blast-radius guard (``intents.guard``) then judges a target's removals as a whole.
Pure: the caller passes the time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

Gate = Callable[[str], tuple[str, float]]  # member -> (blocking session or "", synced at)
HolderKey = tuple[str, str]  # (target, holder)


class Removals:
    """See the module docstring. Not thread-safe: the runtime owns it."""

    def __init__(self, prune_delay: float) -> None:
        self.prune_delay = prune_delay
        self._since: dict[HolderKey, dict[str, float]] = {}

    def vacated(self, target: str, holder: str, member: str, now: float) -> None:
        """The member lost its last user at ``now``: its prune delay starts."""
        self._since.setdefault((target, holder), {})[member] = now

    def reclaimed(self, target: str, holder: str, member: str) -> None:
        """The member has a user again: no removal is pending."""
        pending = self._since.get((target, holder))
        if pending is not None:
            pending.pop(member, None)
            if not pending:
                del self._since[(target, holder)]

    def waiting(self, target: str, holder: str) -> bool:
        """Whether a removal of the holder is timed."""
        return (target, holder) in self._since

    def pending(self, target: str, holder: str) -> dict[str, float]:
        return dict(self._since.get((target, holder), {}))

    def due(
        self,
        target: str,
        holder: str,
        dynamic: Collection[str],
        desired: Collection[str],
        *,
        now: float,
        gate: Gate,
    ) -> tuple[set[str], dict[str, str]]:
        """Members of ``dynamic`` not in ``desired``: those due for removal now, and those
        waiting with the reason (prune delay, a session out of sync)."""
        key = (target, holder)
        pending = self._since.get(key, {})
        for member in [m for m in pending if m not in dynamic]:
            del pending[member]  # gone from the holder: nothing left to time
        remove: set[str] = set()
        waiting: dict[str, str] = {}
        for member in sorted(set(dynamic) - set(desired)):
            blocker, synced = gate(member)
            if blocker:
                waiting[member] = f"session {blocker} not in sync: held (fail-static)"
                continue
            since = self._since.setdefault(key, {}).setdefault(member, now)
            due = max(since, synced) + self.prune_delay
            if now >= due:
                remove.add(member)
            else:
                waiting[member] = f"prune delay: removal in {due - now:.1f}s"
        if not self._since.get(key, True):
            del self._since[key]
        return remove, waiting

    def forget(self, target: str, holder: str, members: Iterable[str]) -> None:
        """The removals were applied: their timers are done."""
        for member in members:
            self.reclaimed(target, holder, member)

    def forget_target(self, target: str) -> None:
        for key in [k for k in self._since if k[0] == target]:
            del self._since[key]

    def next_deadline(self, now: float, gate_for: Callable[[str], Gate]) -> float | None:
        """Earliest time after ``now`` at which a pending removal becomes due, if any.
        Removals blocked by a session out of sync have none: its snapshot wakes them.
        ``gate_for(target)`` gives the target's gate."""
        dues = []
        for (target, _), members in self._since.items():
            gate = gate_for(target)
            for member, since in members.items():
                blocker, synced = gate(member)
                due = max(since, synced) + self.prune_delay
                if not blocker and due > now:
                    dues.append(due)
        return min(dues) if dues else None
