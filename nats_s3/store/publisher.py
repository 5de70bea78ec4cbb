"""Pipelined JetStream publishes: many messages in flight on one connection, each with its own ack future.

nats-py's `publish_async` leaves its future pending forever when JetStream answers with an API error
(the error is raised inside its reply callback instead of being set on the future), so a rejected
chunk or commit would only surface as a timeout. This publisher sets every answer on its future:
the ack, the JetStream error (with its code), or no-responders.

No responders on a stream subject means no server stored the message: either no stream captures the
subject (the bucket is gone) or the stream has no leader at the moment (one is being elected after a
server died, about five seconds). The stream's existence is asked of the meta leader, and a leaderless
stream's message is sent again after a pause until a leader answers, so that a failover costs a
request a few seconds instead of a false NoSuchBucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import StoreUnavailable
from .jsapi import js_request
from .naming import stream_of
from .replies import Replies, replies_for

log = logging.getLogger("nats_s3.store.publisher")

ACK_TIMEOUT = 30.0
# How long a message waits for its stream to have a leader again, and the pauses between tries.
NO_LEADER_BUDGET = 20.0
NO_LEADER_PAUSES = (0.1, 0.25, 0.5, 1.0)
LEADER_ELECTED = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED"
# A publish sent this shortly before a new leader's advisory may have gone to the new leader.
LEADER_GRACE = 0.5


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
    """Acknowledged publishes, many in flight on one connection; the answers come on the connection's
    reply inbox (store/replies.py)."""

    def __init__(self, nc: NatsClient) -> None:
        self.nc = nc
        self._replies = replies_for(nc)
        self._leaders: Subscription | None = None

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> PendingAck:
        """Send one message without waiting; `wait()` on the result gives its ack."""
        reply, future = await self._send(subject, payload, headers)
        return PendingAck(self, reply, future, subject, payload, headers)

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None
    ) -> tuple[str, asyncio.Future[Msg]]:
        reply, future = await self._replies.expect(stream_of(subject))
        try:
            await self.nc.publish(subject, payload, reply=reply, headers=headers)
        except nats.errors.Error as exc:
            self._replies.forget(reply)
            raise StoreUnavailable(f"publish to {subject}: {exc!r}") from exc
        return reply, future

    async def resend_until_led(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> Msg:
        """The answer to a message that got no responders, sent again while its stream exists but has
        no leader; NoStream when no stream captures the subject."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + NO_LEADER_BUDGET
        for attempt in itertools.count():
            names = await js_request(self.nc, "STREAM.NAMES", {"subject": subject})
            if not names.get("error") and not names.get("streams"):
                raise NoStream()
            pause = NO_LEADER_PAUSES[min(attempt, len(NO_LEADER_PAUSES) - 1)]
            if loop.time() + pause > deadline:
                raise StoreUnavailable(f"no JetStream leader answered for {subject} in {NO_LEADER_BUDGET:g}s")
            await asyncio.sleep(pause)
            reply, future = await self._send(subject, payload, headers)
            answer = await PendingAck(self, reply, future, subject, payload, headers).answer(ACK_TIMEOUT)
            if not _no_responders(answer):
                return answer
        raise AssertionError("unreachable")

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The connection's event loop, once a publish or request was made."""
        return self._replies.loop

    async def request(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> PubAck:
        """Publish and wait for the ack."""
        return await (await self.publish(subject, payload, headers)).wait()

    async def watch_leaders(self) -> None:
        """Follow JetStream's leader elections: when a stream has a new leader, the acks awaited from
        it for more than LEADER_GRACE will never come (the old leader took them), so those writes fail
        with 503 now instead of at their 30 s timeout. Whether they were stored is unknown either way;
        a write becomes visible only by its final compare-and-set, so the client's retry is safe."""
        if self._leaders is not None:
            return

        async def elected(msg: Msg) -> None:
            stream = msg.subject.rpartition(".")[2]
            loop = self._replies.loop
            if loop is None:
                return
            failed = self._replies.fail_stream(
                stream, f"stream {stream} changed leader before acknowledging", loop.time() - LEADER_GRACE
            )
            if failed:
                log.warning(
                    "writes lost their acknowledgement to a leader change", extra={"stream": stream, "writes": failed}
                )

        with contextlib.suppress(nats.errors.Error):
            self._leaders = await self.nc.subscribe(f"{LEADER_ELECTED}.*", cb=elected)

    async def close(self) -> None:
        if self._leaders is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._leaders.unsubscribe()
            self._leaders = None
        await self._replies.close()


def _no_responders(msg: Msg) -> bool:
    headers = msg.headers
    return headers is not None and headers.get("Status") == "503"


def _ack_of(msg: Msg) -> PubAck:
    """The publish's outcome from JetStream's answer: its ack, or the refusal raised."""
    try:
        resp: dict[str, Any] = json.loads(msg.data)
    except ValueError:
        raise StoreUnavailable(f"unreadable publish ack: {msg.data[:200]!r}") from None
    err = resp.get("error")
    if err:
        raise PublishRejected(int(err.get("err_code") or 0), str(err.get("description") or ""))
    return PubAck(str(resp.get("stream") or ""), int(resp.get("seq") or 0))


class PendingAck:
    """One publish whose ack has not been waited for yet."""

    __slots__ = ("_future", "_headers", "_payload", "_publisher", "_replies", "_reply", "_subject")

    def __init__(
        self,
        publisher: Publisher,
        reply: str,
        future: asyncio.Future[Msg],
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
    ) -> None:
        self._publisher = publisher
        self._replies: Replies = publisher._replies
        self._reply = reply
        self._future = future
        self._subject = subject
        self._payload = payload
        self._headers = headers

    def done(self) -> bool:
        return self._future.done()

    async def wait(self, timeout: float = ACK_TIMEOUT) -> PubAck:
        """The ack; a lost answer is StoreUnavailable, a refusal PublishRejected or NoStream (after
        the message was sent again while its stream was without a leader)."""
        answer = await self.answer(timeout)
        if _no_responders(answer):
            answer = await self._publisher.resend_until_led(self._subject, self._payload, self._headers)
        return _ack_of(answer)

    async def answer(self, timeout: float) -> Msg:
        """JetStream's answer, whatever it is; StoreUnavailable when none came in `timeout`.

        A waiter that is cancelled leaves the answer to a later `wait` (the future is not awaited
        directly, which would cancel it too). Most acks are in by the time they are waited for, and
        cost no timer.
        """
        future = self._future
        if not future.done():
            loop = future.get_loop()  # not get_running_loop(): a system call on Python 3.11 (replies.py)
            waiter: asyncio.Future[None] = loop.create_future()

            def release(_: object = None) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            future.add_done_callback(release)
            timer = loop.call_later(timeout, release)
            try:
                await waiter
            finally:
                timer.cancel()
                future.remove_done_callback(release)
            if not future.done():
                self._replies.forget(self._reply)
                raise StoreUnavailable("JetStream did not acknowledge a publish in time")
        if future.cancelled():
            raise StoreUnavailable("JetStream did not acknowledge a publish in time")
        return future.result()

    def abandon(self) -> None:
        """Nobody will wait for this ack: drop it, and retrieve an error already set so asyncio does not log it."""
        if self._future.done():
            if not self._future.cancelled():
                self._future.exception()
        else:
            self._replies.forget(self._reply)


async def settle_all(pending: list[PendingAck], timeout: float = ACK_TIMEOUT) -> list[PubAck | BaseException]:
    """Wait for every ack in `pending`; each result is its ack or the exception its publish got."""
    results: list[PubAck | BaseException] = []
    for item in pending:
        try:
            results.append(await item.wait(timeout))
        except (PublishRejected, NoStream, StoreUnavailable) as exc:
            results.append(exc)
    return results
