# -*- test-case-name: tests.test_coroutines -*-
"""Starting coroutines without Twisted's machinery when they do not wait."""

from __future__ import annotations

from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

_T = TypeVar("_T")


def startCoroutine(coroutine: Coroutine[Any, Any, _T]) -> "defer.Deferred[_T]":
    """
    L{defer.ensureDeferred}, with the part of C{coroutine} that runs before
    its first real wait run directly.

    Most SIP requests are answered from memory: every Deferred the handler
    awaits has already fired, and the whole coroutine runs in one step.
    Twisted's driver costs about 3 µs per request for that (a Deferred, a
    copied context and its bookkeeping); this runs the first step itself.
    Only when the coroutine waits on a Deferred that has not fired does it
    hand the coroutine to L{defer.Deferred.fromCoroutine}, which resumes
    it: a Deferred's C{send} ignores the value sent and yields the Deferred
    again until it fires, so the first step Twisted takes re-yields it.

    Returns a Deferred of the coroutine's result (already fired when it
    finished in the first step, with its failure if it raised).
    """
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return defer.succeed(stop.value)
    except BaseException:
        return defer.fail()
    return defer.Deferred.fromCoroutine(coroutine)


def runCoroutine(coroutine: Coroutine[Any, Any, Any], onFailure: Callable[[Failure], Any]) -> None:
    """
    Run C{coroutine} for its effects, like L{startCoroutine} but without a
    Deferred when it finishes in its first step (the common case of a
    request answered from memory): its result is dropped, and
    C{onFailure(failure)} is called if it raises, at once or later.
    """
    try:
        coroutine.send(None)
    except StopIteration:
        return
    except BaseException:
        onFailure(Failure())
        return
    defer.Deferred.fromCoroutine(coroutine).addErrback(onFailure)
