"""RFC 3261 timer values (§17, Table 4; RFC 6026 §8.11 for L and M)."""

from __future__ import annotations

from dataclasses import dataclass


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

    E = G = A

    @property
    def B(self) -> float:
        return 64 * self.T1

    F = H = J = L = M = B

    @property
    def D(self) -> float:
        return max(32.0, self.B)

    @property
    def I(self) -> float:  # noqa: E743 - the RFC's name
        return self.T4

    K = I
