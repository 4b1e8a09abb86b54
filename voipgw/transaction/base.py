# -*- test-case-name: tests.test_transaction_layer -*-
"""What client and server transactions share: state, timers, termination."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Hashable, Optional

from voipgw.transaction.timers import COARSE_TIMERS

if TYPE_CHECKING:
    from voipgw.transaction.layer import TransactionLayer


class Transaction:
    """A state machine with named timers on the layer's clock."""

    TRYING = "trying"
    CALLING = "calling"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"

    def __init__(self, layer: "TransactionLayer", key: Hashable, state: str) -> None:
        self.layer = layer
        self.key = key
        self.state = state
        self._timers: dict[str, Any] = {}
        self.created = layer.clock.seconds()
        # created on first use: most transactions never get a callback
        self._terminateCallbacks: Optional[list[Callable[["Transaction"], None]]] = None

    @property
    def reliable(self) -> bool:
        raise NotImplementedError

    def startTimer(self, name: str, delay: float, handler: Callable[[], None]) -> None:
        """
        (Re)start timer C{name}; a terminated transaction starts no timers.
        L{terminate} cancels every timer, so a handler never runs after it;
        a timer that has fired stays in C{_timers}, inactive, until it is
        started again or the transaction ends.
        """
        timers = self._timers
        call = timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()
        if self.state == self.TERMINATED:
            return
        if name in COARSE_TIMERS:
            # wait timers (J, K, H, ...) may fire late, never early: one
            # wheel entry instead of a DelayedCall in the reactor's heap
            timers[name] = self.layer.wheel.callLater(delay, handler)
        else:
            timers[name] = self.layer.clock.callLater(delay, handler)

    def cancelTimer(self, name: str) -> None:
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def timerActive(self, name: str) -> bool:
        call = self._timers.get(name)
        return call is not None and call.active()

    def onTerminate(self, callback: Callable[["Transaction"], None]) -> None:
        if self._terminateCallbacks is None:
            self._terminateCallbacks = []
        self._terminateCallbacks.append(callback)

    def terminate(self) -> None:
        """Enter Terminated: stop every timer and forget the transaction."""
        if self.state == self.TERMINATED:
            return
        self.state = self.TERMINATED
        for name in list(self._timers):
            self.cancelTimer(name)
        self.layer.forget(self)
        callbacks, self._terminateCallbacks = self._terminateCallbacks, None
        for callback in callbacks or ():
            callback(self)

    def timerFor(self, delay: float) -> Optional[float]:
        """C{delay} for unreliable transports, C{None} (no timer) for reliable ones."""
        return None if self.reliable else delay
