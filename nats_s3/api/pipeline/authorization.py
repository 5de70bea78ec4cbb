"""Who may do what. Today's rule, kept: every valid access key may do everything, an anonymous request
nothing. Owners, policies and ACLs are judged here (issue 11)."""

from __future__ import annotations

from aiohttp import web

from ...protocol.errors import S3Error
from .exchange import Exchange, Next, Step


class Authorization(Step):
    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        if exchange.auth is None:
            raise S3Error("AccessDenied")
        return await next(exchange)
