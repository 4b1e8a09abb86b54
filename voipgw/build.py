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

#: Parsing, serialising and matching SIP, the timer wheel, digest
#: checking, the subscriber cache, the memory location store, the
#: counters, and the per-request path of a REGISTER: the UDP listener,
#: the dispatcher, the registrar and worker replication.  A compiled class
#: is a C type: Python code can subclass it only where it is declared with
#: C{@mypyc_attr(allow_interpreted_subclasses=True)} (the L{Registrar}: its
#: hooks are overridden by subclassing, and an override replaces the
#: compiled method), and a method assigned on an instance is not seen by
#: compiled callers.  Services whose tests and applications patch their
#: instances (TransportService, the transaction layer, RoutingService)
#: stay Python.
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
    "voipgw.coroutines",
    "voipgw.registrar.service",
    "voipgw.dispatch",
    "voipgw.transport.udp",
    "voipgw.workers.replication",
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
