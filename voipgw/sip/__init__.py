"""The SIP message layer: URIs, headers, requests and responses."""

from voipgw.sip.address import CSeq, DigestParams, NameAddress, Via
from voipgw.sip.errors import MessageTooLarge, SIPParseError
from voipgw.sip.message import (
    DEFAULT_LIMITS, Limits, Message, Request, Response, parseMessage, responseTo,
)
from voipgw.sip.uri import URI

__all__ = [
    "CSeq", "DigestParams", "NameAddress", "Via", "MessageTooLarge", "SIPParseError",
    "DEFAULT_LIMITS", "Limits", "Message", "Request", "Response", "parseMessage",
    "responseTo", "URI",
]
