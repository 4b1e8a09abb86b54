"""
C{mypyc_attr} for modules that mypyc compiles, without needing
C{mypy_extensions} at run time.

mypyc reads the decorator when it compiles a module (L{voipgw.build});
a plain-Python install may not have C{mypy_extensions}, and there the
decorator does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, TypeVar

__all__ = ["mypyc_attr"]

_C = TypeVar("_C")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # pragma: no cover - depends on what is installed

        def mypyc_attr(*_args: Any, **_flags: Any) -> Callable[[_C], _C]:
            return lambda cls: cls
