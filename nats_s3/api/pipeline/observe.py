"""Outermost step: the request id, timing, requests-in-flight, the request metrics and the access log."""

from __future__ import annotations

import logging
import time

from aiohttp import web

from ...observability.metrics import Metrics
from ..context import new_request_id
from .exchange import EXCHANGE_KEY, Exchange, Next, Step

log = logging.getLogger("nats_s3.access")


def exchange_for(request: web.Request) -> Exchange:
    """The request's exchange: the one the 100-continue check began, or a new one."""
    found = request.get(EXCHANGE_KEY)
    if found is None:
        found = Exchange(request, new_request_id(), time.monotonic())
        request[EXCHANGE_KEY] = found
    return found


class Observe(Step):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        metrics = self.metrics
        metrics.in_flight.inc()
        try:
            response = await next(exchange)
        finally:
            metrics.in_flight.dec()
        request = exchange.request
        elapsed = time.monotonic() - exchange.started
        bytes_in = request.content.total_bytes
        bytes_out = request.get("s3.bytes_out") or _body_bytes(response)
        metrics.observe(exchange.operation, response.status, elapsed, bytes_in, bytes_out)
        if log.isEnabledFor(logging.INFO):
            # Names and numbers only: never the Authorization header, a signature or a query string.
            extra = {
                "request_id": exchange.request_id,
                "access_key": exchange.access_key,
                "operation": exchange.operation,
                "method": request.method,
                "bucket": exchange.bucket or "",
                "key": exchange.key or "",
                "status": response.status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": round(elapsed * 1000, 2),
            }
            # Why a request was refused (SignatureDoesNotMatch, RequestTimeTooSkewed, expired, ...).
            if exchange.error_code:
                extra["error"] = exchange.error_code
            if exchange.error_reason:
                extra["reason"] = exchange.error_reason
            # makeRecord + handle is log.info without its search of the stack for the caller's line.
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "request", (), None, extra=extra))
        return response


def _body_bytes(response: web.StreamResponse) -> int:
    """Body bytes of a response built in one piece (streamed bodies count themselves as they go)."""
    if isinstance(response, web.Response):
        body = response.body
        return len(body) if isinstance(body, bytes | bytearray) else 0
    return 0
