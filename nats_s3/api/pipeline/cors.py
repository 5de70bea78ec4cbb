"""CORS: the preflight (OPTIONS, unsigned, as browsers send it). No bucket has a CORS configuration yet,
so a real preflight is refused as S3 refuses one that matches no rule."""

from __future__ import annotations

from aiohttp import web

from ...protocol.errors import S3Error
from .exchange import Exchange, Next, Step


class Cors(Step):
    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        request = exchange.request
        if request.method == "OPTIONS":
            exchange.operation = "PreflightRequest"
            if "Origin" not in request.headers or "Access-Control-Request-Method" not in request.headers:
                raise S3Error("BadRequest", "Insufficient information. Origin request header needed.")
            raise S3Error("AccessDenied", "CORSResponse: This CORS request is not allowed.")
        return await next(exchange)
