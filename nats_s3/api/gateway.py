"""The S3 front door: the chain of steps every S3 request goes through (pipeline/), and the operational
endpoints (/healthz, /readyz, /metrics)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..auth.principals import Principals
from ..crypto.master_keys import MasterKeyHolder
from ..observability.metrics import Metrics
from ..protocol.errors import S3Error
from ..protocol.sigv4 import SigV4Verifier
from ..settings import Settings
from .context import error_response, new_request_id
from .pipeline.addressing import Addressing, address
from .pipeline.authentication import Authentication, authenticate
from .pipeline.authorization import Authorization
from .pipeline.cors import Cors
from .pipeline.dispatch import Dispatch
from .pipeline.errors import RenderErrors
from .pipeline.exchange import Next, Step, chain
from .pipeline.observe import Observe, exchange_for
from .pipeline.routing import Routing
from .services import Services


class Gateway:
    """Serves from the moment the gateway listens: until NATS is reached and the store is up (`attach`),
    S3 requests get 503 and /readyz says why."""

    def __init__(self, settings: Settings, verifier: SigV4Verifier, metrics: Metrics) -> None:
        self.settings = settings
        self.verifier = verifier
        self.metrics = metrics
        self.services: Services | None = None
        self.principals = Principals()  # who each key is; replaced whole on a credentials reload
        self.master_keys = MasterKeyHolder()  # SSE-S3 / SSE-KMS keys; replaced whole on a reload
        self.not_ready = "starting"
        # What /metrics answers: this process's figures, or (--workers N) the whole group's.
        self.metrics_view: Callable[[], Awaitable[bytes]] = self._own_metrics
        steps: list[Step] = [
            Observe(metrics),
            RenderErrors(),
            Addressing(settings.domain),
            Authentication(verifier),
            Cors(lambda: self.services),
            Routing(),
            Authorization(lambda: self.services),
        ]
        self._chain: Next = chain(steps, Dispatch(lambda: self.services, lambda: self.not_ready))

    def attach(self, services: Services) -> None:
        self.services = services

    def detach(self, reason: str) -> None:
        self.services = None
        self.not_ready = reason

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return await self._chain(exchange_for(request))

    async def expect_continue(self, request: web.Request) -> web.StreamResponse | None:
        """Answer `Expect: 100-continue` only once the header signature checks out (the steps reuse what
        was worked out here)."""
        exchange = exchange_for(request)
        try:
            address(exchange, self.settings.domain)
            if request.method != "OPTIONS":
                authenticate(exchange, self.verifier)
        except (S3Error, UnicodeError) as exc:
            err = exc if isinstance(exc, S3Error) else S3Error("InvalidURI", "Couldn't parse the specified URI.")
            resp = error_response(err, request, exchange.request_id)
            resp.force_close()
            return resp
        if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0
        return None

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness: the process serves requests (NATS state is /readyz's business)."""
        return web.json_response({"status": "ok"}, headers={"x-amz-request-id": new_request_id()})

    async def readyz(self, request: web.Request) -> web.Response:
        """Readiness: NATS connected, JetStream answering, the gateway's KV bucket present."""
        reason = self.not_ready if self.services is None else await self.services.readiness()
        return web.json_response(
            {"status": "ready" if reason is None else "not ready", **({"reason": reason} if reason else {})},
            status=200 if reason is None else 503,
            headers={"x-amz-request-id": new_request_id()},
        )

    async def _own_metrics(self) -> bytes:
        return self.metrics.render()

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        token = self.settings.metrics_token
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.Response(status=401, text="unauthorized\n", headers={"WWW-Authenticate": "Bearer"})
        return web.Response(
            body=await self.metrics_view(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
