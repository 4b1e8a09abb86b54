# -*- test-case-name: tests.test_overload -*-
"""
Overload control: shed new work with C{503} and C{Retry-After} before the
node falls behind its own retransmission timers.

Over UDP a late response is worse than none: the client retransmits after
T1 (500 ms), the retransmissions are more load, and the node spends its
time answering requests whose senders gave up.  L{OverloadGuard} measures
how late the reactor runs its timers (the reactor lag: a tick scheduled
every C{interval} seconds on the injected clock, its delay smoothed), how
long UDP datagrams wait in the kernel's receive queue before they are read
(smoothed the same way; with a large receive buffer this is where
sustained overload shows: the reactor keeps its timers on time while the
queue holds seconds of requests) and, optionally, a gauge such as the
number of live transactions.  Above any high mark it declares overload;
below all low marks (hysteresis) it recovers by itself.

Overload is not all or nothing: the guard admits a fraction of the new
requests and adapts it (additive increase, multiplicative decrease, as
TCP does): each probe above a high mark cuts the fraction by a quarter,
each probe below all low marks raises it by 2 points, until everything is
admitted again and the episode ends.  So an overloaded node keeps serving
about what it can and refuses the rest, instead of refusing everyone for
a while, then admitting everyone into the same queue.  Requests that carry
credentials (the second REGISTER of a digest exchange, an authenticated
INVITE) are admitted at twice the fraction: they finish work that already
cost a challenge.

While overloaded, L{OverloadGuard.admit} refuses requests that start new
work -- out-of-dialog INVITE, REGISTER, SUBSCRIBE, MESSAGE, OPTIONS,
PUBLISH, REFER -- so the dispatcher answers them C{503} with
C{Retry-After} (RFC 3261 §21.5.4).  It admits what finishes work already
accepted: ACK, CANCEL, BYE, PRACK, UPDATE, INFO and any in-dialog request
(with a To tag).  The 503 is sent through the server transaction, so a
retransmitted request is absorbed, not answered twice.
"""

from __future__ import annotations

import random as _random
from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.logger import Logger

#: Methods that start new work and may be shed.
SHEDDABLE = frozenset({"INVITE", "REGISTER", "SUBSCRIBE", "MESSAGE", "OPTIONS", "PUBLISH", "REFER"})


class OverloadGuard:
    """
    @param clock: C{IReactorTime} (the reactor, or C{task.Clock} in tests).
    @param interval: seconds between lag probes.
    @param highLag: smoothed lag (seconds) above which the node is overloaded.
    @param lowLag: smoothed lag below which it recovers (must be < C{highLag}).
    @param queueDelay: optional C{callable() -> seconds}: how long the last
        datagram read had waited in its receive queue.
    @param highQueueDelay: smoothed queue wait above which the node is
        overloaded (below T1, 500 ms: answers must leave before the
        client retransmits).
    @param lowQueueDelay: smoothed queue wait below which it may recover.
    @param gauge: optional C{callable() -> number} (e.g. live transactions).
    @param highGauge: gauge value above which the node is overloaded.
    @param lowGauge: gauge value below which it may recover.
    @param retryAfter: seconds in the C{Retry-After} of the 503.
    @param maxQueueAge: see L{maxQueueAge} (default T1, 0.5 s).
    @param random: C{callable() -> float} in [0, 1) drawing the admission
        lottery (tests make it deterministic).
    @param smoothing: weight of the newest sample in the moving average
        (low: a single pause, such as a full garbage collection, must not
        trip the guard; sustained queueing must).
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        interval: float = 0.02,
        highLag: float = 0.15,
        lowLag: float = 0.03,
        gauge: Optional[Callable[[], float]] = None,
        highGauge: float = float("inf"),
        lowGauge: float = float("inf"),
        retryAfter: int = 2,
        smoothing: float = 0.1,
        queueDelay: Optional[Callable[[], float]] = None,
        highQueueDelay: float = 0.2,
        lowQueueDelay: float = 0.05,
        random: Optional[Callable[[], float]] = None,
        maxQueueAge: float = 0.5,
    ) -> None:
        if not 0 <= lowLag < highLag:
            raise ValueError("need 0 <= lowLag < highLag")
        if not 0 <= lowQueueDelay < highQueueDelay:
            raise ValueError("need 0 <= lowQueueDelay < highQueueDelay")
        if lowGauge > highGauge:
            raise ValueError("need lowGauge <= highGauge")
        self.clock = clock
        self.interval = interval
        self.highLag = highLag
        self.lowLag = lowLag
        self.gauge = gauge
        self.highGauge = highGauge
        self.lowGauge = lowGauge
        self.retryAfter = retryAfter
        self.smoothing = smoothing
        self.queueDelaySource = queueDelay
        #: UDP requests starting new work that waited longer than this in
        #: the receive queue are dropped unread (0: never); the node hands
        #: it to the transports (L{voipgw.transport.udp.SIPDatagramPort}).
        self.maxQueueAge = maxQueueAge
        self.highQueueDelay = highQueueDelay
        self.lowQueueDelay = lowQueueDelay
        #: The smoothed receive-queue wait (seconds).
        self.queueDelay = 0.0
        self.lag = 0.0
        self.overloaded = False
        #: The share of new requests admitted while overloaded (1: all).
        self.admitFraction = 1.0
        self._random = random if random is not None else _random.random
        self.shed = 0
        self.episodes = 0
        self._expected = 0.0
        self._call: Any = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    @property
    def running(self) -> bool:
        return self._call is not None

    def _schedule(self) -> None:
        self._expected = self.clock.seconds() + self.interval
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        late = max(0.0, self.clock.seconds() - self._expected)
        self.lag = self.smoothing * late + (1.0 - self.smoothing) * self.lag
        if self.queueDelaySource is not None:
            waited = max(0.0, self.queueDelaySource())
            self.queueDelay = self.smoothing * waited + (1.0 - self.smoothing) * self.queueDelay
        self._update()
        self._schedule()

    #: Multiplicative decrease per probe above a high mark, additive
    #: increase per probe below all low marks, and the floor.
    DECREASE = 0.75
    INCREASE = 0.02
    MINIMUM_FRACTION = 0.02

    def _update(self) -> None:
        value = self.gauge() if self.gauge is not None else 0.0
        high = self.lag > self.highLag or self.queueDelay > self.highQueueDelay or value > self.highGauge
        if high:
            self.admitFraction = max(self.MINIMUM_FRACTION, self.admitFraction * self.DECREASE)
            if not self.overloaded:
                self.overloaded = True
                self.episodes += 1
                self.log.warn(
                    "overloaded (reactor lag {lag:.3f}s, receive queue wait {queueDelay:.3f}s, gauge {value}): "
                    "answering part of the new requests 503",
                    lag=self.lag, queueDelay=self.queueDelay, value=value,
                )
        elif self.overloaded and self.lag < self.lowLag and self.queueDelay < self.lowQueueDelay and value <= self.lowGauge:
            self.admitFraction = min(1.0, self.admitFraction + self.INCREASE)
            if self.admitFraction >= 1.0:
                self.overloaded = False
                self.log.warn(
                    "overload over (reactor lag {lag:.3f}s, receive queue wait {queueDelay:.3f}s); "
                    "{shed} requests shed so far",
                    lag=self.lag, queueDelay=self.queueDelay, shed=self.shed,
                )

    # -- admission ---------------------------------------------------------------

    def admit(self, request: Any) -> bool:
        """False if C{request} should be answered 503 now (counted in C{shed})."""
        if not self.overloaded or request.method not in SHEDDABLE:
            return True
        try:
            if request.toAddress.tag:
                return True  # in-dialog (re-INVITE): finishes accepted work
        except Exception:
            pass
        share = self.admitFraction
        if request.getHeader("Authorization") is not None or request.getHeader("Proxy-Authorization") is not None:
            share *= 2.0  # answers a challenge: finishes work already paid for
        if self._random() < share:
            return True
        self.shed += 1
        return False

    def stats(self) -> dict[str, Any]:
        return {"overloaded": self.overloaded, "admit_fraction": round(self.admitFraction, 3),
                "lag": round(self.lag, 4), "queue_delay": round(self.queueDelay, 4),
                "shed": self.shed, "episodes": self.episodes}


def overloadGuardFromSection(
    values: dict[str, str], clock: Any, gauge: Optional[Callable[[], float]] = None,
    queueDelay: Optional[Callable[[], float]] = None,
) -> Optional[OverloadGuard]:
    """
    An L{OverloadGuard} from the C{[overload]} section (C{enabled}, default
    yes; C{high_lag}, C{low_lag}, C{high_queue_delay}, C{low_queue_delay},
    C{max_queue_age} in seconds; C{max_transactions} with the C{gauge}; C{retry_after}), or
    None when disabled.  Raises C{ConfigError}.
    """
    from voipgw.config import Section
    from voipgw.errors import ConfigError

    section = Section("overload", values)
    if not section.getBool("enabled", True):
        return None
    high = section.getFloat("high_lag", 0.15, 0.001, 10.0)
    low = section.getFloat("low_lag", min(0.03, high / 2), 0.0, 10.0)
    if low >= high:
        raise ConfigError("[overload] low_lag must be below high_lag")
    highQueue = section.getFloat("high_queue_delay", 0.2, 0.001, 10.0)
    lowQueue = section.getFloat("low_queue_delay", min(0.05, highQueue / 2), 0.0, 10.0)
    if lowQueue >= highQueue:
        raise ConfigError("[overload] low_queue_delay must be below high_queue_delay")
    maxTransactions = section.getInt("max_transactions", 0, 0, 10_000_000)
    return OverloadGuard(
        clock, highLag=high, lowLag=low,
        gauge=gauge if maxTransactions else None,
        highGauge=float(maxTransactions) if maxTransactions else float("inf"),
        lowGauge=float(maxTransactions) * 0.8 if maxTransactions else float("inf"),
        retryAfter=section.getInt("retry_after", 2, 0, 3600),
        queueDelay=queueDelay, highQueueDelay=highQueue, lowQueueDelay=lowQueue,
        maxQueueAge=section.getFloat("max_queue_age", 0.5, 0.0, 60.0),
    )


class OverloadService(Service):
    """Runs an L{OverloadGuard}'s probe while the node runs (service C{"overload"})."""

    name = "overload"

    def __init__(self, guard: OverloadGuard) -> None:
        self.guard = guard

    def startService(self) -> None:
        super().startService()
        self.guard.start()

    def stopService(self) -> None:
        super().stopService()
        self.guard.stop()
