"""Subscriber database: credentials and per-subscriber settings."""

from voipgw.subscribers.model import Subscriber, computeHA1

__all__ = ["Subscriber", "computeHA1"]
