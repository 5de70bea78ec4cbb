"""CORS: the preflight (OPTIONS, unsigned, as browsers send it) answered from the bucket's rules, and the
Access-Control-* headers for an actual request whose Origin a rule allows (on its answer, errors too)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ...protocol.cors import CorsRule, find_rule, requested_headers, response_headers
from ...protocol.errors import S3Error
from ...store import naming
from ...store.bucket_config import BucketConfig
from ..services import Services
from .exchange import Exchange, Next, Step

NOT_ALLOWED = "CORSResponse: This CORS request is not allowed. This is usually because the evalution of " \
    "Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not " \
    "whitelisted by the resource's CORS spec."  # fmt: skip


class Cors(Step):
    def __init__(self, services: Callable[[], Services | None] = lambda: None) -> None:
        self.services = services
        # Parsed rules per bucket, for the configuration object they came from (replaced on every change).
        self._parsed: dict[str, tuple[BucketConfig, list[CorsRule]]] = {}

    def _rules(self, bucket: str | None) -> list[CorsRule]:
        services = self.services()
        if services is None or bucket is None or not naming.is_valid_bucket_name(bucket):
            return []
        config = services.store.configs.get(bucket)
        if not config.cors:
            return []
        cached = self._parsed.get(bucket)
        if cached is not None and cached[0] is config:
            return cached[1]
        rules = [CorsRule.from_dict(rule) for rule in config.cors]
        self._parsed[bucket] = (config, rules)
        return rules

    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        request = exchange.request
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS":
            exchange.operation = "PreflightRequest"
            method = request.headers.get("Access-Control-Request-Method")
            if origin is None or method is None:
                raise S3Error("BadRequest", "Insufficient information. Origin request header needed.")
            headers = requested_headers(request.headers.get("Access-Control-Request-Headers"))
            rule = find_rule(self._rules(exchange.bucket), origin, method.strip().upper(), headers)
            if rule is None:
                raise S3Error("AccessDenied", NOT_ALLOWED)
            allowed = response_headers(rule, origin, preflight=True, headers=headers)
            return web.Response(headers={"x-amz-request-id": exchange.request_id, **allowed})
        if origin is not None and exchange.bucket is not None:
            rule = find_rule(self._rules(exchange.bucket), origin, request.method, [])
            if rule is not None:
                exchange.cors_headers = response_headers(rule, origin, preflight=False, headers=[])
        return await next(exchange)
