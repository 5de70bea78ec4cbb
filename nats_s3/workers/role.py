"""What a worker process is told by its supervisor, and what it does with it: its place in the group,
the sockets its siblings answer metrics on, the pipe that says the supervisor is alive, and the pipe on
which it says it is ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from ..settings import Settings

log = logging.getLogger("nats_s3.workers")

# The supervisor hands a worker its role in this environment variable (JSON), never on the command line
# (which `ps` shows to every user: the settings may hold a NATS password).
ROLE_ENV = "NATS_S3_WORKER_ROLE"


class WorkerRole(BaseModel):
    index: int
    count: int
    run_dir: Path  # private to the group (0700): the workers' metrics sockets
    lifeline_fd: int  # read end of a pipe only the supervisor writes: EOF means it is gone
    ready_fd: int  # write end of a pipe the supervisor reads: one byte once the store is attached
    # Listen before NATS is reached (/healthz and the reason /readyz gives, as one process does): the
    # first worker at the group's start. The others listen once they can serve.
    listen_early: bool
    settings: Settings

    def metrics_socket(self, index: int) -> Path:
        return self.run_dir / f"worker-{index}.sock"

    def announce_ready(self) -> None:
        """Tell the supervisor, once (a store attached again after a reconnect says nothing new)."""
        if self.ready_fd < 0:
            return
        fd, self.ready_fd = self.ready_fd, -1
        with contextlib.suppress(OSError):
            os.write(fd, b"R")
        with contextlib.suppress(OSError):
            os.close(fd)

    def watch_lifeline(self, loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]) -> None:
        """`on_gone` when the supervisor dies, however it dies (its end of the pipe closes with it), so a
        worker never outlives it holding the port."""

        def readable() -> None:
            try:
                data = os.read(self.lifeline_fd, 64)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(self.lifeline_fd)
                log.warning("the supervisor is gone; stopping")
                on_gone()

        os.set_blocking(self.lifeline_fd, False)
        loop.add_reader(self.lifeline_fd, readable)

    def stop_watching(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(Exception):
            loop.remove_reader(self.lifeline_fd)
