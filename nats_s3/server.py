"""The aiohttp application and the gateway's lifecycle: NATS (embedded or remote), HTTP server, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import ssl
from collections.abc import Mapping
from typing import cast

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
from .observability.metrics import Metrics, StorageSnapshot, refresh_storage
from .protocol.errors import S3Error
from .protocol.sigv4 import SigV4Verifier
from .settings import Settings
from .store.collector import Collector
from .store.errors import StoreUnavailable
from .store.lease import Lease
from .store.legacy import retire_legacy_uploads
from .store.multipart import MultipartStore
from .store.nats_store import NatsStore

log = logging.getLogger("nats_s3.server")

# The request line and headers together: larger is 400 from aiohttp before any handler runs.
MAX_FIELD_SIZE = 16 * 1024
READ_BUFSIZE = 1024 * 1024
DRAIN_TIMEOUT = 5.0


class _S3RequestHandler(RequestHandler):
    """aiohttp's connection handler, with two changes: requests it refuses itself (bad framing, huge
    headers) get S3 XML, and a request being served keeps receiving its body during shutdown."""

    header_timeout: float = 0.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        # --http.read-header-timeout: a client gets this long to send a whole request head, so a
        # connection trickling headers (or sending nothing) cannot hold a slot forever.
        if self.header_timeout > 0 and self._header_timer is None:
            self._header_timer = asyncio.get_running_loop().call_later(self.header_timeout, self._header_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self._request_in_progress:
            self.force_close()

    def data_received(self, data: bytes) -> None:
        if not self._request_in_progress:
            self._arm_header_timer()
        self._data_received(data)
        if self._request_in_progress or self._messages:
            self._disarm_header_timer()

    def _data_received(self, data: bytes) -> None:
        # aiohttp drops all input once a connection is marked closing, which would cut every upload in
        # flight at SIGTERM. Keep feeding the current request's body; no new request is started, because
        # the connection still closes once this one is answered.
        if self._request_in_progress and (self._close or self._force_close):
            closing = (self._close, self._force_close)
            self._close = self._force_close = False
            try:
                super().data_received(data)
            finally:
                self._close, self._force_close = closing
            return
        super().data_received(data)

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
    header_timeout = 0.0

    def __call__(self) -> RequestHandler:
        handler = _S3RequestHandler(self, loop=self._loop, **self._kwargs)
        handler.header_timeout = self.header_timeout
        return handler


def create_app(services: Services, metrics: Metrics, *, serve_metrics: bool = True) -> web.Application:
    gateway = Gateway(services, metrics)
    # Bodies are streamed by handlers; never let aiohttp buffer or decompress them.
    app = web.Application(client_max_size=0, handler_args={"auto_decompress": False})
    app.router.add_get("/healthz", gateway.healthz, expect_handler=lenient_expect)
    app.router.add_get("/readyz", gateway.readyz, expect_handler=lenient_expect)
    if serve_metrics:
        app.router.add_get("/metrics", gateway.metrics_endpoint, expect_handler=lenient_expect)
    # [\s\S]: a decoded path may hold a newline ("%0a"), which "." would not match (aiohttp's plain 404).
    app.router.add_route("*", r"/{tail:[\s\S]*}", gateway.handle, expect_handler=gateway.expect_continue)
    app["gateway"] = gateway
    return app


def metrics_app(gateway: Gateway) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", gateway.metrics_endpoint, expect_handler=lenient_expect)
    return app


async def lenient_expect(request: web.Request) -> None:
    """`Expect` on the operational endpoints: 100-continue is answered, anything else ignored (aiohttp
    would answer a plain-text 417)."""
    if request.version >= (1, 1) and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load --tls.cert/--tls.key: {exc}") from None
    return context


class TlsConfigError(Exception):
    """The TLS certificate or key could not be loaded (message is one line)."""


async def connect_nats(settings: Settings, servers: list[str], metrics: Metrics) -> NatsClient:
    nc = NatsClient()

    async def on_disconnect() -> None:
        metrics.nats_connected.set(0)
        if nc.is_draining or nc.is_closed:
            return  # our own shutdown, not an outage
        log.warning("disconnected from NATS")

    async def on_reconnect() -> None:
        metrics.nats_connected.set(1)
        metrics.nats_reconnects.inc()
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
    metrics.nats_connected.set(1)
    return nc


INDEX_PRUNE_INTERVAL = 60.0


def collector_lease_ttl(interval: float) -> float:
    """How long the collector lease outlives a holder that stopped renewing it: 30 s, shorter with a
    short --gc.interval (tests), so another gateway takes over quickly."""
    return min(30.0, max(5.0, 10 * interval))


async def prune_indexes(store: NatsStore) -> None:
    """Now and then, drop listing indexes this gateway no longer needs (idle, or of deleted buckets)."""
    while True:
        await asyncio.sleep(INDEX_PRUNE_INTERVAL * random.uniform(0.5, 1.0))
        with contextlib.suppress(Exception):
            await store.index.prune()


async def serve(settings: Settings, secrets: Mapping[str, str], stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM): embedded NATS if no servers are given.

    Shutdown order: stop accepting, let in-flight requests finish (up to --shutdown-timeout), drain
    NATS, stop the embedded nats-server last.
    """
    ssl_context = tls_context(settings)
    metrics = Metrics()
    embedded: EmbeddedNatsServer | None = None
    servers = settings.nats_servers
    if not servers:
        embedded = EmbeddedNatsServer(settings.data_dir)
        await embedded.start()
        servers = [embedded.url]
    runners: list[web.AppRunner] = []
    tasks: list[asyncio.Task[None]] = []
    nc: NatsClient | None = None
    try:
        nc = await connect_nats(settings, servers, metrics)
        store = NatsStore(
            nc, replicas=settings.nats_replicas, chunk_size=settings.chunk_size, claim_refresh=settings.gc_grace / 3
        )
        await store.start()
        try:
            await retire_legacy_uploads(store)
        except StoreUnavailable as exc:
            log.warning("could not retire the multipart records of an older gateway", extra={"error": str(exc)})
        multipart = MultipartStore(store)
        collector = Collector(
            store,
            multipart,
            Lease(store.configs.records, "collector", collector_lease_ttl(settings.gc_interval)),
            grace=settings.gc_grace,
            multipart_expiry=settings.multipart_expiry,
        )
        metrics.watch_collector(collector.stats)
        services = Services(
            store=store, verifier=SigV4Verifier(secrets, region=settings.region), settings=settings, multipart=multipart
        )
        app = create_app(services, metrics, serve_metrics=settings.metrics_listen is None)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=settings.http_idle_timeout,
            max_field_size=MAX_FIELD_SIZE,
            max_line_size=MAX_FIELD_SIZE,
            read_bufsize=READ_BUFSIZE,
            shutdown_timeout=settings.shutdown_timeout,
        )
        runners.append(runner)
        await runner.setup()
        if isinstance(runner.server, Server):
            runner.server.__class__ = _S3Server
            cast(_S3Server, runner.server).header_timeout = settings.http_read_header_timeout
        await web.TCPSite(
            runner, settings.listen_host, settings.listen_port, reuse_address=True, ssl_context=ssl_context
        ).start()
        if settings.metrics_listen is not None:
            metrics_runner = web.AppRunner(metrics_app(app["gateway"]), access_log=None, handle_signals=False)
            runners.append(metrics_runner)
            await metrics_runner.setup()
            host, _, port = settings.metrics_listen.rpartition(":")
            await web.TCPSite(metrics_runner, host.strip("[]") or "0.0.0.0", int(port), reuse_address=True).start()
        log.info(
            "nats-s3 listening",
            extra={"listen": settings.listen, "tls": ssl_context is not None, "nats": ",".join(servers)},
        )
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        tasks.append(loop.create_task(collector.run(settings.gc_interval)))
        tasks.append(loop.create_task(prune_indexes(store)))
        tasks.append(loop.create_task(refresh_storage(metrics, _usage_reader(store, multipart))))
        await stop.wait()
        log.info("shutting down", extra={"grace_seconds": settings.shutdown_timeout})
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, DRAIN_TIMEOUT)
        for runner in runners:
            # Closes the listeners first, then waits for in-flight requests up to shutdown_timeout.
            await runner.cleanup()
        if nc is not None:
            with contextlib.suppress(Exception):
                await store.close()
            # drain() waits on the server; with NATS gone it would wait forever.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), DRAIN_TIMEOUT)
            with contextlib.suppress(Exception):
                await nc.close()
        if embedded is not None:
            await embedded.stop()


def _usage_reader(store: NatsStore, multipart: MultipartStore):  # type: ignore[no-untyped-def]
    async def read(snapshot: StorageSnapshot) -> None:
        usage = await store.usage()
        snapshot.bucket_bytes = {bucket: size for bucket, (size, _) in usage.items()}
        snapshot.bucket_objects = {bucket: count for bucket, (_, count) in usage.items() if count is not None}
        snapshot.uploads_in_progress = await multipart.count_in_progress()

    return read
