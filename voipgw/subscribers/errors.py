"""Errors of the subscriber store."""


class SubscriberError(Exception):
    """Base class; C{str()} is a one-line explanation."""


class SubscriberExists(SubscriberError):
    """A subscriber with this username and domain is already provisioned."""


class UnknownSubscriber(SubscriberError, LookupError):
    """No subscriber with this username and domain."""


class InvalidSubscriber(SubscriberError, ValueError):
    """A username, domain or setting is not acceptable."""
