"""One reply inbox per NATS connection: every request and every acknowledged publish of the gateway
gets its answer on `<inbox>.<token>` of a single wildcard subscription.

nats-py's `request()` costs a random token from the OS (`secrets.token_hex`), a done-callback and an
`asyncio.wait_for` per call; on a small GET (two requests) that was a tenth of the gateway's CPU. Here
a token is a counter, and a timeout is one timer handle. The event loop is looked up once: on
Python 3.11, `asyncio.get_running_loop()` is a getpid() system call each time (its fork check), and
those calls were a tenth of a small PUT's CPU.

A reply inbox also carries streams of answers (a batched direct get answers with many messages on one
reply subject): each gets a queue instead of a future, and no subscription of its own.

When the connection drops, everything still waiting fails at once with StoreUnavailable (`fail_all`):
an answer to a message sent on the lost connection may never come, and a request in flight answers
503 at once instead of waiting out its timeout while the client waits too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .errors import StoreUnavailable


class Replies:
    """Futures of the answers not yet received, by token."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: Subscription | None = None
        self._waiting: dict[str, asyncio.Future[Msg]] = {}
        self._streams: dict[str, asyncio.Queue[Msg | StoreUnavailable]] = {}
        # Token -> (stream, when sent) of the publishes awaiting an ack, for `fail_stream`.
        self._acks: dict[str, tuple[str, float]] = {}
        self._tokens = itertools.count(1)
        self._lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None  # the connection's, once first used

    async def _ensure(self) -> None:
        if self._sub is not None:
            return
        self.loop = asyncio.get_running_loop()
        async with self._lock:
            if self._sub is None:
                prefix = f"{self._nc.new_inbox()}."
                # No pending limits: an answer dropped as a slow consumer would be a request timing out.
                self._sub = await self._nc.subscribe(
                    prefix + "*", cb=self._on_reply, pending_msgs_limit=0, pending_bytes_limit=0
                )
                self._prefix = prefix

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        future = self._waiting.pop(token, None)
        if future is not None:
            if self._acks:
                self._acks.pop(token, None)
            if not future.done():
                future.set_result(msg)
            return
        queue = self._streams.get(token)
        if queue is not None:
            queue.put_nowait(msg)

    async def expect(self, stream: str | None = None) -> tuple[str, asyncio.Future[Msg]]:
        """A reply subject and the future its answer will be set on (`forget` it if never sent);
        `stream`: the stream whose ack it is, for `fail_stream`."""
        if self._sub is None or self.loop is None:
            await self._ensure()
        assert self.loop is not None
        token = format(next(self._tokens), "x")
        future: asyncio.Future[Msg] = self.loop.create_future()
        self._waiting[token] = future
        if stream is not None:
            self._acks[token] = (stream, self.loop.time())
        return self._prefix + token, future

    def fail_stream(self, stream: str, reason: str, sent_before: float) -> int:
        """Fail the acks awaited from `stream` of publishes sent before loop time `sent_before` (its
        leader changed: the one they went to will not answer); how many."""
        failed = 0
        for token, (of, sent) in list(self._acks.items()):
            if of == stream and sent < sent_before:
                del self._acks[token]
                future = self._waiting.pop(token, None)
                if future is not None and not future.done():
                    _fail(future, reason)
                    failed += 1
        return failed

    async def open_stream(self) -> tuple[str, asyncio.Queue[Msg | StoreUnavailable]]:
        """A reply subject for many answers and the queue they arrive on (`close_stream` it after); a
        StoreUnavailable in the queue says the connection was lost."""
        if self._sub is None or self.loop is None:
            await self._ensure()
        token = format(next(self._tokens), "x")
        queue: asyncio.Queue[Msg | StoreUnavailable] = asyncio.Queue()
        self._streams[token] = queue
        return self._prefix + token, queue

    def close_stream(self, reply: str) -> None:
        self._streams.pop(reply[len(self._prefix) :], None)

    def fail_all(self, reason: str) -> None:
        """Fail every answer still awaited (the connection they were asked on is gone)."""
        waiting, self._waiting = self._waiting, {}
        self._acks.clear()
        for future in waiting.values():
            if not future.done():
                _fail(future, reason)
        for queue in self._streams.values():
            queue.put_nowait(StoreUnavailable(reason))

    def forget(self, reply: str) -> None:
        self._acks.pop(reply[len(self._prefix) :], None)
        future = self._waiting.pop(reply[len(self._prefix) :], None)
        if future is not None and not future.done():
            future.cancel()

    async def request(self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None) -> Msg:
        """Publish with a reply subject and wait for the answer: nats.errors.TimeoutError when none
        came in `timeout`, NoRespondersError when nobody listens on `subject`."""
        reply, future = await self.expect()
        timer = future.get_loop().call_later(timeout, _expire, future)
        try:
            await self._nc.publish(subject, payload, reply=reply, headers=headers)
            msg = await future
        finally:
            timer.cancel()
            self._waiting.pop(reply[len(self._prefix) :], None)
        if msg.headers and msg.headers.get("Status") == "503":
            raise nats.errors.NoRespondersError
        return msg

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self.fail_all("connection closed")


def _fail(future: asyncio.Future[Msg], reason: str) -> None:
    future.set_exception(StoreUnavailable(reason))
    # Marked retrieved: a waiter still gets the error, and one that gave up leaves no "exception was
    # never retrieved" in the log.
    future.exception()


def _expire(future: asyncio.Future[Msg]) -> None:
    if not future.done():
        future.set_exception(nats.errors.TimeoutError())


_BY_CONNECTION: weakref.WeakKeyDictionary[NatsClient, Replies] = weakref.WeakKeyDictionary()


def replies_for(nc: NatsClient) -> Replies:
    """The connection's reply inbox (made on first use)."""
    found = _BY_CONNECTION.get(nc)
    if found is None:
        found = _BY_CONNECTION[nc] = Replies(nc)
    return found
