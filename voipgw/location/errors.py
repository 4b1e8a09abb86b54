"""Errors raised by the location stores and their configuration."""

from __future__ import annotations


class PartitionUnavailable(Exception):
    """
    No copy of a partition can serve the operation (both copies are down or
    in maintenance).  Only AORs hashed to C{partition} are affected; the
    registrar answers C{503} with C{Retry-After}.
    """

    def __init__(self, partition: int, reason: str = "no live copy") -> None:
        super().__init__(partition, reason)
        self.partition = partition
        self.reason = reason

    def __str__(self) -> str:
        return f"location partition {self.partition} unavailable: {self.reason}"


from voipgw.errors import ConfigError  # noqa: E402,F401 - one error type for every section
