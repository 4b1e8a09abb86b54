"""Errors raised at the database boundary."""


class DatabaseUnavailable(Exception):
    """
    The database could not be reached or kept failing after retries.

    C{args[0]} names the database (URL without password), C{args[1]} the
    operation that failed.
    """
