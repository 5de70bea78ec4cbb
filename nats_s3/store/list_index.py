"""The listing index: each bucket's live keys in S3 order, fed by a watch on its Object Store meta subjects."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api as js_api
from nats.js.client import JetStreamContext
from sortedcontainers import SortedList

from . import naming
from .errors import BucketNotFound, StoreUnavailable
from .jsapi import ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND, js_request
from .models import META_CHECKSUM, META_ETAG, etag_from_digest, parse_mtime

log = logging.getLogger("nats_s3.store.index")

CATCH_UP_TIMEOUT = 15.0
IDLE_EVICT_SECONDS = 600.0


class Entry(NamedTuple):
    """What a listing shows of one object. A tuple of plain values: the garbage collector stops
    tracking it, so a large index adds nothing to every collection."""

    size: int
    etag: str
    mtime: float  # POSIX seconds
    checksum_algorithm: str | None


class ListedObject(NamedTuple):
    key: str
    size: int
    etag: str
    mtime: float  # POSIX seconds
    checksum_algorithm: str | None


@dataclass(slots=True)
class ListPage:
    objects: list[ListedObject]
    prefixes: list[str]
    truncated: bool
    last: str | None  # the last key or common prefix in the page (the next marker)


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no such string)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # keys are valid UTF-8: no surrogates to land on
                nxt = 0xE000
            return prefix[:-1] + chr(nxt)
        prefix = prefix[:-1]
    return None


class BucketIndex:
    """One bucket's keys. Pages cost O(page size + common prefixes skipped), never O(bucket size)."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.keys: SortedList = SortedList()
        self.entries: dict[str, Entry] = {}
        self.delivered_seq = 0
        self.last_used = time.monotonic()
        self._progress = asyncio.Event()
        self.sub: Subscription | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def apply(self, msg: Msg) -> None:
        """Apply one meta message (the watch's callback)."""
        meta = msg.metadata
        seq = meta.sequence.stream
        if seq <= self.delivered_seq:
            return
        try:
            doc = json.loads(msg.data)
            key = doc["name"]
        except (ValueError, KeyError, TypeError):
            key = None
        if key is None:
            # Unreadable meta: derive the key from the subject so a later delete still finds it.
            token = msg.subject.rsplit(".", 1)[-1]
            with contextlib.suppress(ValueError):
                self._remove(base64.urlsafe_b64decode(token).decode())
        elif doc.get("deleted") or (doc.get("options") or {}).get("link"):
            self._remove(key)
        else:
            self._upsert(key, doc)
        self.delivered_seq = seq
        self._progress.set()

    def _upsert(self, key: str, doc: dict[str, Any]) -> None:
        metadata = doc.get("metadata") or {}
        checksum = metadata.get(META_CHECKSUM)
        entry = Entry(
            size=int(doc.get("size") or 0),
            etag=metadata.get(META_ETAG) or etag_from_digest(doc.get("digest") or ""),
            mtime=parse_mtime(doc.get("mtime") or "").timestamp(),
            checksum_algorithm=checksum.partition(":")[0] if checksum else None,
        )
        if key not in self.entries:
            self.keys.add(key)
        self.entries[key] = entry

    def _remove(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self.keys.remove(key)

    async def wait_past(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.delivered_seq < seq:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        return True

    def _iter_from(self, start: str, inclusive: bool) -> Iterator[str]:
        return iter(self.keys.irange(minimum=start, inclusive=(inclusive, True)))

    def _first_candidates(self, prefix: str, after: str) -> Iterator[str]:
        # Keys under `prefix` that sort after `after`: seek to whichever bound is higher.
        return self._iter_from(prefix, True) if after < prefix else self._iter_from(after, False)

    def page(self, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
        """Keys > `after` under `prefix`, common prefixes rolled up by `delimiter`, at most max_keys entries."""
        self.last_used = time.monotonic()
        objects: list[ListedObject] = []
        prefixes: list[str] = []
        last: str | None = None
        keys = self._first_candidates(prefix, after)
        count = 0
        while True:
            key = next(keys, None)
            if key is None or not key.startswith(prefix):
                return ListPage(objects, prefixes, False, last)
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    # A marker at or inside a common prefix resumes after the whole prefix.
                    if common > after or not after.startswith(common):
                        if count >= max_keys:
                            return ListPage(objects, prefixes, True, last)
                        prefixes.append(common)
                        last = common
                        count += 1
                    # Jump over every other key under this common prefix in one seek.
                    nxt = _successor(common)
                    if nxt is None:
                        return ListPage(objects, prefixes, False, last)
                    keys = self._iter_from(nxt, True)
                    continue
            if count >= max_keys:
                return ListPage(objects, prefixes, True, last)
            objects.append(ListedObject(key, *self.entries[key]))
            last = key
            count += 1

    def has_more(self, prefix: str, after: str) -> bool:
        """For max-keys=0: is there any key under `prefix` past `after`?"""
        key = next(self._first_candidates(prefix, after), None)
        return key is not None and key.startswith(prefix)


class ListIndex:
    """Per-bucket indexes, built on first use from an ordered consumer (last message per meta subject) and
    kept current by it. Every read first catches up with the stream leader, so a listing shows every write
    acknowledged before it began, through any gateway."""

    def __init__(self, nc: NatsClient, js: JetStreamContext) -> None:
        self._nc = nc
        self._js = js
        self._indexes: dict[str, BucketIndex] = {}
        self._starting: dict[str, asyncio.Future[BucketIndex]] = {}

    async def _api(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return await js_request(self._nc, subject, payload)

    async def current(self, bucket: str) -> BucketIndex:
        """The bucket's index, caught up with everything the stream held when this was called."""
        index = await self._open(bucket)
        await self._catch_up(bucket, index)
        return index

    async def _open(self, bucket: str) -> BucketIndex:
        index = self._indexes.get(bucket)
        if index is not None:
            return index
        starting = self._starting.get(bucket)
        if starting is not None:
            return await asyncio.shield(starting)
        future: asyncio.Future[BucketIndex] = asyncio.get_running_loop().create_future()
        self._starting[bucket] = future
        try:
            index = await self._start(bucket)
            self._indexes[bucket] = index
            future.set_result(index)
            return index
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._starting.pop(bucket, None)

    async def _start(self, bucket: str) -> BucketIndex:
        nb = naming.nats_bucket(bucket)
        index = BucketIndex(bucket)
        try:
            index.sub = await self._js.subscribe(
                naming.meta_wildcard(nb),
                stream=naming.stream_name(nb),
                ordered_consumer=True,
                deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                cb=self._callback(index),
                pending_msgs_limit=-1,
                pending_bytes_limit=256 * 1024 * 1024,
            )
        except nats.js.errors.NotFoundError:
            raise BucketNotFound(bucket) from None
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"watch on {bucket}: {exc!r}") from exc
        self._evict_idle()
        return index

    @staticmethod
    def _callback(index: BucketIndex):  # type: ignore[no-untyped-def]
        async def on_msg(msg: Msg) -> None:
            index.apply(msg)

        return on_msg

    async def _catch_up(self, bucket: str, index: BucketIndex) -> None:
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        info = await self._api(f"STREAM.INFO.{stream}")
        if err := info.get("error"):
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                await self.forget(bucket)
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"stream info {stream}: {err.get('description')}")
        last = int((info.get("state") or {}).get("last_seq") or 0)
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while index.delivered_seq < last:
            # Chunk messages share the stream: find the first meta message the watch has not applied.
            resp = await self._api(
                f"STREAM.MSG.GET.{stream}", {"seq": index.delivered_seq + 1, "next_by_subj": naming.meta_wildcard(nb)}
            )
            if err := resp.get("error"):
                if err.get("err_code") == ERR_NO_MESSAGE:
                    return
                raise StoreUnavailable(f"catching up {bucket}: {err.get('description')}")
            pending_seq = int((resp.get("message") or {}).get("seq") or 0)
            if pending_seq == 0 or pending_seq > last:
                return
            if not await index.wait_past(pending_seq, max(deadline - time.monotonic(), 0)):
                raise StoreUnavailable(f"listing index of {bucket} is behind the stream")

    def loaded(self, bucket: str) -> BucketIndex | None:
        return self._indexes.get(bucket)

    async def forget(self, bucket: str) -> None:
        index = self._indexes.pop(bucket, None)
        if index is not None and index.sub is not None:
            with contextlib.suppress(Exception):
                await index.sub.unsubscribe()

    async def prune(self) -> None:
        """Drop indexes unused for a while, and those of buckets deleted (perhaps through another gateway)."""
        self._evict_idle()
        for bucket in list(self._indexes):
            stream = naming.stream_name(naming.nats_bucket(bucket))
            with contextlib.suppress(StoreUnavailable):
                resp = await js_request(self._nc, f"STREAM.INFO.{stream}")
                if (resp.get("error") or {}).get("err_code") == ERR_STREAM_NOT_FOUND:
                    await self.forget(bucket)

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for bucket, index in list(self._indexes.items()):
            if now - index.last_used > IDLE_EVICT_SECONDS:
                asyncio.get_running_loop().create_task(self.forget(bucket))

    async def close(self) -> None:
        for bucket in list(self._indexes):
            await self.forget(bucket)
