"""RFC 3261 timer values (§17, Table 4)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TimerSettings:
    """
    T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE
    requests and INVITE responses) and T4 (maximum time a message stays in
    the network), in seconds.  The lettered timers derive from them.
    """

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0
    #: Delay before an INVITE server transaction sends 100 Trying itself.
    trying: float = 0.2

    def __post_init__(self) -> None:
        if not (0 < self.T1 <= self.T2) or self.T4 <= 0:
            raise ValueError("timers need 0 < T1 <= T2 and T4 > 0")

    @property
    def B(self) -> float:
        return 64 * self.T1

    F = H = J = L = M = B

    @property
    def D(self) -> float:
        return max(32.0, self.B)
