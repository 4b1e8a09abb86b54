"""Errors of the SIP message layer."""

from __future__ import annotations


class SIPParseError(ValueError):
    """
    A message (or part of one) that does not follow RFC 3261's grammar.

    C{reason} names the fault in words fit for a reason phrase; C{status}
    is the response code a request with this fault deserves (400 unless a
    more specific code applies, e.g. 505 for a bad SIP version).
    C{request} is set when the start line and the headers needed to answer
    were parsed, so the fault can be answered rather than dropped.
    """

    def __init__(self, reason: str, status: int = 400, request: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.request = request


class MessageTooLarge(SIPParseError):
    """The message exceeds a configured size, line length or header count limit."""

    def __init__(self, reason: str, request: object = None) -> None:
        super().__init__(reason, 513, request)
