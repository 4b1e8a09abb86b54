"""Subscriber database: credentials and per-subscriber settings."""

from voipgw.subscribers.config import ConfigError, SubscriberConfig
from voipgw.subscribers.errors import (
    InvalidSubscriber,
    SubscriberError,
    SubscriberExists,
    UnknownSubscriber,
)
from voipgw.subscribers.model import Subscriber, computeHA1
from voipgw.subscribers.service import SubscriberService, subscriberStoreFromConfig
from voipgw.subscribers.store import SQLSubscriberStore

__all__ = [
    "ConfigError",
    "InvalidSubscriber",
    "SQLSubscriberStore",
    "Subscriber",
    "SubscriberConfig",
    "SubscriberError",
    "SubscriberExists",
    "SubscriberService",
    "UnknownSubscriber",
    "computeHA1",
    "subscriberStoreFromConfig",
]
