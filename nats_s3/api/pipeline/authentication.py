"""Who sent the request: a SigV4 (header, presigned, aws-chunked seed) or SigV2-presigned signature,
verified; or nobody (anonymous, left to authorization to judge). A bad signature is refused here."""

from __future__ import annotations

from aiohttp import web

from ...protocol.sigv4 import SigV4Verifier
from ..context import signed_request
from .exchange import Exchange, Next, Step


def authenticate(exchange: Exchange, verifier: SigV4Verifier) -> None:
    """Set `exchange.auth` (None for an unsigned request), once; S3Error for a signature that fails."""
    if exchange.authenticated:
        return
    request = exchange.request
    signed = signed_request(request, exchange.headers, exchange.pairs)
    exchange.auth = verifier.verify(signed) if verifier.is_signed(signed) else None
    exchange.authenticated = True


class Authentication(Step):
    def __init__(self, verifier: SigV4Verifier) -> None:
        self.verifier = verifier

    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        if exchange.request.method != "OPTIONS":  # a CORS preflight is never signed
            authenticate(exchange, self.verifier)
        return await next(exchange)
