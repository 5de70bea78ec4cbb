"""Which bucket and key a request names: `<bucket>.<domain>` hosts when --domain is set, else path style;
and the request's headers and query, decoded once for every later step."""

from __future__ import annotations

from urllib.parse import unquote

from aiohttp import web

from ...protocol.errors import S3Error
from ...protocol.routing import split_path
from ..context import lower_headers, query_pairs
from .exchange import Exchange, Next, Step


def address(exchange: Exchange, domain: str | None) -> None:
    """Fill in bucket, key, headers and query (once: the 100-continue check may have done it)."""
    if exchange.addressed:
        return
    request = exchange.request
    exchange.bucket, exchange.key = _bucket_and_key(request, domain)
    exchange.headers = lower_headers(request)
    try:
        exchange.pairs = query_pairs(request)
    except (UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The query string is not valid.") from None
    query: dict[str, str] = {}
    for name, value in exchange.pairs:
        query.setdefault(name, value)
    exchange.query = query
    exchange.addressed = True


def _bucket_and_key(request: web.Request, domain: str | None) -> tuple[str | None, str | None]:
    if domain:
        host = (request.host or "").rsplit(":", 1)[0].lower() if "]" not in (request.host or "") else ""
        if host.endswith("." + domain):
            path = request.raw_path.split("?", 1)[0]
            key = unquote(path[1:], errors="strict") if len(path) > 1 else None
            return host[: -len(domain) - 1], key
    return split_path(request.raw_path)  # a key that is not UTF-8: UnicodeDecodeError, InvalidURI


class Addressing(Step):
    def __init__(self, domain: str | None) -> None:
        self.domain = domain

    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        address(exchange, self.domain)
        return await next(exchange)
