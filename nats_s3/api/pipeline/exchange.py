"""One request on its way through the steps, and how steps are linked into a chain."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from ...auth.principals import Principal
from ...protocol.routing import Route
from ...protocol.sigv4 import AuthResult


@dataclass(slots=True)
class Exchange:
    """What the steps learn about a request, for the ones after them (and for the access log)."""

    request: web.Request
    request_id: str
    started: float
    operation: str = "-"
    bucket: str | None = None
    key: str | None = None
    addressed: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    pairs: list[tuple[str, str]] = field(default_factory=list)  # the query, decoded, in order
    query: dict[str, str] = field(default_factory=dict)  # first value of each name
    authenticated: bool = False
    auth: AuthResult | None = None  # None: an anonymous request
    route: Route | None = None
    principal: Principal | None = None  # who signed it (authorization looks it up)
    may_delete: MayDelete | None = None  # DeleteObjects: whether the caller may delete one of its keys
    cors_headers: dict[str, str] = field(default_factory=dict)  # for every answer, errors included
    error_code: str = ""  # for the access log: why the request was refused
    error_reason: str = ""

    @property
    def access_key(self) -> str:
        return self.auth.access_key if self.auth is not None else "-"


# Where a request keeps its exchange (the 100-continue check starts it, the chain goes on with it).
EXCHANGE_KEY: web.RequestKey[Exchange] = web.RequestKey("s3.exchange", Exchange)

MayDelete = Callable[[str, str | None], Awaitable[bool]]
Next = Callable[[Exchange], Awaitable[web.StreamResponse]]


class Step:
    """A link of the chain: does its part, then hands on to `next` (or answers itself)."""

    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        raise NotImplementedError


def chain(steps: Sequence[Step], last: Next) -> Next:
    """`steps` in order, ending with `last`. Linked with partial (a C call, no extra coroutine frame per
    step): the chain costs a request one frame per step."""
    handler = last
    for step in reversed(steps):
        handler = functools.partial(step.__call__, next=handler)
    return handler
