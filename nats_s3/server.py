"""The aiohttp application and the gateway's lifecycle: NATS (embedded or remote), HTTP server, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Mapping
from datetime import timedelta

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from nats.aio.client import Client as NatsClient

from .api.context import error_response, new_request_id
from .api.gateway import Gateway
from .api.services import Services
from .embedded import EmbeddedNatsServer
from .protocol.errors import S3Error
from .protocol.sigv4 import SigV4Verifier
from .settings import Settings
from .store.multipart import MultipartStore
from .store.nats_store import NatsStore

log = logging.getLogger("nats_s3.server")

# The request line and headers together: larger is 400 from aiohttp before any handler runs.
MAX_FIELD_SIZE = 16 * 1024
READ_BUFSIZE = 1024 * 1024
SHUTDOWN_TIMEOUT = 10.0
DRAIN_TIMEOUT = 5.0


class _S3RequestHandler(RequestHandler):
    """aiohttp's connection handler, but requests it refuses itself (bad framing, huge headers) get S3 XML."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0 or status >= 500:
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            err = S3Error("RequestHeaderSectionTooLarge", extra={"MaxSizeAllowed": str(MAX_FIELD_SIZE)})
        else:
            err = S3Error("InvalidRequest", "The request could not be parsed as HTTP/1.1.", status=status)
        resp = error_response(err, request, new_request_id())  # type: ignore[arg-type]
        resp.force_close()
        return resp


class _S3Server(Server):
    def __call__(self) -> RequestHandler:
        return _S3RequestHandler(self, loop=self._loop, **self._kwargs)


def create_app(services: Services) -> web.Application:
    gateway = Gateway(services)
    # Bodies are streamed by handlers; never let aiohttp buffer or decompress them.
    app = web.Application(client_max_size=0, handler_args={"auto_decompress": False})
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_route("*", "/{tail:.*}", gateway.handle, expect_handler=gateway.expect_continue)
    app["gateway"] = gateway
    return app


async def connect_nats(settings: Settings, servers: list[str]) -> NatsClient:
    nc = NatsClient()

    async def on_disconnect() -> None:
        if nc.is_draining or nc.is_closed:
            return  # our own shutdown, not an outage
        log.warning("disconnected from NATS")

    async def on_reconnect() -> None:
        log.info("reconnected to NATS")

    async def on_error(exc: Exception) -> None:
        log.warning("NATS error", extra={"error": repr(exc)})

    options: dict[str, object] = {
        "servers": servers,
        "name": "nats-s3",
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        "pending_size": 64 * 1024 * 1024,
    }
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password or ""
    if settings.nats_token:
        options["token"] = settings.nats_token
    if settings.nats_nkey_file:
        options["nkeys_seed"] = str(settings.nats_nkey_file)
    if settings.nats_creds_file:
        options["user_credentials"] = str(settings.nats_creds_file)
    await nc.connect(**options)  # type: ignore[arg-type]
    return nc


async def expire_uploads(multipart: MultipartStore, max_age: float) -> None:
    """Abort abandoned multipart uploads now and then; every gateway sweeps, the work is idempotent."""
    interval = min(max(max_age / 2, 1.0), 3600.0)
    while True:
        await asyncio.sleep(interval * random.uniform(0.5, 1.0))
        try:
            aborted = await multipart.expire(timedelta(seconds=max_age))
            if aborted:
                log.info("expired multipart uploads", extra={"aborted": aborted})
        except Exception as exc:
            log.warning("multipart expiry sweep failed", extra={"error": repr(exc)})


async def serve(settings: Settings, secrets: Mapping[str, str], stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM): embedded NATS if no servers are given."""
    embedded: EmbeddedNatsServer | None = None
    servers = settings.nats_servers
    if not servers:
        embedded = EmbeddedNatsServer(settings.data_dir)
        await embedded.start()
        servers = [embedded.url]
    runner: web.AppRunner | None = None
    nc: NatsClient | None = None
    try:
        nc = await connect_nats(settings, servers)
        store = NatsStore(nc, replicas=settings.nats_replicas, chunk_size=settings.chunk_size)
        multipart = MultipartStore(store)
        services = Services(store=store, verifier=SigV4Verifier(secrets), settings=settings, multipart=multipart)
        app = create_app(services)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=settings.http_idle_timeout,
            max_field_size=MAX_FIELD_SIZE,
            max_line_size=MAX_FIELD_SIZE,
            read_bufsize=READ_BUFSIZE,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        if isinstance(runner.server, Server):
            runner.server.__class__ = _S3Server
        site = web.TCPSite(runner, settings.listen_host, settings.listen_port, reuse_address=True)
        await site.start()
        log.info("nats-s3 listening", extra={"listen": settings.listen, "nats": ",".join(servers)})
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        sweeper = asyncio.get_running_loop().create_task(expire_uploads(multipart, settings.multipart_expiry))
        await stop.wait()
        log.info("shutting down")
        sweeper.cancel()
    finally:
        if runner is not None:
            await runner.cleanup()
        if nc is not None:
            # drain() waits on the server; with NATS gone it would wait forever.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), DRAIN_TIMEOUT)
            with contextlib.suppress(Exception):
                await nc.close()
        if embedded is not None:
            await embedded.stop()
