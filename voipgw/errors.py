"""Errors shared by every part of voipgw."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the section, key and fault."""
