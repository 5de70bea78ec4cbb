"""One gateway per data directory: an exclusive lock held for the gateway's life.

Two embedded nats-servers on one store directory corrupt each other's view of it (objects listed by one
and missing in the other), so a second gateway started on the same --data-dir refuses to start. The lock
is an flock on a file in the directory: the kernel drops it when the holder dies, however it dies, and
the descriptor is not inherited by the nats-server child (which must never keep a dead gateway's lock).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "nats-s3.lock"


class DataDirLocked(Exception):
    """Another live process holds the data directory (message is one line)."""


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir.resolve() / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DataDirLocked(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.path.parent} is in use by another nats-s3 (pid {holder}); "
                "give each gateway its own --data-dir, or point them all at one NATS with --natsServers"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the lock; the file stays (removing it would race a new holder)
