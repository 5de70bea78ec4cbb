"""The per-request context handlers receive, and rendering of S3 responses and errors."""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from aiohttp import web

from ..auth.principals import Principal
from ..protocol.errors import S3Error
from ..protocol.routing import Route
from ..protocol.sigv4 import AuthResult, SignedRequest
from ..protocol.xml import XmlChild, build

log = logging.getLogger("nats_s3.api")
XML_TYPE = "application/xml"


# A request id is this process's random prefix and a counter: unique across gateways and workers for
# log correlation, without a read of the OS's random source per request (4 % of a small GET's CPU).
_ID_PREFIX = secrets.token_hex(4).upper()
_ID_COUNTER = itertools.count(secrets.randbelow(1 << 32))


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08X}"


def lower_headers(request: web.Request) -> dict[str, str]:
    """Lower-case header names; repeated headers joined with ',' as SigV4 canonicalises them."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def raw_query(request: web.Request) -> str:
    raw = request.raw_path
    return raw.split("?", 1)[1] if "?" in raw else ""


def query_pairs(request: web.Request) -> list[tuple[str, str]]:
    # Decoded with %XX only: '+' stays '+', as S3 reads query strings.
    text = raw_query(request).replace("+", "%2B")
    return parse_qsl(text, keep_blank_values=True, errors="strict")


def signed_request(request: web.Request, headers: Mapping[str, str], pairs: list[tuple[str, str]]) -> SignedRequest:
    return SignedRequest(
        method=request.method,
        raw_path=request.raw_path.split("?", 1)[0],
        query=pairs,
        headers=headers,
    )


def anonymous_auth(headers: Mapping[str, str]) -> AuthResult:
    """What the body readers need to know of an unsigned request: the payload hash it declares, if it
    declares one that can be checked without a signature; chunk signatures need a signer."""
    declared = headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
    if declared.startswith("STREAMING-") and declared != "STREAMING-UNSIGNED-PAYLOAD-TRAILER":
        raise S3Error("AccessDenied", "A signed payload needs a signed request.")
    return AuthResult("", declared, False, "", "", b"", "")


@dataclass
class S3Context:
    request: web.Request
    request_id: str
    route: Route
    headers: dict[str, str]
    query: dict[str, str]
    auth: AuthResult  # an anonymous request's: anonymous_auth()
    principal: Principal | None = None  # None: anonymous
    # DeleteObjects: whether the caller may delete one of its keys (None: it may delete any)
    may_delete: Callable[[str, str | None], Awaitable[bool]] | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str:
        assert self.route.bucket is not None
        return self.route.bucket

    @property
    def key(self) -> str:
        assert self.route.key is not None
        return self.route.key

    def base_headers(self) -> dict[str, str]:
        return {"x-amz-request-id": self.request_id, "x-amz-id-2": self.request_id, **self.response_headers}

    def xml(self, root: str, items: list[XmlChild], status: int = 200) -> web.Response:
        return web.Response(body=build(root, items), status=status, content_type=XML_TYPE, headers=self.base_headers())

    def empty(self, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(status=status, headers={**self.base_headers(), **(headers or {})})


def error_response(err: S3Error, request: web.Request, request_id: str) -> web.Response:
    headers = {"x-amz-request-id": request_id, "x-amz-id-2": request_id, **err.headers}
    if err.status == 304 or request.method == "HEAD":
        return web.Response(status=err.status, headers=headers)
    items: list[XmlChild] = [("Code", err.code), ("Message", err.message)]
    items.extend((name, value) for name, value in err.extra.items() if name not in ("CanonicalRequest", "StringToSign"))
    if log.isEnabledFor(logging.DEBUG) and "CanonicalRequest" in err.extra:
        log.debug("signature mismatch", extra={"canonical_request": err.extra["CanonicalRequest"]})
    items.append(("Resource", err.resource or request.path))
    items.append(("RequestId", request_id))
    body = build("Error", items, namespace=None)
    return web.Response(status=err.status, body=body, content_type=XML_TYPE, headers=headers)
