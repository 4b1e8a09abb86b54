"""Errors raised at the database boundary."""

from __future__ import annotations


class DatabaseUnavailable(Exception):
    """
    The database could not be reached or kept failing after retries.

    C{args[0]} names the database (URL without password), C{args[1]} the
    operation that failed.  The underlying error is C{__cause__}.
    """

    def __str__(self) -> str:
        if len(self.args) >= 2:
            text = f"database {self.args[0]} unavailable for {self.args[1]}"
        elif self.args:
            text = f"database {self.args[0]} unavailable"
        else:
            return "database unavailable"
        cause = self.__cause__
        if cause is not None:
            text += f": {_driverMessage(cause)}"
        return text


def _driverMessage(error: BaseException) -> str:
    orig = getattr(error, "orig", None)
    if orig is not None:
        error = orig
    args: tuple[object, ...] = tuple(getattr(error, "args", ()))
    # MySQLdb errors are (code, message).
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return f"({args[0]}) {args[1]}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def describeError(error: BaseException) -> str:
    """A one-line description of a database error, for logs and operators."""
    if isinstance(error, DatabaseUnavailable):
        return str(error)
    return _driverMessage(error)
