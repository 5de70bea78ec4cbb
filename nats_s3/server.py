"""The aiohttp application and the gateway's lifecycle: NATS (embedded or remote), HTTP server, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar, cast

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from nats.aio.client import Client as NatsClient

from . import __version__
from .api.context import error_response, new_request_id
from .api.gateway import Gateway
from .api.services import Services
from .auth.credentials import CredentialsError, read_credentials_file
from .crypto.master_keys import KeyFileError, MasterKeys
from .embedded import EmbeddedNatsServer, private_nats
from .nats_auth import nats_auth_options
from .observability.metrics import Metrics, StorageSnapshot, refresh_storage
from .protocol.errors import S3Error
from .protocol.sigv4 import SigV4Verifier
from .settings import Settings
from .startup_errors import NatsUnreachable
from .store.collector import Collector
from .store.errors import StoreUnavailable
from .store.lease import Lease
from .store.legacy import retire_legacy_uploads
from .store.multipart import MultipartStore
from .store.nats_store import NatsStore
from .store.placement import load_placement_map
from .store.replies import replies_for
from .tls import tls_context
from .workers.metrics_view import group_metrics
from .workers.role import WorkerRole

log = logging.getLogger("nats_s3.server")
T = TypeVar("T")

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
            self._header_timer = self._loop.call_later(self.header_timeout, self._header_timed_out)

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


def create_app(gateway: Gateway, *, serve_metrics: bool = True) -> web.Application:
    # Bodies are streamed by handlers; never let aiohttp buffer or decompress them.
    app = web.Application(client_max_size=0, handler_args={"auto_decompress": False})
    app.router.add_get("/healthz", gateway.healthz, expect_handler=lenient_expect)
    app.router.add_get("/readyz", gateway.readyz, expect_handler=lenient_expect)
    if serve_metrics:
        app.router.add_get("/metrics", gateway.metrics_endpoint, expect_handler=lenient_expect)
    # [\s\S]: a decoded path may hold a newline ("%0a"), which "." would not match (aiohttp's plain 404).
    app.router.add_route("*", r"/{tail:[\s\S]*}", gateway.handle, expect_handler=gateway.expect_continue)
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


def _nats_options(
    settings: Settings,
    servers: list[str],
    metrics: Metrics,
    nc: NatsClient,
    on_connect_error: Callable[[Exception], None],
    first_connect_done: asyncio.Event,
) -> dict[str, object]:
    async def on_disconnect() -> None:
        metrics.nats_connected.set(0)
        if nc.is_draining or nc.is_closed:
            return  # our own shutdown, not an outage
        # Answers to what was sent on the lost connection may never come: requests in flight get
        # their 503 now, not after their timeouts, and new ones go out once nats-py reconnected.
        replies_for(nc).fail_all("the connection to NATS was lost")
        log.warning("disconnected from NATS")

    async def on_reconnect() -> None:
        metrics.nats_connected.set(1)
        metrics.nats_reconnects.inc()
        log.info("reconnected to NATS")

    async def on_error(exc: Exception) -> None:
        if not first_connect_done.is_set() and not nc.is_closed:  # still reaching NATS for the first time
            on_connect_error(exc)
        else:
            log.warning("NATS error", extra={"error": repr(exc)})

    options: dict[str, object] = {
        "servers": servers,
        "name": "nats-s3",
        # nats-py keeps trying, the first connect included; --nats.connect-timeout bounds that one.
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "allow_reconnect": True,
        "connect_timeout": CONNECT_ATTEMPT_TIMEOUT,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": on_reconnect,
        "error_cb": on_error,
        "pending_size": 64 * 1024 * 1024,
    }
    options.update(nats_auth_options(settings))
    return options


CONNECT_ATTEMPT_TIMEOUT = 2.0


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def connect_nats(
    settings: Settings, servers: list[str], metrics: Metrics, on_attempt: Callable[[str], None] | None = None
) -> NatsClient:
    """Connect, trying until it works, each failed attempt logged with its cause and the URLs tried;
    the caller bounds the whole with --nats.connect-timeout. `on_attempt` hears the state in a line."""
    shown = ",".join(servers)
    nc = NatsClient()
    attempts = 0
    connected = asyncio.Event()

    def failed(exc: Exception) -> None:
        nonlocal attempts
        attempts += 1
        state = f"cannot connect to NATS at {shown} (attempt {attempts}): {_describe(exc)}"
        log.warning(f"connecting to {shown} (attempt {attempts + 1})", extra={"previous_error": _describe(exc)})
        if on_attempt is not None:
            on_attempt(state)

    log.info(f"connecting to {shown} (attempt 1)")
    if on_attempt is not None:
        on_attempt(f"connecting to NATS at {shown} (attempt 1)")
    try:
        await nc.connect(**_nats_options(settings, servers, metrics, nc, failed, connected))  # type: ignore[arg-type]
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)
        raise
    connected.set()
    metrics.nats_connected.set(1)
    log.info(f"connected to {nc.connected_url.netloc if nc.connected_url else shown}")
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


EXAMPLE_CREDENTIALS = {"nats-s3-admin": "nats-s3-secret-change-me"}


def _endpoint_url(settings: Settings, tls: bool) -> str:
    host = settings.listen_host
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{settings.listen_port}"


def own_metrics_app(metrics: Metrics) -> web.Application:
    """A worker's own figures, for its siblings' /metrics (on a socket only the group can reach)."""

    async def own(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", own)
    return app


async def _listen(
    gateway: Gateway,
    settings: Settings,
    ssl_context: ssl.SSLContext | None,
    runners: list[web.AppRunner],
    worker: WorkerRole | None = None,
) -> None:
    """Open the S3 port (and the metrics port): from here on /healthz answers and S3 requests get 503
    until the store is attached. Each runner joins `runners` as soon as it exists, so the caller cleans
    up whatever was opened when a later port fails to bind. A worker shares its ports with its siblings
    (SO_REUSEPORT: the kernel spreads new connections over them) and answers its own metrics on its
    group socket."""
    shared = worker is not None
    app = create_app(gateway, serve_metrics=settings.metrics_listen is None)
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
        runner,
        settings.listen_host,
        settings.listen_port,
        reuse_address=True,
        reuse_port=shared,
        ssl_context=ssl_context,
    ).start()
    if settings.metrics_listen is not None:
        metrics_runner = web.AppRunner(metrics_app(gateway), access_log=None, handle_signals=False)
        runners.append(metrics_runner)
        await metrics_runner.setup()
        host, _, port = settings.metrics_listen.rpartition(":")
        await web.TCPSite(
            metrics_runner, host.strip("[]") or "0.0.0.0", int(port), reuse_address=True, reuse_port=shared
        ).start()
    if worker is not None:
        own_runner = web.AppRunner(own_metrics_app(gateway.metrics), access_log=None, handle_signals=False)
        runners.append(own_runner)
        await own_runner.setup()
        await web.UnixSite(own_runner, str(worker.metrics_socket(worker.index))).start()


async def _until(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """`work`, unless `stop` is set first (then it is cancelled and None returned)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


class _NatsSession:
    """One NATS connection and everything built on it: the store, the collector and the background work.
    Rebuilt whole if nats-py closes the client for good (it does on any -ERR from the server)."""

    def __init__(self, nc: NatsClient, store: NatsStore) -> None:
        self.nc = nc
        self.store = store
        self.tasks: list[asyncio.Task[None]] = []

    async def close(self) -> None:
        """Bounded in time whatever state NATS is in (a closed client makes every wait a timeout)."""
        gone = self.nc.is_closed or not self.nc.is_connected  # nothing to drain into
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=DRAIN_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.close(), 1.0 if gone else DRAIN_TIMEOUT)
        if gone:
            return
        # drain() waits on the server; with NATS gone it would wait forever.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), DRAIN_TIMEOUT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), DRAIN_TIMEOUT)


async def _open_session(
    settings: Settings, servers: list[str], metrics: Metrics, gateway: Gateway, stop: asyncio.Event, first: bool
) -> _NatsSession | None:
    """Connect and start the store; None if `stop` came first. NatsUnreachable past the connect timeout."""

    def attempt(state: str) -> None:
        gateway.not_ready = state

    connecting = connect_nats(settings, servers, metrics, attempt)
    timeout = settings.nats_connect_timeout if first else 0.0
    try:
        nc = await _until(stop, asyncio.wait_for(connecting, timeout) if timeout else connecting)
    except TimeoutError:
        raise NatsUnreachable(
            f"NATS at {','.join(servers)} not reached within --nats.connect-timeout ({timeout:g}s): {gateway.not_ready}"
        ) from None
    if nc is None:
        return None
    gateway.not_ready = "loading bucket configuration from NATS"
    store = NatsStore(
        nc,
        replicas=settings.nats_replicas,
        chunk_size=settings.chunk_size,
        claim_refresh=settings.gc_grace / 3,
        index_snapshot_max_age=settings.gc_grace / 2,
        read_cache_bytes=settings.read_cache_size,
        total_quota_bytes=settings.quota_total,
        placements=load_placement_map(settings.placement_file) if settings.placement_file else None,
    )
    session = _NatsSession(nc, store)
    try:
        started = await _until(stop, _start_store_retrying(store, gateway, timeout))
    except BaseException:
        await session.close()
        raise
    if started is None:
        await session.close()
        return None
    multipart = MultipartStore(store)
    collector = Collector(
        store,
        multipart,
        Lease(store.configs.records, "collector", collector_lease_ttl(settings.gc_interval)),
        grace=settings.gc_grace,
        multipart_expiry=settings.multipart_expiry,
    )
    metrics.watch_collector(collector.stats)
    if store.read_cache is not None:
        metrics.watch_read_cache(store.read_cache)
    metrics.watch_events(store.events)
    gateway.attach(
        Services(
            store=store,
            verifier=gateway.verifier,
            settings=settings,
            multipart=multipart,
            principals=gateway.principals,
            master_keys=gateway.master_keys,
        )
    )
    loop = asyncio.get_running_loop()
    session.tasks.append(loop.create_task(collector.run(settings.gc_interval)))
    session.tasks.append(loop.create_task(prune_indexes(store)))
    session.tasks.append(loop.create_task(refresh_storage(metrics, _usage_reader(store, multipart))))
    log.info("ready", extra={"nats": ",".join(servers)})
    return session


CLOSED_CHECK_INTERVAL = 0.5


async def _until_closed(nc: NatsClient, stop: asyncio.Event) -> bool:
    """True when the client is closed for good (not by us), False when `stop` is set."""
    while not stop.is_set():
        if nc.is_closed:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CLOSED_CHECK_INTERVAL)
    return False


async def serve(
    settings: Settings,
    secrets: Mapping[str, str],
    stop: asyncio.Event | None = None,
    *,
    on_ready: Callable[[Gateway], None] | None = None,
    worker: WorkerRole | None = None,
) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM): embedded NATS if no servers are given.

    The port opens first, so /healthz answers while NATS is still being reached. Shutdown order: stop
    accepting, let in-flight requests finish (up to --shutdown-timeout), close NATS (bounded in time),
    stop the embedded nats-server last. A second signal exits at once. `on_ready` (embedding, tests)
    hears the gateway each time its store is attached. A `worker` of a group (--workers N) is given its
    NATS by the supervisor, shares the ports, and stops when the supervisor goes.
    """
    ssl_context = tls_context(settings)
    metrics = Metrics()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    lock, embedded, servers = private_nats(settings.data_dir, settings.nats_servers)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            if embedded is not None:
                embedded.kill_now()
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, int(sig))
    # The verifier reads `live_secrets` on every request: a reload updates it in place.
    live_secrets = dict(secrets)
    regions = frozenset(load_placement_map(settings.placement_file)) if settings.placement_file else frozenset()
    verifier = SigV4Verifier(live_secrets, region=settings.region, other_regions=regions)
    gateway = Gateway(settings, verifier, metrics)
    if settings.credentials_file is not None:
        with contextlib.suppress(CredentialsError):
            gateway.principals.replace(read_credentials_file(settings.credentials_file).credentials)
    if settings.sse_keys_file is not None:
        gateway.master_keys.current = MasterKeys.load(settings.sse_keys_file)  # checked by the CLI already
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, reload_files, settings, live_secrets, gateway)
    if worker is not None:
        role = worker
        gateway.metrics_view = lambda: group_metrics(role, metrics.render())
        worker.watch_lifeline(loop, stop.set)
    runners: list[web.AppRunner] = []
    session: _NatsSession | None = None
    try:
        # A worker other than the group's first takes connections only once it can serve them: its
        # siblings serve meanwhile, instead of it answering 503 (at start, and when it is restarted).
        listening = worker is None or worker.listen_early
        if listening:
            await _listen(gateway, settings, ssl_context, runners, worker)
            _log_start(settings, secrets, ssl_context is not None, embedded, servers)
        if embedded is not None:
            gateway.not_ready = "starting the embedded nats-server"
            await embedded.start()
        first = True
        while not stop.is_set():
            session = await _open_session(settings, servers, metrics, gateway, stop, first)
            first = False
            if session is None:
                break
            if on_ready is not None:
                on_ready(gateway)
            if not listening:
                await _listen(gateway, settings, ssl_context, runners, worker)
                _log_start(settings, secrets, ssl_context is not None, embedded, servers)
                listening = True
            if worker is not None:
                worker.announce_ready()
            if not await _until_closed(session.nc, stop):
                break
            # nats-py closed the shared client for good: every request would fail until a restart.
            log.error("the NATS connection was closed; reconnecting", extra={"nats": ",".join(servers)})
            gateway.detach("the NATS connection was closed; reconnecting")
            old, session = session, None
            await old.close()
        log.info("shutting down", extra={"grace_seconds": settings.shutdown_timeout})
    finally:
        if session is not None:
            for task in session.tasks:  # background work stops before requests are drained
                task.cancel()
        for runner in runners:
            # Closes the listeners first, then waits for in-flight requests up to shutdown_timeout.
            await runner.cleanup()
        if session is not None:
            await session.close()
        if embedded is not None:
            await embedded.stop()
        if lock is not None:
            lock.release()
        if worker is not None:
            worker.stop_watching(loop)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


STORE_START_BACKOFF_MAX = 10.0


async def _start_store_retrying(store: NatsStore, gateway: Gateway, timeout: float) -> bool:
    """Start the store, again and again while JetStream does not answer (no quorum yet, a leader being
    elected, a server without -js): like reaching NATS, bounded by the connect timeout on the first try."""
    deadline = asyncio.get_running_loop().time() + timeout if timeout else None
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        try:
            return await _start_store(store)
        except StoreUnavailable as exc:
            gateway.not_ready = f"JetStream is not available (attempt {attempt}): {exc}"
            log.warning("JetStream is not available; retrying", extra={"attempt": attempt, "error": str(exc)})
            if deadline is not None and asyncio.get_running_loop().time() + delay > deadline:
                raise NatsUnreachable(
                    f"JetStream not available within --nats.connect-timeout ({timeout:g}s): {exc}"
                ) from None
            with contextlib.suppress(Exception):
                await store.configs.close()  # a watch a failed start left behind (the rest is reused)
            await asyncio.sleep(delay)
            delay = min(delay * 2, STORE_START_BACKOFF_MAX)


def reload_files(settings: Settings, live_secrets: dict[str, str], gateway: Gateway) -> None:
    """SIGHUP: the credentials file and the SSE key file, read again."""
    reload_credentials(settings, live_secrets, gateway)
    reload_master_keys(settings, gateway)


def reload_master_keys(settings: Settings, gateway: Gateway) -> None:
    """A key file that does not load keeps the keys in use (objects sealed under them stay readable)."""
    path = settings.sse_keys_file
    if path is None:
        return
    try:
        keys = MasterKeys.load(path)
    except KeyFileError as exc:
        log.error("SSE keys not reloaded; the ones in use stay", extra={"error": str(exc)})
        return
    gateway.master_keys.current = keys
    log.info("SSE keys reloaded", extra={"sse_keys": str(path), "keys": len(keys.keys), "default": keys.default_id})


def reload_credentials(settings: Settings, live_secrets: dict[str, str], gateway: Gateway) -> None:
    """SIGHUP: read the credentials file again. A file that does not load keeps the credentials in use,
    and the log says why; a good one replaces keys and principals at once, for the next request."""
    path = settings.credentials_file
    if path is None:
        return
    try:
        parsed = read_credentials_file(path)
    except CredentialsError as exc:
        log.error("credentials not reloaded; the ones in use stay", extra={"error": str(exc)})
        return
    fresh = {c.access_key: c.secret_key for c in parsed.credentials}
    live_secrets.clear()
    live_secrets.update(fresh)
    gateway.principals.replace(parsed.credentials)
    log.info("credentials reloaded", extra={"credentials_file": str(path), "access_keys": len(fresh)})


async def _start_store(store: NatsStore) -> bool:
    await store.start()
    try:
        await retire_legacy_uploads(store)
    except StoreUnavailable as exc:
        log.warning("could not retire the multipart records of an older gateway", extra={"error": str(exc)})
    return True


def _log_start(
    settings: Settings, secrets: Mapping[str, str], tls: bool, embedded: EmbeddedNatsServer | None, servers: list[str]
) -> None:
    nats = (
        {"nats": "embedded", "nats_url": embedded.url, "data_dir": str(settings.data_dir.resolve())}
        if embedded is not None
        else {"nats": "external", "nats_url": ",".join(servers)}
    )
    log.info(
        f"nats-s3 {__version__} listening on {_endpoint_url(settings, tls)}",
        extra={
            "version": __version__,
            "endpoint": _endpoint_url(settings, tls),
            **nats,
            "region": settings.region,
            "credentials_file": str(settings.credentials_file),
            "access_keys": len(secrets),
        },
    )
    if any(secrets.get(key) == secret for key, secret in EXAMPLE_CREDENTIALS.items()):
        log.warning(
            "the example credentials are in use: anyone who has read the README can use this gateway; "
            "write your own credentials file for --s3.credentials"
        )


def _usage_reader(store: NatsStore, multipart: MultipartStore):  # type: ignore[no-untyped-def]
    async def read(snapshot: StorageSnapshot) -> None:
        usage = await store.usage()
        snapshot.bucket_bytes = {bucket: size for bucket, (size, _) in usage.items()}
        snapshot.bucket_objects = {bucket: count for bucket, (_, count) in usage.items() if count is not None}
        snapshot.bucket_uploads = await multipart.in_progress_by_bucket()
        snapshot.uploads_in_progress = sum(snapshot.bucket_uploads.values())
        quotas = {b: store.configs.get(b).quota for b in usage}
        snapshot.bucket_quotas = {b: (q.max_bytes, q.max_objects) for b, q in quotas.items() if q is not None}
        snapshot.total_quota_bytes = store.quotas.total_max_bytes

    return read
