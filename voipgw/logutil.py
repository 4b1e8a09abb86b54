# -*- test-case-name: tests.test_logutil -*-
"""Rate-limited logging for events an attacker can trigger at will."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger


class RateLimitedLog:
    """
    Emit at most C{burst} events per C{interval} seconds for each key; the
    next event after a quiet period reports how many were suppressed.
    Time comes from the injected C{clock}.
    """

    def __init__(self, log: Logger, clock: Any, interval: float = 10.0, burst: int = 5) -> None:
        self._log = log
        self._clock = clock
        self._interval = interval
        self._burst = burst
        self._windows: dict[str, list[float]] = {}

    def warn(self, key: str, format: str, **fields: Any) -> bool:
        """Log C{format} unless C{key} is over its budget; return whether it logged."""
        now = self._clock.seconds()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self._interval:
            suppressed = int(window[2]) if window is not None else 0
            self._windows[key] = [now, 1, 0]
            if len(self._windows) > 10_000:
                self._windows = {key: self._windows[key]}
            self._log.warn(format, suppressed=suppressed, **fields)
            return True
        if window[1] < self._burst:
            window[1] += 1
            self._log.warn(format, suppressed=0, **fields)
            return True
        window[2] += 1
        return False
