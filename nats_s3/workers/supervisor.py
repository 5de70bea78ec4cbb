"""The supervisor of `--workers N`: it serves no request itself. It holds the data directory and the
embedded nats-server, reserves the ports, starts N worker processes (`python -m nats_s3.workers.child`),
forwards SIGHUP, drains them all on SIGTERM before stopping NATS, and starts again a worker that dies.

A worker that fails while the group is first starting (NATS not reached within --nats.connect-timeout,
a port it cannot bind) fails the whole gateway with its exit code, as one process would: restarting it
would only loop. One that dies later (killed, crashed) is restarted, with a backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .. import __version__
from ..embedded import private_nats
from ..settings import Settings
from ..tls import tls_context
from .role import ROLE_ENV, WorkerRole

log = logging.getLogger("nats_s3.supervisor")

RESTART_BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0  # a worker that lived this long before dying restarts without waiting long
# Beyond --shutdown-timeout, what a worker's own shutdown takes (closing NATS is bounded in time).
DRAIN_MARGIN = 20.0


class WorkerFailed(Exception):
    def __init__(self, index: int, code: int) -> None:
        super().__init__(f"worker {index} exited with {code} while starting")
        self.index = index
        self.code = code


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, held for the supervisor's life: it
    fixes the port when 0 is asked for, and keeps it ours while a worker is being restarted.

    Before that, the port is bound once without SO_REUSEPORT, so that a port already in use is the same
    error as with one process; SO_REUSEPORT alone would quietly share it with any listener of our user."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    if port != 0:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class WorkerGroup:
    """N worker processes, each kept running by a task of its own until the group stops."""

    def __init__(self, settings: Settings, count: int, run_dir: Path) -> None:
        self.settings = settings
        self.count = count
        self.run_dir = run_dir
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.ready = asyncio.Event()  # every worker has attached its store once
        self._ready_count = 0
        self._stopping = False
        # Only the supervisor holds the write end (os.pipe is close-on-exec): when it dies, however it
        # dies, every worker reads EOF and stops.
        self._lifeline_read, self._lifeline_write = os.pipe()

    async def _spawn(self, index: int, first: bool) -> asyncio.subprocess.Process:
        ready_read, ready_write = os.pipe()
        role = WorkerRole(
            index=index,
            count=self.count,
            run_dir=self.run_dir,
            lifeline_fd=self._lifeline_read,
            ready_fd=ready_write,
            listen_early=first and index == 0,
            settings=self.settings,
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "nats_s3.workers.child",
                env={**os.environ, ROLE_ENV: role.model_dump_json()},
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(self._lifeline_read, ready_write),
                # Its own session: Ctrl-C reaches the supervisor alone, which drains the workers in order.
                start_new_session=True,
            )
        except BaseException:
            os.close(ready_read)
            raise
        finally:
            os.close(ready_write)
        self.procs[index] = proc
        self._watch_ready(ready_read)
        return proc

    def _watch_ready(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        first = not self.ready.is_set()

        def readable() -> None:
            try:
                data = os.read(fd, 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data and first:
                self._ready_count += 1
                if self._ready_count == self.count and not self.ready.is_set():
                    log.info(f"all {self.count} workers ready")
                    self.ready.set()
            loop.remove_reader(fd)
            os.close(fd)

        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)

    async def _keep(self, index: int) -> None:
        """Run worker `index` until the group stops, starting it again when it dies."""
        loop = asyncio.get_running_loop()
        delay = 1.0
        first = True
        while not self._stopping:
            started = loop.time()
            proc = await self._spawn(index, first)
            first = False
            log.info(f"worker {index} started", extra={"worker_pid": proc.pid})
            code = await proc.wait()
            if self._stopping:
                return
            if not self.ready.is_set():
                raise WorkerFailed(index, code)
            if loop.time() - started >= HEALTHY_RUN:
                delay = 1.0
            log.error(
                f"worker {index} exited with {code}; starting it again in {delay:g}s", extra={"worker_pid": proc.pid}
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF_MAX)

    async def run(self, stop: asyncio.Event) -> int:
        """Until `stop` (0) or a worker failing at start (its exit code)."""
        keepers = [asyncio.create_task(self._keep(i)) for i in range(self.count)]
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({stopped, *keepers}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopped and task.exception() is not None:
                    failure = task.exception()
                    if isinstance(failure, WorkerFailed):
                        log.error(str(failure))
                        return failure.code or 1
                    raise failure  # type: ignore[misc]
            return 0
        finally:
            stopped.cancel()
            self._stopping = True
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)

    def signal_all(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def drain(self, timeout: float) -> None:
        """SIGTERM to every worker (each finishes its requests in flight, as one process would), then
        wait for all of them; past `timeout`, SIGKILL."""
        self._stopping = True
        self.signal_all(signal.SIGTERM)
        live = [p for p in self.procs.values() if p.returncode is None]
        if live:
            _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live], timeout=timeout)
            if late:
                log.error("workers did not stop in time; killing them", extra={"workers": len(late)})
                self.signal_all(signal.SIGKILL)
                await asyncio.gather(*(p.wait() for p in live))
        os.close(self._lifeline_write)
        os.close(self._lifeline_read)


async def supervise(settings: Settings, secrets: Mapping[str, str]) -> int:
    """Run `settings.workers` workers until SIGINT/SIGTERM; the exit code of the gateway."""
    tls_context(settings)  # a certificate that does not load is one error here, not N in the workers
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    lock, embedded, servers = private_nats(settings.data_dir, settings.nats_servers)
    reserved: list[socket.socket] = []
    run_dir = Path(tempfile.mkdtemp(prefix="nats-s3-workers-"))  # 0700: the group's sockets only
    group: WorkerGroup | None = None

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now")
            if group is not None:
                group.signal_all(signal.SIGTERM)  # their second signal too: each exits at once
            if embedded is not None:
                embedded.kill_now()
            shutil.rmtree(run_dir, ignore_errors=True)
            os._exit(128 + signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, int(sig))
    try:
        host, port = _host_port(settings.listen)
        reserved.append(reserve_port(host, port))
        listen = _join(host, reserved[0].getsockname()[1])
        metrics_listen = settings.metrics_listen
        if metrics_listen is not None:
            m_host, m_port = _host_port(metrics_listen)
            reserved.append(reserve_port(m_host, m_port))
            metrics_listen = _join(m_host, reserved[1].getsockname()[1])
        if embedded is not None:
            await embedded.start()
        worker_settings = settings.model_copy(
            update={"workers": 1, "nats_servers": servers, "listen": listen, "metrics_listen": metrics_listen}
        )
        group = WorkerGroup(worker_settings, settings.workers, run_dir)
        loop.add_signal_handler(signal.SIGHUP, group.signal_all, signal.SIGHUP)  # each reloads credentials
        log.info(
            f"nats-s3 {__version__} supervising {settings.workers} workers on {listen}",
            extra={
                "workers": settings.workers,
                "nats": "embedded" if embedded is not None else "external",
                "nats_url": ",".join(servers),
                "access_keys": len(secrets),
            },
        )
        code = await group.run(stop)
        log.info("shutting down", extra={"grace_seconds": settings.shutdown_timeout})
        return code
    finally:
        if group is not None:
            await group.drain(settings.shutdown_timeout + DRAIN_MARGIN)
        if embedded is not None:
            await embedded.stop()
        if lock is not None:
            lock.release()
        for sock in reserved:
            sock.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
