"""Streaming chunk I/O on Object Store streams: pipelined writes and batched direct-get reads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .errors import BucketBusy, BucketNotFound, CorruptObject, StoreUnavailable
from .fence import ERR_MESSAGE_TOO_BIG
from .jsapi import API_PREFIX
from .publisher import NoStream, PendingAck, PubAck, Publisher, PublishRejected
from .quotas import refusal
from .replies import replies_for

ACK_TIMEOUT = 30.0
READ_TIMEOUT = 30.0
SHORT_BATCH_RETRIES = 5


@dataclass(slots=True)
class WrittenChunks:
    size: int
    chunks: int
    runs: list[tuple[int, int]]
    md5: bytes
    sha256: bytes


class BodyDigester:
    """MD5 (the ETag) and SHA-256 (the Object Store digest) of a body, computed off the event loop.

    hashlib releases the GIL on large buffers, so a worker thread hashes chunk N while the loop
    reads and publishes chunk N+1: on two cores this nearly doubles upload throughput. The first
    chunk is hashed inline, so small objects never pay for a thread. Updates stay in order (one
    worker per body) and at most `window` chunks wait to be hashed.
    """

    def __init__(self, window: int, *, sha256: bool = True) -> None:
        """`sha256`: False where nobody needs the body's SHA-256 (a part sent unsigned, without a
        SHA-256 checksum): its digest is then empty, and hashing costs a third less."""
        self._md5 = hashlib.md5()
        self._sha256 = hashlib.sha256() if sha256 else None
        self._window = window
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[asyncio.Future[None]] = deque()
        self._fed = 0

    def _update(self, data: bytes) -> None:
        self._md5.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)

    async def feed(self, data: bytes) -> None:
        self._fed += 1
        if self._fed == 1:
            self._update(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nats-s3-digest")
        self._pending.append(asyncio.get_running_loop().run_in_executor(self._pool, self._update, data))
        if len(self._pending) > self._window:
            await self._pending.popleft()

    async def digests(self) -> tuple[bytes, bytes]:
        try:
            while self._pending:
                await self._pending.popleft()
        finally:
            self.close()
        return self._md5.digest(), self._sha256.digest() if self._sha256 is not None else b""

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


Intent = Callable[[], Awaitable[PendingAck]]


class ChunkWriter:
    """Cuts a body into fixed-size chunks on one subject, publishing with a bounded window of acks.

    Every chunk is `chunk_size` bytes except the last, so a reader can find the chunk holding any
    offset; the stream sequence of each chunk (from its ack) is recorded as runs for the same reason.
    `intent` publishes the claim that lets the collector find these chunks if the write never
    commits; it goes out right before the first chunk (an empty body writes neither). `seal`, where
    the object is encrypted, turns chunk N's plaintext into what is stored; the digests are of the
    plaintext.
    """

    def __init__(
        self,
        publisher: Publisher,
        subject: str,
        stream: str,
        chunk_size: int,
        window: int,
        intent: Intent | None,
        *,
        sha256: bool = True,
        seal: Callable[[int, bytes], bytes] | None = None,
    ) -> None:
        self._publisher = publisher
        self._seal = seal
        self._subject = subject
        self._stream = stream
        self._chunk_size = chunk_size
        self._window = max(1, window)
        self._intent = intent
        self._claim: PendingAck | None = None
        self._pending: deque[PendingAck] = deque()
        self._runs: list[tuple[int, int]] = []
        self._chunks = 0
        self._size = 0
        self._digester = BodyDigester(self._window, sha256=sha256)

    async def write_all(self, body: AsyncIterator[bytes]) -> WrittenChunks:
        size = self._chunk_size
        buf = bytearray()
        try:
            async for piece in body:
                if not buf and len(piece) == size:
                    await self._publish(piece)
                    continue
                buf += piece
                while len(buf) >= size:
                    await self._publish(bytes(buf[:size]))
                    del buf[:size]
            if buf:
                await self._publish(bytes(buf))
            while self._pending:
                await self._settle_oldest()
            if self._claim is not None:
                await self._ack(self._claim)
            md5, sha256 = await self._digester.digests()
        except BaseException:
            self._digester.close()
            self._abandon()
            raise
        return WrittenChunks(self._size, self._chunks, self._runs, md5, sha256)

    async def _publish(self, data: bytes) -> None:
        if self._chunks == 0 and self._intent is not None:
            self._claim = await self._intent()
        await self._digester.feed(data)
        self._size += len(data)
        stored = data if self._seal is None else self._seal(self._chunks, data)
        self._chunks += 1
        self._pending.append(await self._publisher.publish(self._subject, stored))
        if len(self._pending) >= self._window:
            await self._settle_oldest()

    async def _ack(self, pending: PendingAck) -> PubAck:
        try:
            ack = await pending.wait(ACK_TIMEOUT)
        except PublishRejected as exc:
            if exc.err_code == ERR_MESSAGE_TOO_BIG:
                raise BucketBusy(self._stream) from exc
            if (full := refusal(exc.err_code, exc.description, self._stream)) is not None:
                raise full from exc
            raise StoreUnavailable(f"chunk refused: {exc.description}") from exc
        except NoStream as exc:
            raise BucketNotFound(self._stream) from exc
        if ack.stream != self._stream:
            raise StoreUnavailable(f"chunk stored in stream {ack.stream}, expected {self._stream}")
        return ack

    async def _settle_oldest(self) -> None:
        seq = (await self._ack(self._pending.popleft())).seq
        if self._runs and self._runs[-1][0] + self._runs[-1][1] == seq:
            start, count = self._runs[-1]
            self._runs[-1] = (start, count + 1)
        else:
            self._runs.append((seq, 1))

    def _abandon(self) -> None:
        # The chunks that landed stay until the collector frees them (the intent claim names them).
        pending, self._pending = self._pending, deque()
        for item in pending:
            item.abandon()
        if self._claim is not None:
            self._claim.abandon()


def seq_of_chunk(runs: tuple[tuple[int, int], ...], index: int) -> int | None:
    for start, count in runs:
        if index < count:
            return start + index
        index -= count
    return None


class ChunkReader:
    """Reads chunks [first, first+count) of one object with batched direct gets (no consumer).

    With the sequence runs known, two batches are kept requested ahead, so NATS keeps sending while
    the previous batch is written to the client; buffered bytes stay under two batches. A batch that
    comes back short (a replica answering before it caught up) is asked for again from where it
    stopped, a few times, before the object counts as damaged.
    """

    def __init__(
        self,
        nc: NatsClient,
        stream: str,
        subject: str,
        *,
        runs: tuple[tuple[int, int], ...],
        first: int,
        count: int,
        chunk_size: int,
        batch_bytes: int = 4 * 1024 * 1024,
        api_prefix: str = API_PREFIX,
    ) -> None:
        self._nc = nc
        self._api = f"{api_prefix}.DIRECT.GET.{stream}"
        self._subject = subject
        self._runs = runs
        self._first = first
        self._count = count
        self._batch = max(1, batch_bytes // chunk_size) if chunk_size else 32

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        if self._count <= 0:
            return
        if self._count == 1:
            # One chunk (every small object): a plain request through the client's shared reply
            # inbox, instead of subscribing, publishing and unsubscribing for a batch of one.
            yield await self._one(self._seq_of(self._first) if self._runs else 1)
            return
        # Without sequence runs (objects from other clients) the next batch starts where the last
        # one ended, so only one batch is in flight.
        ahead = 2 if self._runs else 1
        batches: deque[_Batch] = deque()
        next_index = self._first
        next_seq = 1
        end = self._first + self._count

        async def request_next() -> None:
            nonlocal next_index
            if next_index >= end:
                return
            n = min(self._batch, end - next_index)
            seq = self._seq_of(next_index) if self._runs else next_seq
            batches.append(_Batch(*await self._request(seq, n), seq, n))
            next_index += n

        try:
            for _ in range(ahead):
                await request_next()
            while batches:
                batch = batches[0]
                for attempt in range(SHORT_BATCH_RETRIES + 1):
                    async with contextlib.aclosing(self._drain(batch)) as msgs:
                        async for data in msgs:
                            yield data
                    if batch.got == batch.count:
                        break
                    if attempt == SHORT_BATCH_RETRIES:
                        raise CorruptObject(f"chunks missing on {self._subject}")
                    await _retry_pause(attempt)
                    batch.reply, batch.queue = await self._request(batch.next_seq, batch.count - batch.got)
                batches.popleft()
                next_seq = batch.next_seq
                await request_next()
        finally:
            replies = replies_for(self._nc)
            for pending in batches:
                replies.close_stream(pending.reply)

    def _seq_of(self, index: int) -> int:
        seq = seq_of_chunk(self._runs, index)
        if seq is None:
            raise CorruptObject(f"no sequence recorded for chunk {index} of {self._subject}")
        return seq

    async def _one(self, seq: int) -> bytes:
        """The first message on the subject from `seq` on; asked for again a few times if missing (a
        replica answering before it caught up), as a short batch is."""
        req = json.dumps({"seq": seq, "next_by_subj": self._subject}).encode()
        for attempt in range(SHORT_BATCH_RETRIES + 1):
            try:
                msg = await replies_for(self._nc).request(self._api, req, READ_TIMEOUT)
            except nats.errors.TimeoutError as exc:
                raise StoreUnavailable("direct get timed out") from exc
            except nats.errors.Error as exc:
                raise StoreUnavailable(f"direct get failed: {exc}") from exc
            if not _is_end(msg):
                return msg.data
            if attempt < SHORT_BATCH_RETRIES:
                await _retry_pause(attempt)
        raise CorruptObject(f"chunks missing on {self._subject}")

    async def _request(self, seq: int, batch: int) -> tuple[str, asyncio.Queue[Msg | StoreUnavailable]]:
        replies = replies_for(self._nc)
        reply, queue = await replies.open_stream()
        req = json.dumps({"seq": seq, "next_by_subj": self._subject, "batch": batch}).encode()
        try:
            await self._nc.publish(self._api, req, reply=reply)
        except nats.errors.Error as exc:
            replies.close_stream(reply)
            raise StoreUnavailable(f"direct get failed: {exc}") from exc
        return reply, queue

    async def _drain(self, batch: _Batch) -> AsyncGenerator[bytes, None]:
        """Yields one request's chunk data until its end-of-batch marker, counting into `batch`."""
        queue = batch.queue
        try:
            while True:
                if queue.empty():
                    try:
                        item = await asyncio.wait_for(queue.get(), READ_TIMEOUT)
                    except TimeoutError as exc:
                        raise StoreUnavailable("direct get timed out") from exc
                else:
                    item = queue.get_nowait()
                if isinstance(item, StoreUnavailable):
                    raise item  # the connection was lost
                msg = item
                if _is_end(msg):
                    return
                headers = msg.headers
                batch.got += 1
                if batch.got > batch.count:
                    raise CorruptObject(f"more chunks than expected on {self._subject}")
                if headers is not None and "Nats-Sequence" in headers:
                    batch.next_seq = int(headers["Nats-Sequence"]) + 1
                yield msg.data
        finally:
            replies_for(self._nc).close_stream(batch.reply)


@dataclass(slots=True)
class _Batch:
    reply: str
    queue: asyncio.Queue[Msg | StoreUnavailable]
    next_seq: int
    count: int
    got: int = 0


def _is_end(msg: Msg) -> bool:
    """A direct get's status reply: True for no (more) messages (204 end of batch, 404 none);
    StoreUnavailable for any other status; False for a message with data."""
    headers = msg.headers
    if headers is None or "Status" not in headers or msg.data:
        return False
    status = headers["Status"]
    if status in ("204", "404"):
        return True
    raise StoreUnavailable(f"direct get answered {status} {headers.get('Description', '')}")


async def _retry_pause(attempt: int) -> None:
    """The wait before asking a replica again for chunks it has not caught up on."""
    await asyncio.sleep(0.01 * (attempt + 1))
