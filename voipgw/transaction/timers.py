"""RFC 3261 timer values (§17, Table 4; RFC 6026 §8.11 for L and M)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

from twisted.logger import Logger

_log = Logger(namespace="voipgw.transaction.timers")


@dataclass(frozen=True)
class TimerSettings:
    """
    T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE
    requests and INVITE responses) and T4 (maximum time a message stays in
    the network), in seconds.  The lettered timers derive from them:

      - A, E, G start at T1 (A doubles without limit, E and G up to T2);
      - B, F, H, J, L, M are 64*T1;
      - D is 64*T1 but at least 32 s ("> 32 s" in Table 4);
      - I and K are T4.

    Timers A, D, E, G, I, J and K only run over unreliable transports.
    """

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0
    #: Delay before an INVITE server transaction sends 100 Trying itself (§17.2.1).
    trying: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.T1 <= self.T2) or self.T4 <= 0:
            raise ValueError("timers need 0 < T1 <= T2 and T4 > 0")
        if self.trying < 0:
            raise ValueError("the 100 Trying delay cannot be negative")

    @property
    def A(self) -> float:
        return self.T1

    @property
    def E(self) -> float:
        return self.T1

    @property
    def G(self) -> float:
        return self.T1

    @property
    def B(self) -> float:
        return 64 * self.T1

    @property
    def F(self) -> float:
        return 64 * self.T1

    @property
    def H(self) -> float:
        return 64 * self.T1

    @property
    def J(self) -> float:
        return 64 * self.T1

    @property
    def L(self) -> float:
        return 64 * self.T1

    @property
    def M(self) -> float:
        return 64 * self.T1


    @property
    def D(self) -> float:
        return max(32.0, self.B)

    @property
    def I(self) -> float:  # noqa: E743 - the RFC's name
        return self.T4

    @property
    def K(self) -> float:
        return self.T4


#: Timers that only bound how long a transaction lingers or waits (RFC 3261
#: Table 4: "wait time"), run on the coarse L{TimerWheel}: firing them up to
#: L{TimerWheel.granularity} late is allowed, early never.  The
#: retransmission timers (A, E, G), the 100 Trying delay and the request
#: timeouts B and F stay exact (one C{callLater} each).
COARSE_TIMERS = frozenset(["D", "H", "I", "J", "K", "L", "M"])


class WheelTimer:
    """One timer on a L{TimerWheel}: C{active()} and C{cancel()} like a C{DelayedCall}."""

    __slots__ = ("deadline", "function", "args", "wheel")

    def __init__(self, wheel: "TimerWheel", deadline: float, function: Any, args: tuple) -> None:
        self.wheel: Optional[TimerWheel] = wheel
        self.deadline = deadline
        self.function = function
        self.args = args

    def active(self) -> bool:
        return self.wheel is not None

    def cancel(self) -> None:
        wheel = self.wheel
        if wheel is not None:
            self.wheel = None
            self.function, self.args = None, ()  # drop references now, not at the deadline
            wheel._cancelled()

    def getTime(self) -> float:
        return self.deadline


class TimerWheel:
    """
    Many long timers for the price of one C{callLater}.

    Timers of the same delay expire in the order they were started, so each
    delay has a FIFO queue (append and pop at the ends, O(1)); one
    C{DelayedCall} on C{clock} wakes at the earliest deadline and runs every
    due timer, then sleeps until the next deadline but at least
    C{granularity} seconds: a timer fires at its deadline or up to
    C{granularity} later, never earlier.  The reactor's heap holds one entry
    instead of one per transaction.  Cancelling is O(1) (the entry is
    skipped when its turn comes); when no timer is left the wheel's own
    call is cancelled, so an idle layer leaves no delayed call behind.
    """

    def __init__(self, clock: Any, granularity: float = 0.1) -> None:
        self.clock = clock
        self.granularity = granularity
        self._queues: dict[float, deque[WheelTimer]] = {}
        self._live = 0
        self._call: Any = None
        self._wake = 0.0

    def __len__(self) -> int:
        return self._live

    def callLater(self, delay: float, function: Any, *args: Any) -> WheelTimer:
        deadline = self.clock.seconds() + delay
        timer = WheelTimer(self, deadline, function, args)
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = deque()
        queue.append(timer)
        self._live += 1
        call = self._call
        if call is None:
            self._arm(deadline)
        elif deadline < self._wake:
            call.cancel()
            self._arm(deadline)
        return timer

    def _arm(self, when: float) -> None:
        self._wake = when
        self._call = self.clock.callLater(max(0.0, when - self.clock.seconds()), self._run)

    def _cancelled(self) -> None:
        self._live -= 1
        if self._live == 0:
            self.clear()

    def clear(self) -> None:
        """Forget every timer (none fires) and cancel the wheel's call."""
        for queue in self._queues.values():
            for timer in queue:
                timer.wheel = None
                timer.function, timer.args = None, ()
        self._queues.clear()
        self._live = 0
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _run(self) -> None:
        self._call = None
        now = self.clock.seconds()
        due: list[WheelTimer] = []
        for delay, queue in list(self._queues.items()):
            while queue and queue[0].deadline <= now:
                timer = queue.popleft()
                if timer.wheel is not None:
                    due.append(timer)
            if not queue:
                del self._queues[delay]
        for timer in due:
            if timer.wheel is None:
                continue  # cancelled by an earlier timer of this turn
            timer.wheel = None
            self._live -= 1
            function, args = timer.function, timer.args
            timer.function, timer.args = None, ()
            try:
                function(*args)
            except Exception:
                _log.failure("transaction timer {function!r} failed", function=function)
        if self._live <= 0:
            self.clear()
            return
        if self._call is None:
            heads = [queue[0].deadline for queue in self._queues.values() if queue]
            if heads:
                self._arm(max(min(heads), now + self.granularity))
