"""The front door's steps, each on its own: a real aiohttp server on a free port whose S3 route is a
chain of some of the steps ending in a probe that answers what the steps worked out. No NATS is needed
for any of them; the whole chain against NATS is what every other test drives."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from nats_s3.api.pipeline.addressing import Addressing
from nats_s3.api.pipeline.authentication import Authentication
from nats_s3.api.pipeline.authorization import Authorization
from nats_s3.api.pipeline.cors import Cors
from nats_s3.api.pipeline.errors import RenderErrors
from nats_s3.api.pipeline.exchange import Exchange, Next, Step, chain
from nats_s3.api.pipeline.observe import Observe, exchange_for
from nats_s3.api.pipeline.routing import Routing
from nats_s3.observability.metrics import Metrics
from nats_s3.protocol.sigv4 import SigV4Verifier

from .signing import sign
from .support import ACCESS_KEY, SECRET_KEY

Probe = Callable[[Exchange], Awaitable[web.StreamResponse]]


async def echo(exchange: Exchange) -> web.StreamResponse:
    route = exchange.route
    return web.json_response(
        {
            "bucket": exchange.bucket,
            "key": exchange.key,
            "access_key": exchange.access_key,
            "operation": exchange.operation,
            "route": [route.operation, route.bucket, route.key] if route else None,
        }
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Sequence[Step], Probe], Awaitable[str]]]:
    servers: list[TestServer] = []

    async def start(steps: Sequence[Step], last: Probe = echo) -> str:
        handler: Next = chain(steps, last)
        app = web.Application()

        async def route(request: web.Request) -> web.StreamResponse:
            return await handler(exchange_for(request))

        app.router.add_route("*", r"/{tail:[\s\S]*}", route)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


VERIFIER = SigV4Verifier({ACCESS_KEY: SECRET_KEY}, region="us-east-1")


async def fetch(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers or {}) as r:
        return r.status, await r.text(), dict(r.headers)


async def test_steps_run_in_the_order_given(serve) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    class Mark(Step):
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
            seen.append(self.name)
            response = await next(exchange)
            seen.append("/" + self.name)
            return response

    base = await serve([Mark("a"), Mark("b"), Mark("c")])
    assert (await fetch("GET", f"{base}/x"))[0] == 200
    assert seen == ["a", "b", "c", "/c", "/b", "/a"]


async def test_addressing_path_and_virtual_host(serve) -> None:  # type: ignore[no-untyped-def]
    base = await serve([RenderErrors(), Addressing("s3.example")])
    _, body, _ = await fetch("GET", f"{base}/bkt/a%20key/with/slashes?list-type=2")
    assert json.loads(body)["bucket"] == "bkt" and json.loads(body)["key"] == "a key/with/slashes"
    _, body, _ = await fetch("GET", f"{base}/photos/cat.jpg", {"Host": "media.s3.example"})
    assert (json.loads(body)["bucket"], json.loads(body)["key"]) == ("media", "photos/cat.jpg")
    status, body, _ = await fetch("GET", f"{base}/bkt/a%FFb")
    assert status == 400 and "<Code>InvalidURI</Code>" in body


async def test_authentication_signed_anonymous_and_refused(serve) -> None:  # type: ignore[no-untyped-def]
    base = await serve([RenderErrors(), Addressing(None), Authentication(VERIFIER)])
    url = f"{base}/bkt/k"
    assert json.loads((await fetch("GET", url))[1])["access_key"] == "-"  # anonymous: judged later
    assert json.loads((await fetch("GET", url, sign("GET", url)))[1])["access_key"] == ACCESS_KEY
    status, body, headers = await fetch("GET", url, sign("GET", url, secret="wrong"))
    assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in body and headers["x-amz-request-id"]
    status, body, _ = await fetch("GET", url, sign("GET", url, access="nobody"))
    assert status == 403 and "<Code>InvalidAccessKeyId</Code>" in body


async def test_cors_preflight(serve) -> None:  # type: ignore[no-untyped-def]
    base = await serve([RenderErrors(), Addressing(None), Authentication(VERIFIER), Cors()])
    status, body, _ = await fetch("OPTIONS", f"{base}/bkt/k")
    assert status == 400 and "<Code>BadRequest</Code>" in body
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"}
    status, body, _ = await fetch("OPTIONS", f"{base}/bkt/k", preflight)
    assert status == 403 and "CORSResponse" in body
    assert (await fetch("GET", f"{base}/bkt/k", {"Origin": "https://app.example"}))[0] == 200  # not a preflight


async def test_routing_and_authorization(serve) -> None:  # type: ignore[no-untyped-def]
    steps = [RenderErrors(), Addressing(None), Authentication(VERIFIER), Cors(), Routing(), Authorization(lambda: None)]
    base = await serve(steps)
    url = f"{base}/bkt/k?tagging"
    got = json.loads((await fetch("PUT", url, sign("PUT", url)))[1])
    assert got["route"] == ["PutObjectTagging", "bkt", "k"] and got["operation"] == "PutObjectTagging"
    copy = f"{base}/bkt/k"
    headers = sign("PUT", copy, headers={"x-amz-copy-source": "/bkt/other"})
    assert json.loads((await fetch("PUT", copy, headers))[1])["operation"] == "CopyObject"
    # Anonymous: refused (with no store attached: nothing is public), before the API tells it anything.
    for method, path in (("GET", "/bkt/k"), ("GET", "/bkt/k?torrent"), ("PATCH", "/bkt")):
        status, body, _ = await fetch(method, base + path)
        assert status == 403 and "<Code>AccessDenied</Code>" in body, path
    status, body, _ = await fetch("GET", f"{base}/UPPER")  # never a NATS subject, whoever asks
    assert status == 400 and "<Code>InvalidBucketName</Code>" in body
    # Signed: the real answer.
    odd = f"{base}/bkt/k?torrent"
    status, body, _ = await fetch("GET", odd, sign("GET", odd))
    assert status == 501 and "<Code>NotImplemented</Code>" in body
    bad = f"{base}/UPPER"
    status, body, _ = await fetch("GET", bad, sign("GET", bad))
    assert status == 400 and "<Code>InvalidBucketName</Code>" in body


async def test_errors_render_as_s3_xml(serve) -> None:  # type: ignore[no-untyped-def]
    async def broken(exchange: Exchange) -> web.StreamResponse:
        raise ValueError("a bug of ours")

    async def raw_bytes(exchange: Exchange) -> web.StreamResponse:
        "caf\udce9".encode()
        raise AssertionError("unreachable")

    base = await serve([RenderErrors()], broken)
    status, body, headers = await fetch("GET", f"{base}/bkt/k")
    assert status == 500 and "<Code>InternalError</Code>" in body and "a bug" not in body
    assert headers["x-amz-request-id"] and headers["Content-Type"].startswith("application/xml")
    base = await serve([RenderErrors()], raw_bytes)
    status, body, _ = await fetch("GET", f"{base}/bkt/k")
    assert status == 400 and "<Code>InvalidArgument</Code>" in body
    status, body, _ = await fetch("HEAD", f"{base}/bkt/k")
    assert status == 400 and body == ""


async def test_observe_counts_and_logs_each_request(serve, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    steps = [Observe(metrics), RenderErrors(), Addressing(None), Authentication(VERIFIER), Cors(), Routing(),
             Authorization(lambda: None)]  # fmt: skip
    base = await serve(steps)
    with caplog.at_level(logging.INFO, logger="nats_s3.access"):
        url = f"{base}/bkt/k"
        await fetch("GET", url, sign("GET", url))
        await fetch("GET", url)
    lines = [r for r in caplog.records if r.getMessage() == "request"]
    assert [(r.operation, r.status, r.access_key) for r in lines] == [  # type: ignore[attr-defined]
        ("GetObject", 200, ACCESS_KEY), ("GetObject", 403, "-"),
    ]  # fmt: skip
    assert lines[1].error == "AccessDenied" and not hasattr(lines[0], "error")  # type: ignore[attr-defined]
    rendered = metrics.render().decode()
    assert 'nats_s3_requests_total{operation="GetObject",status="200"} 1.0' in rendered
    assert 'nats_s3_requests_total{operation="GetObject",status="403"} 1.0' in rendered
