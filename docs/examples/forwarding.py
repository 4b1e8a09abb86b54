"""
Call forwarding on busy and on no answer: a voipgw routing application.

Enable it with one line in the node's configuration::

    [routing]
    application = forwarding:ForwardingRouting
    timer_c = 20

(with this directory on the Python path).  Calls to a user listed in
C{forwards} go to the user's registered phones as usual; when they are busy
(486, 600), do not answer (timer C: 480, or 408) or are not registered at
all (480), the call goes to the forwarding destination instead.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Union

from voipgw.routing import RoutingService, Target
from voipgw.sip.message import Request, Response
from voipgw.transport.address import Address

#: The responses after which a call is forwarded.
FORWARD_ON = frozenset({408, 480, 486, 600})


class ForwardingRouting(RoutingService):
    """The stock proxy, plus call forwarding for the users in C{forwards}."""

    #: AOR (user@domain) -> where to forward its calls.
    forwards: dict[str, str] = {}

    async def route(self, request: Request, source: Address) -> Any:
        decision = super().route(request, source)
        if inspect.isawaitable(decision):
            decision = await decision
        forward = self.forwards.get(request.requestURI.aor())
        if forward is None or request.method != "INVITE":
            return decision
        if decision == 480:
            # not registered: straight to the forwarding destination
            self.counters.increment("forwarding.unregistered")
            return [Target.parse(forward)]
        if isinstance(decision, list):
            for target in decision:
                target.attributes["forward"] = forward
        return decision

    def onFailure(self, request: Request, response: Union[Response, int], target: Target) -> Optional[list[Target]]:
        code = response if isinstance(response, int) else response.code
        forward = target.attributes.get("forward")
        if forward is not None and code in FORWARD_ON:
            # forward once per call, whichever phone failed first
            for branch in self.contextFor(request).branches:
                branch.target.attributes.pop("forward", None)
            self.counters.increment("forwarding.forwarded")
            return [Target.parse(forward)]
        return super().onFailure(request, response, target)
