# -*- test-case-name: tests.test_build -*-
"""
Which build of voipgw is running.

C{pip install .} compiles the modules in L{COMPILED_MODULES} to C with
mypyc (setup.py reads this list); without mypyc or a C compiler, or with
C{VOIPGW_PURE_PYTHON=1}, they install as plain Python.  Both builds behave
the same; the compiled one parses SIP about six times faster (its fast
paths scan characters, which plain Python does slowly) and serialises it
about 2.5 times faster (docs/performance.md).  Running from a source checkout uses the
Python sources.
"""

from __future__ import annotations

import importlib

#: Modules with no subclassing seams for applications: parsing,
#: serialising and matching SIP, the timer wheel, digest checking, the
#: subscriber cache, the memory location store and the counters.  A class compiled by mypyc cannot be subclassed
#: by Python code, so the services (Registrar, RoutingService, ...) stay
#: Python.
COMPILED_MODULES = (
    "voipgw.sip.errors",
    "voipgw.sip.grammar",
    "voipgw.sip.headers",
    "voipgw.sip.uri",
    "voipgw.sip.address",
    "voipgw.sip.message",
    "voipgw.transport.address",
    "voipgw.transaction.keys",
    "voipgw.transaction.timers",
    "voipgw.auth.digest",
    "voipgw.subscribers.cache",
    "voipgw.location.memory",
    "voipgw.stats",
)


def compiledModules() -> dict[str, bool]:
    """For each module of L{COMPILED_MODULES}: is it the compiled extension?"""
    result = {}
    for name in COMPILED_MODULES:
        path = getattr(importlib.import_module(name), "__file__", "") or ""
        result[name] = not path.endswith(".py")
    return result


def buildKind() -> str:
    """C{"mypyc"}, C{"pure-python"}, or C{"mixed"} (a partial or stale build)."""
    compiled = compiledModules().values()
    if all(compiled):
        return "mypyc"
    if not any(compiled):
        return "pure-python"
    return "mixed"
