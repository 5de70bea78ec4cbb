"""Pipelined JetStream publishes: many messages in flight on one connection, each with its own ack future.

nats-py's `publish_async` leaves its future pending forever when JetStream answers with an API error
(the error is raised inside its reply callback instead of being set on the future), so a rejected
chunk or commit would only surface as a timeout. This publisher sets every answer on its future:
the ack, the JetStream error (with its code), or no-responders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.nuid import NUID

from .errors import StoreUnavailable

ACK_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class PubAck:
    stream: str
    seq: int


class PublishRejected(Exception):
    """JetStream refused the message (wrong last sequence, size limit, ...)."""

    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(f"{err_code}: {description}")
        self.err_code = err_code
        self.description = description


class NoStream(Exception):
    """No stream listens on the subject (the bucket is gone, or its stream lacks the subject)."""


class Publisher:
    """One reply subscription for every publish of this gateway; futures resolved by reply token."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self.nc = nc
        self._nuid = NUID()
        self._prefix = ""
        self._sub: Subscription | None = None
        self._pending: dict[str, asyncio.Future[PubAck]] = {}
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        if self._sub is not None:
            return
        async with self._lock:
            if self._sub is None:
                prefix = f"{self._nc.new_inbox()}."
                self._sub = await self._nc.subscribe(prefix + "*", cb=self._on_reply, pending_msgs_limit=-1)
                self._prefix = prefix

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._prefix) :], None)
        if future is None or future.done():
            return
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            future.set_exception(NoStream())
            return
        try:
            resp: dict[str, Any] = json.loads(msg.data)
        except ValueError:
            future.set_exception(StoreUnavailable(f"unreadable publish ack: {msg.data[:200]!r}"))
            return
        err = resp.get("error")
        if err:
            future.set_exception(PublishRejected(int(err.get("err_code") or 0), str(err.get("description") or "")))
            return
        future.set_result(PubAck(str(resp.get("stream") or ""), int(resp.get("seq") or 0)))

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> PendingAck:
        """Send one message without waiting; `wait()` on the result gives its ack."""
        await self._ensure()
        token = self._nuid.next().decode()
        future: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except nats.errors.Error as exc:
            self._pending.pop(token, None)
            raise StoreUnavailable(f"publish to {subject}: {exc!r}") from exc
        return PendingAck(self, token, future)

    async def request(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> PubAck:
        """Publish and wait for the ack."""
        return await (await self.publish(subject, payload, headers)).wait()

    def _drop(self, token: str) -> None:
        future = self._pending.pop(token, None)
        if future is not None and not future.done():
            future.cancel()

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(StoreUnavailable("publisher closed"))
                # Marked retrieved: a waiter still gets the error, and one that gave up (its shield
                # cancelled) leaves no "exception was never retrieved" in the shutdown log.
                future.exception()
        self._pending.clear()


class PendingAck:
    """One publish whose ack has not been waited for yet."""

    __slots__ = ("_future", "_publisher", "_token")

    def __init__(self, publisher: Publisher, token: str, future: asyncio.Future[PubAck]) -> None:
        self._publisher = publisher
        self._token = token
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    async def wait(self, timeout: float = ACK_TIMEOUT) -> PubAck:
        """The ack; a lost answer is StoreUnavailable, a refusal PublishRejected or NoStream."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._future), timeout)
        except TimeoutError as exc:
            self._publisher._drop(self._token)
            raise StoreUnavailable("JetStream did not acknowledge a publish in time") from exc

    def abandon(self) -> None:
        """Nobody will wait for this ack: drop it, and retrieve an error already set so asyncio does not log it."""
        if self._future.done():
            if not self._future.cancelled():
                self._future.exception()
        else:
            self._publisher._drop(self._token)


async def settle_all(pending: list[PendingAck], timeout: float = ACK_TIMEOUT) -> list[PubAck | BaseException]:
    """Wait for every ack in `pending`; each result is its ack or the exception its publish got."""
    results: list[PubAck | BaseException] = []
    for item in pending:
        try:
            results.append(await item.wait(timeout))
        except (PublishRejected, NoStream, StoreUnavailable) as exc:
            results.append(exc)
    return results
