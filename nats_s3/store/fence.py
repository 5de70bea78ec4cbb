"""The write fence DeleteBucket raises on a bucket's stream, so that no write lands between its
emptiness check and the stream's deletion.

The fence sets the stream's `max_msg_size` to 1 byte: JetStream refuses every message bigger than
that when it stores it (under the stream's lock, after any config change), and leaves what is
stored alone. A purge of an unused subject then acts as a barrier: in a cluster it is ordered after
every message proposed before the fence. The fence's deadline sits in the stream's metadata, so a
fence left by a gateway that died is lifted by whoever meets it after the deadline.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient

from .errors import StoreUnavailable
from .jsapi import js_request, stream_info, stream_update

ERR_MESSAGE_TOO_BIG = 10054  # "message size exceeds maximum allowed": what a fenced stream answers
FENCE_KEY = "nats-s3.fence"  # "<deadline, POSIX seconds>:<token>:<margin, seconds>"
SAVED_SIZE_KEY = "nats-s3.fence-saved-max-msg-size"
FENCE_SECONDS = 30.0
FENCE_MARGIN = 10.0
WAIT_STEP = 0.05


@dataclass(frozen=True, slots=True)
class Fence:
    """Its holder acts only while `margin` of it is left before the deadline, and others lift it only
    `margin` past it: gateway clocks that differ by less than twice that never overlap the two."""

    token: str
    deadline: float
    margin: float


async def _config(nc: NatsClient, stream: str) -> dict[str, Any]:
    config: dict[str, Any] = (await stream_info(nc, stream))["config"]
    return config


async def _update(nc: NatsClient, stream: str, config: dict[str, Any]) -> None:
    await stream_update(nc, {**config, "name": stream})


def current_fence(config: dict[str, Any]) -> Fence | None:
    raw = (config.get("metadata") or {}).get(FENCE_KEY)
    if not raw:
        return None
    deadline, _, rest = raw.partition(":")
    token, _, margin = rest.partition(":")
    try:
        return Fence(token, float(deadline), float(margin or 0))
    except ValueError:
        return Fence(token, 0.0, 0.0)


async def raise_fence(nc: NatsClient, stream: str, seconds: float = FENCE_SECONDS) -> Fence:
    config = await _config(nc, stream)
    fence = Fence(secrets.token_hex(8), time.time() + seconds, min(FENCE_MARGIN, seconds / 3))
    metadata = dict(config.get("metadata") or {})
    if FENCE_KEY not in metadata:
        metadata[SAVED_SIZE_KEY] = str(config.get("max_msg_size", -1))
    metadata[FENCE_KEY] = f"{fence.deadline}:{fence.token}:{fence.margin}"
    await _update(nc, stream, {**config, "max_msg_size": 1, "metadata": metadata})
    # Every message proposed before the fence is stored once this purge (a no-op) is answered.
    resp = await js_request(nc, f"STREAM.PURGE.{stream}", {"filter": f"$O.{stream[4:]}.G.barrier"})
    if err := resp.get("error"):
        raise StoreUnavailable(f"fence barrier on {stream}: {err.get('description')}")
    return fence


async def still_fenced(nc: NatsClient, stream: str, fence: Fence) -> bool:
    found = current_fence(await _config(nc, stream))
    return found is not None and found.token == fence.token and time.time() < fence.deadline - fence.margin


async def lift_fence(nc: NatsClient, stream: str, token: str | None = None) -> None:
    """Restore writes (only if the fence is still `token`'s, when given)."""
    config = await _config(nc, stream)
    found = current_fence(config)
    if found is None or (token is not None and found.token != token):
        return
    metadata = dict(config.get("metadata") or {})
    metadata.pop(FENCE_KEY, None)
    saved = metadata.pop(SAVED_SIZE_KEY, "-1")
    try:
        size = int(saved)
    except ValueError:
        size = -1
    await _update(nc, stream, {**config, "max_msg_size": size, "metadata": metadata})


async def wait_unfenced(nc: NatsClient, stream: str) -> bool:
    """After a write was refused as too big: wait until the stream carries no fence.

    Returns whether there was a fence to wait for (False: the refusal came from a limit its operator
    set, or from a fence lifted a moment ago; the caller may retry once). A fence past its deadline
    was left by a gateway that died while deleting the bucket: it is lifted here. BucketNotFound when
    the bucket was deleted meanwhile.
    """
    waited = False
    while True:
        fence = current_fence(await _config(nc, stream))
        if fence is None:
            return waited
        if time.time() >= fence.deadline + fence.margin:
            await lift_fence(nc, stream, fence.token)
            return True
        waited = True
        await asyncio.sleep(WAIT_STEP)
