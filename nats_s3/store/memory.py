"""Giving freed memory back to the system after a big transient allocation (an index build).

glibc keeps the pages of freed blocks in its heap for reuse; after a build that briefly held far more
than the index it left, the process would keep that high-water mark for good. malloc_trim(0) hands
the free pages back. Elsewhere (musl, macOS) it is not there, and this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import cast

log = logging.getLogger("nats_s3.store.memory")


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return cast(Callable[[int], int], ctypes.CDLL(name).malloc_trim)
    except (OSError, AttributeError):
        return None


_TRIM = _load_trim()


def release_free_memory() -> None:
    if _TRIM is not None:
        _TRIM(0)
