"""Exponential backoff, shared by sources, drivers and the reconcile loop."""

from __future__ import annotations


class Backoff:
    """Exponential backoff: 1, 2, 4 ... capped at ``cap`` seconds; ``reset`` on success."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first
