# -*- test-case-name: tests.test_stats -*-
"""Counters for live inspection (manhole) and the metrics API."""

from __future__ import annotations

from typing import Callable, Iterable


class Counters:
    """
    Named monotonic counters and live gauges.

    Counter names are dotted strings such as C{"in.request.INVITE"} or
    C{"parse_errors"}; gauges are callables read on demand (for example the
    number of live transactions).
    """

    def __init__(self) -> None:
        # a plain dict: the compiled increment is a native get and set
        self._counts: dict[str, int] = {}
        self._gauges: dict[str, Callable[[], float]] = {}

    def increment(self, name: str, amount: int = 1) -> None:
        counts = self._counts
        counts[name] = counts.get(name, 0) + amount

    def get(self, name: str) -> int:
        return self._counts.get(name, 0)

    def addGauge(self, name: str, read: Callable[[], float]) -> None:
        self._gauges[name] = read

    def snapshot(self, prefix: str = "") -> dict[str, float]:
        """All counters and gauges whose names start with C{prefix}."""
        out: dict[str, float] = {k: v for k, v in self._counts.items() if k.startswith(prefix)}
        for name, read in self._gauges.items():
            if name.startswith(prefix):
                out[name] = read()
        return dict(sorted(out.items()))

    def names(self) -> Iterable[str]:
        return sorted(set(self._counts) | set(self._gauges))

    def __repr__(self) -> str:
        return "\n".join(f"{k} = {v}" for k, v in self.snapshot().items())
