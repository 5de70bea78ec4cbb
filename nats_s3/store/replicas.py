"""Which buckets are read-only replicas here: a bucket whose stream mirrors the stream of the same name
in another JetStream domain (store/replication.py makes them).

A gateway serves a replica's reads from the mirror and refuses its writes: the mirror stream takes no
publishes of its own, and a write that reached the origin through a leaf node link would bypass the
origin gateways' checks. What a stream is comes from its info, which the bucket's first write here
asks for and which is asked again once it is older than REFRESH seconds (in the background for a
bucket of its own; first, for a replica), so a promotion (the mirror becomes a stream of its own) is
seen within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import BucketNotFound, StoreUnavailable
from .models import Origin

REFRESH = 5.0


def origin_in(config: dict[str, Any] | None) -> Origin | None:
    """The origin a stream's configuration mirrors, None for a stream of its own."""
    mirror = (config or {}).get("mirror")
    if not mirror:
        return None
    external = mirror.get("external") or {}
    return Origin(str(mirror.get("name") or ""), str(external.get("api") or ""))


class ReplicaRegistry:
    """Per bucket: its origin (None: not a replica), as its stream's info last said."""

    def __init__(self, stream_info: Callable[[str], Awaitable[dict[str, Any]]]) -> None:
        self._stream_info = stream_info
        self._known: dict[str, tuple[float, Origin | None]] = {}
        self._asking: dict[str, asyncio.Task[Origin | None]] = {}

    def learn(self, bucket: str, info: dict[str, Any]) -> Origin | None:
        """Note what a stream info (read for any reason) says about the bucket."""
        origin = origin_in(info.get("config"))
        self._known[bucket] = (time.monotonic(), origin)
        return origin

    def forget(self, bucket: str) -> None:
        self._known.pop(bucket, None)

    async def origin(self, bucket: str) -> Origin | None:
        """The bucket's origin if it is a replica; None for a bucket of its own, or none at all."""
        known = self._known.get(bucket)
        if known is None:
            # Concurrent first writes share one question (shielded: one caller's cancellation must
            # not cancel it for the others).
            return await asyncio.shield(self._ask(bucket))
        if time.monotonic() - known[0] > REFRESH:
            if known[1] is not None:
                # A replica's writes are refused anyway: asking first lets the first write after a
                # promotion through, instead of refusing it on a stale answer.
                return await asyncio.shield(self._ask(bucket))
            self._ask(bucket)
        return known[1]

    def _ask(self, bucket: str) -> asyncio.Task[Origin | None]:
        task = self._asking.get(bucket)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._look(bucket))
            self._asking[bucket] = task
            task.add_done_callback(lambda done: self._done(bucket, done))
        return task

    def _done(self, bucket: str, task: asyncio.Task[Origin | None]) -> None:
        self._asking.pop(bucket, None)
        if not task.cancelled():
            task.exception()  # retrieved: a background refresh's failure only keeps the old answer

    async def _look(self, bucket: str) -> Origin | None:
        asked = self._known.get(bucket)
        try:
            info = await self._stream_info(bucket)
        except BucketNotFound:
            # Not remembered: a bucket made (or replicated) next is looked up at its first write.
            # Unless something was learned while the question was out (a replicate command's own
            # learn()): that answer is newer than this one.
            if self._known.get(bucket) is asked:
                self._known.pop(bucket, None)
            known = self._known.get(bucket)
            return known[1] if known is not None else None
        except StoreUnavailable:
            known = self._known.get(bucket)
            if known is None:
                raise
            # Held for another refresh period: with NATS away, each of a replica's writes would
            # otherwise wait for a question of its own before being refused.
            self._known[bucket] = (time.monotonic(), known[1])
            return known[1]
        return self.learn(bucket, info)

    async def close(self) -> None:
        for task in list(self._asking.values()):
            task.cancel()
        for task in list(self._asking.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
