"""Listing indexes, each fed by a watch on one kind of subject of a bucket's stream: the latest version of
every key (meta subjects) for ListObjects, and the older versions (version subjects) for
ListObjectVersions."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api as js_api
from nats.js.client import JetStreamContext
from sortedcontainers import SortedList

from . import naming
from .errors import BucketNotFound, StoreUnavailable
from .index_snapshot import MIN_KEYS, IndexSnapshots, IndexState
from .jsapi import ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND, js_request
from .memory import release_free_memory
from .models import META_CHECKSUM, META_ETAG, etag_from_digest, parse_mtime
from .packed_entries import Entry, PackedEntries, encode_key, encode_record, sorted_records
from .versions import META_GONE, META_MARKER, META_NULL, META_NULLV, META_VID, NULL, uid_time_ns

log = logging.getLogger("nats_s3.store.index")

CATCH_UP_TIMEOUT = 15.0
IDLE_EVICT_SECONDS = 600.0


class ListedObject(NamedTuple):
    key: str
    size: int
    etag: str
    mtime: float  # POSIX seconds
    checksum_algorithm: str | None
    version_id: str


class MarkerEntry(NamedTuple):
    version_id: str
    mtime: float


class OlderVersion(NamedTuple):
    uid: str
    version_id: str
    delete_marker: bool
    size: int
    etag: str
    mtime: float
    checksum_algorithm: str | None


def _uid(version: OlderVersion) -> str:
    return version.uid


class VersionEntry(NamedTuple):
    """One row of ListObjectVersions: a version (delete_marker False) or a delete marker."""

    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    size: int
    etag: str
    mtime: float
    checksum_algorithm: str | None


@dataclass(slots=True)
class ListPage:
    objects: list[ListedObject]
    prefixes: list[str]
    truncated: bool
    last: str | None  # the last key or common prefix in the page (the next marker)


@dataclass(slots=True)
class VersionPage:
    entries: list[VersionEntry]
    prefixes: list[str]
    truncated: bool
    next_key: str | None
    next_version: str | None  # None when the page ended on a common prefix


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


def stream_sequence(msg: Msg) -> int:
    """The stream sequence of a consumer's message, read from its reply subject's usual (v1) form without
    building nats-py's whole Metadata (a tenth of an index build's CPU); other forms go through nats-py."""
    tokens = (msg.reply or "").split(".")
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return int(tokens[5])
    return msg.metadata.sequence.stream


def _version_id(meta: dict[str, Any]) -> str:
    vid = meta.get(META_VID)
    return NULL if vid is None or meta.get(META_NULL) == "1" else str(vid)


def _entry(doc: dict[str, Any], meta: dict[str, Any]) -> Entry:
    checksum = meta.get(META_CHECKSUM)
    return Entry(
        size=int(doc.get("size") or 0),
        etag=meta.get(META_ETAG) or etag_from_digest(doc.get("digest") or ""),
        mtime=parse_mtime(doc.get("mtime") or "").timestamp(),
        checksum_algorithm=checksum.partition(":")[0] if checksum else None,
        version_id=_version_id(meta),
    )


class _Watched:
    """What every index has: the stream sequence its watch has applied, and a way to wait for more."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.delivered_seq = 0
        self.last_used = time.monotonic()
        self._progress = asyncio.Event()
        self.sub: Subscription | None = None
        # The creation time of the stream it follows: a bucket deleted and created again (through another
        # gateway, or the admin CLI) has a new stream, which an index of the old one must not stand for.
        self.stream_created = ""

    def _advanced(self, seq: int) -> None:
        self.delivered_seq = seq
        self._progress.set()

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

    def apply(self, msg: Msg) -> None:
        raise NotImplementedError


class BucketIndex(_Watched):
    """One bucket's latest versions. Pages cost O(page size + common prefixes skipped), never O(bucket size)."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.objects = PackedEntries()
        # While the index is first built, the latest versions gather here unordered (key -> record)
        # and are packed at once by the first read: one sort, instead of an insert per key.
        self._building: dict[bytes, bytes] | None = {}
        # Keys whose latest version is a delete marker, and keys whose null version is an older one.
        self.marker_keys: SortedList = SortedList()
        self.markers: dict[str, MarkerEntry] = {}
        self.nullv: dict[str, str] = {}
        # The snapshot in NATS this index last matched (stream sequence, when taken); 0 for none.
        self.snapshot_seq = 0
        self.snapshot_at = 0.0
        self.from_stream = True  # built by replaying the stream (not restored from a snapshot)
        self.caught_up = False  # a first catch-up with the stream has completed: a snapshot now is whole

    def state(self) -> IndexState:
        """A consistent picture of now, for a snapshot (synchronous: no message is applied meanwhile)."""
        objects = PackedEntries()
        objects.restore(self._settle().export())
        markers = {key: (m.version_id, m.mtime) for key, m in self.markers.items()}
        return IndexState(self.delivered_seq, time.time(), objects, markers, dict(self.nullv))

    def restore(self, state: IndexState) -> None:
        """Start from a snapshot: the watch then replays what came after `state.seq`."""
        self._building = None
        self.objects = state.objects
        self.markers = {key: MarkerEntry(vid, mtime) for key, (vid, mtime) in state.markers.items()}
        self.marker_keys = SortedList(self.markers)
        self.nullv = dict(state.nullv)
        self.delivered_seq = state.seq
        self.snapshot_seq, self.snapshot_at = state.seq, state.taken_at
        self.from_stream = False

    def _settle(self) -> PackedEntries:
        if self._building is not None:
            building, self._building = self._building, None
            self.objects.load(sorted_records(building))
            if len(building) >= MIN_KEYS:
                del building
                release_free_memory()  # the build held several times what the packed index does
        return self.objects

    def __len__(self) -> int:
        # Counting does not pack a build in progress (the metrics count indexes every few seconds).
        return len(self._building) if self._building is not None else len(self.objects)

    def entry(self, key: str) -> Entry | None:
        return self._settle().get(key)

    def keys_from(self, start: str, inclusive: bool = True) -> Iterator[str]:
        return self._settle().keys_from(start, inclusive)

    def apply(self, msg: Msg) -> None:
        """Apply one meta message (the watch's callback)."""
        seq = stream_sequence(msg)
        if seq <= self.delivered_seq:
            return
        try:
            doc = json.loads(msg.data)
            key = doc["name"]
            meta = doc.get("metadata") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            key = None
        if key is None or not isinstance(key, str):
            # Unreadable meta: derive the key from the subject so a later delete still finds it.
            with contextlib.suppress(ValueError):
                self._remove(naming.decode_key(msg.subject.rsplit(".", 1)[-1]))
        elif doc.get("deleted") or (doc.get("options") or {}).get("link"):
            self._remove(key)
            if doc.get("deleted") and meta.get(META_MARKER) == "1" and meta.get(META_GONE) != "1":
                if key not in self.markers:
                    self.marker_keys.add(key)
                self.markers[key] = MarkerEntry(_version_id(meta), parse_mtime(doc.get("mtime") or "").timestamp())
            self._set_nullv(key, meta)
        else:
            self._upsert(key, _entry(doc, meta))
            self._set_nullv(key, meta)
        self._advanced(seq)

    def _set_nullv(self, key: str, meta: dict[str, Any]) -> None:
        nullv = meta.get(META_NULLV)
        if nullv:
            self.nullv[key] = str(nullv)
        else:
            self.nullv.pop(key, None)

    def _upsert(self, key: str, entry: Entry) -> None:
        if self.markers.pop(key, None) is not None:
            self.marker_keys.remove(key)
        if self._building is not None:
            raw = encode_key(key)
            self._building[raw] = encode_record(raw, entry)
        else:
            self.objects.set(key, entry)

    def _remove(self, key: str) -> None:
        if self._building is not None:
            self._building.pop(encode_key(key), None)
        else:
            self.objects.pop(key)
        if self.markers.pop(key, None) is not None:
            self.marker_keys.remove(key)
        self.nullv.pop(key, None)

    def _items_from(self, prefix: str, after: str) -> Iterator[tuple[str, Entry]]:
        # Keys under `prefix` that sort after `after`: seek to whichever bound is higher.
        objects = self._settle()
        return objects.items_from(prefix, True) if after < prefix else objects.items_from(after, False)

    def page(self, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
        """Keys > `after` under `prefix`, common prefixes rolled up by `delimiter`, at most max_keys entries."""
        self.last_used = time.monotonic()
        objects: list[ListedObject] = []
        prefixes: list[str] = []
        last: str | None = None
        items = self._items_from(prefix, after)
        count = 0
        while True:
            item = next(items, None)
            if item is None or not item[0].startswith(prefix):
                return ListPage(objects, prefixes, False, last)
            key, entry = item
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
                    items = self._settle().items_from(nxt, True)
                    continue
            if count >= max_keys:
                return ListPage(objects, prefixes, True, last)
            objects.append(ListedObject(key, *entry))
            last = key
            count += 1

    def has_more(self, prefix: str, after: str) -> bool:
        """For max-keys=0: is there any key under `prefix` past `after`?"""
        item = next(self._items_from(prefix, after), None)
        return item is not None and item[0].startswith(prefix)


class HistoryIndex(_Watched):
    """One bucket's older versions (version subjects), by key, oldest first within a key."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.keys: SortedList = SortedList()
        self.versions: dict[str, list[OlderVersion]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.versions.values())

    def apply(self, msg: Msg) -> None:
        seq = stream_sequence(msg)
        if seq <= self.delivered_seq:
            return
        _, _, tail = msg.subject.partition(".V.")
        token, _, uid = tail.rpartition(".")
        try:
            key = naming.decode_key(token)
        except ValueError:
            self._advanced(seq)
            return
        self._drop(key, uid)
        try:
            doc = json.loads(msg.data)
            meta = doc.get("metadata") or {}
        except (ValueError, TypeError, AttributeError):
            doc, meta = None, {}
        if isinstance(doc, dict) and meta.get(META_GONE) != "1":
            marker = bool(doc.get("deleted")) and meta.get(META_MARKER) == "1"
            if marker or not doc.get("deleted"):
                e = _entry(doc, meta)
                versions = self.versions.get(key)
                if versions is None:
                    versions = self.versions[key] = []
                    self.keys.add(key)
                insort(versions, OlderVersion(uid, e.version_id, marker, *e[:4]), key=_uid)
        self._advanced(seq)

    def _drop(self, key: str, uid: str) -> None:
        versions = self.versions.get(key)
        if not versions:
            return
        i = bisect_left(versions, uid, key=_uid)
        if i < len(versions) and versions[i].uid == uid:
            del versions[i]
            if not versions:
                del self.versions[key]
                self.keys.remove(key)

    def uids_newest_first(self, key: str) -> list[str]:
        return [v.uid for v in reversed(self.versions.get(key, ()))]

    def any_live(self, heads: BucketIndex) -> bool:
        """Whether any older version is one S3 still shows (a null one only while its key names it)."""
        for key, versions in self.versions.items():
            for v in versions:
                if v.version_id != NULL or heads.nullv.get(key) == v.uid:
                    return True
        return False

    def _of_key(self, heads: BucketIndex, key: str, marker: str | None = None) -> Iterator[VersionEntry]:
        """The versions of `key`, newest first: its latest (live or marker), then the older ones; with
        `marker` (a version id of this key), only those that come after it. Lazy, and it seeks to the
        marker, so a page costs what it lists however long the key's history."""
        entry = heads.entry(key)
        dead = heads.markers.get(key)
        latest_vid = entry.version_id if entry is not None else (dead.version_id if dead is not None else None)
        latest_mtime = entry.mtime if entry is not None else (dead.mtime if dead is not None else 0.0)
        older = self.versions.get(key, [])
        nullv = heads.nullv.get(key)
        stop = len(older)  # older[:stop] are listed
        show_latest = latest_vid is not None
        if marker is not None and marker != latest_vid:
            marker_uid = nullv if marker == NULL else marker
            if marker_uid is not None:  # else the marked null version is gone, its place unknown: repeat
                stop = bisect_left(older, marker_uid, key=_uid)
                if stop < len(older) and older[stop].uid == marker_uid:
                    show_latest = False  # the marked version is an older one: the latest came before it
                elif latest_vid == NULL:
                    # The marked version is gone: the latest comes after it only if it is older (it
                    # became the latest when the marked one was deleted).
                    show_latest = latest_mtime * 1e9 < uid_time_ns(marker_uid)
                else:
                    show_latest = latest_vid is not None and latest_vid < marker_uid
        elif marker is not None:
            show_latest = False
        if show_latest:
            if entry is not None:
                yield VersionEntry(key, entry.version_id, True, False, entry.size, entry.etag, entry.mtime,
                                   entry.checksum_algorithm)  # fmt: skip
            elif dead is not None:
                yield VersionEntry(key, dead.version_id, True, True, 0, "", dead.mtime, None)
        for i in range(stop - 1, -1, -1):
            v = older[i]
            if v.version_id == latest_vid or (v.version_id == NULL and v.uid != nullv):
                continue  # a copy of the latest, or a null version no longer named
            yield VersionEntry(key, v.version_id, False, v.delete_marker, v.size, v.etag, v.mtime,
                               v.checksum_algorithm)  # fmt: skip

    def _keys_from(self, heads: BucketIndex, start: str, inclusive: bool) -> Iterator[str]:
        bounds = {"minimum": start, "inclusive": (inclusive, True)}
        merged = heapq.merge(
            heads.keys_from(start, inclusive), heads.marker_keys.irange(**bounds), self.keys.irange(**bounds)
        )
        previous = None
        for key in merged:
            if key != previous:
                previous = key
                yield key

    def versions_page(
        self,
        heads: BucketIndex,
        prefix: str,
        delimiter: str,
        key_marker: str,
        version_marker: str | None,
        max_keys: int,
    ) -> VersionPage:
        """Versions and delete markers past (key_marker, version_marker), key order, newest first in a key."""
        self.last_used = heads.last_used = time.monotonic()
        entries: list[VersionEntry] = []
        prefixes: list[str] = []
        last: tuple[str, str | None] | None = None
        if version_marker is not None and key_marker >= prefix:
            keys = self._keys_from(heads, key_marker, True)
        elif key_marker < prefix:
            keys = self._keys_from(heads, prefix, True)
        else:
            keys = self._keys_from(heads, key_marker, False)
        count = 0

        def page(truncated: bool) -> VersionPage:
            if not truncated or last is None:
                return VersionPage(entries, prefixes, truncated, None, None)
            return VersionPage(entries, prefixes, True, last[0], last[1])

        while True:
            key = next(keys, None)
            if key is None or not key.startswith(prefix):
                return page(False)
            if delimiter:
                cut = key.find(delimiter, len(prefix))
                if cut >= 0:
                    common = key[: cut + len(delimiter)]
                    if common > key_marker or not key_marker.startswith(common):
                        if count >= max_keys:
                            return page(True)
                        prefixes.append(common)
                        last = (common, None)
                        count += 1
                    nxt = _successor(common)
                    if nxt is None:
                        return page(False)
                    keys = self._keys_from(heads, nxt, True)
                    continue
            marker = version_marker if key == key_marker else None
            for v in self._of_key(heads, key, marker):
                if count >= max_keys:
                    return page(True)
                entries.append(v)
                last = (key, v.version_id)
                count += 1


class ListIndex:
    """Per-bucket indexes, built on first use from an ordered consumer (last message per subject) and
    kept current by it. Every read first catches up with the stream leader, so a listing shows every write
    acknowledged before it began, through any gateway."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, snapshots: IndexSnapshots | None = None) -> None:
        self._nc = nc
        self._js = js
        self.snapshots = snapshots
        self._saving: dict[str, asyncio.Task[None]] = {}
        self._heads: dict[str, BucketIndex] = {}
        self._history: dict[str, HistoryIndex] = {}
        self._starting: dict[tuple[str, str], asyncio.Future[Any]] = {}
        self._renew_after: dict[str, float] = {}  # buckets found small: not looked at again before then
        self._absent_since: dict[str, float] = {}  # big buckets first seen without a snapshot

    async def _api(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return await js_request(self._nc, subject, payload)

    async def current(self, bucket: str) -> BucketIndex:
        """The bucket's index of latest versions, caught up with everything the stream held when called."""
        last, created = await self._stream_state(bucket)
        index = await self._open(bucket, "M", self._heads, BucketIndex, created)
        await self._catch_up(bucket, index, naming.meta_wildcard(naming.nats_bucket(bucket)), last)
        self._snapshot_if_built(bucket, index)
        return index

    async def history(self, bucket: str) -> HistoryIndex:
        """The bucket's index of older versions, caught up like `current`."""
        last, created = await self._stream_state(bucket)
        index = await self._open(bucket, "V", self._history, HistoryIndex, created)
        await self._catch_up(bucket, index, naming.version_wildcard(naming.nats_bucket(bucket)), last)
        return index

    async def current_with_history(self, bucket: str) -> tuple[BucketIndex, HistoryIndex]:
        """Both indexes, caught up with the same stream position."""
        nb = naming.nats_bucket(bucket)
        last, created = await self._stream_state(bucket)
        heads = await self._open(bucket, "M", self._heads, BucketIndex, created)
        history = await self._open(bucket, "V", self._history, HistoryIndex, created)
        await self._catch_up(bucket, heads, naming.meta_wildcard(nb), last)
        await self._catch_up(bucket, history, naming.version_wildcard(nb), last)
        self._snapshot_if_built(bucket, heads)
        return heads, history

    async def _open(
        self, bucket: str, kind: str, indexes: dict[str, Any], factory: Callable[[str], Any], created: str
    ) -> Any:
        """The bucket's index of `kind`, of its stream created at `created`: an index held of an older
        stream of the same name is dropped, and a new one built."""
        held: _Watched | None = indexes.get(bucket)
        if held is not None and held.stream_created == created:
            return held
        if held is not None:
            indexes.pop(bucket, None)
            if held.sub is not None:
                with contextlib.suppress(Exception):
                    await held.sub.unsubscribe()
        starting = self._starting.get((bucket, kind))
        if starting is not None:
            return await asyncio.shield(starting)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._starting[(bucket, kind)] = future
        try:
            index = factory(bucket)
            index.stream_created = created
            start = await self._restore(bucket, index) if kind == "M" else None
            await self._watch(bucket, index, naming.meta_wildcard if kind == "M" else naming.version_wildcard, start)
            indexes[bucket] = index
            self._evict_idle()
            future.set_result(index)
            return index
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._starting.pop((bucket, kind), None)

    async def _restore(self, bucket: str, index: BucketIndex) -> int | None:
        """Load the bucket's snapshot into `index` if a usable one exists: the sequence to replay from."""
        if self.snapshots is None:
            return None
        last, created = await self._stream_state(bucket)
        try:
            state = await self.snapshots.load(naming.nats_bucket(bucket), created, last)
        except StoreUnavailable as exc:
            log.warning(
                "index snapshot not read; building from the stream", extra={"bucket": bucket, "error": str(exc)}
            )
            return None
        if state is None:
            return None
        index.restore(state)
        log.info(
            "listing index restored from a snapshot",
            extra={"bucket": bucket, "keys": len(state.objects), "replay_from": state.seq + 1, "stream_last": last},
        )
        return state.seq + 1

    def _snapshot_if_built(self, bucket: str, index: BucketIndex) -> None:
        """After a big index was first built from the stream, save it for the next gateway (in the
        background: the listing that built it does not wait)."""
        index.caught_up = True
        if self.snapshots is None or not index.from_stream or len(index) < MIN_KEYS:
            return
        index.from_stream = False
        self._save_soon(bucket, index)

    def _save_soon(self, bucket: str, index: BucketIndex) -> None:
        if bucket in self._saving or self.snapshots is None:
            return
        state = index.state()

        async def save() -> None:
            try:
                await self._save(bucket, index, state)
            finally:
                self._saving.pop(bucket, None)

        self._saving[bucket] = asyncio.get_running_loop().create_task(save())

    async def _save(self, bucket: str, index: BucketIndex, state: IndexState) -> None:
        assert self.snapshots is not None
        try:
            _, created = await self._stream_state(bucket)
            head = await self.snapshots.save(naming.nats_bucket(bucket), state, created)
            index.snapshot_seq, index.snapshot_at = head.seq, head.taken_at
            log.info("index snapshot saved", extra={"bucket": bucket, "keys": head.keys, "bytes": head.size})
            release_free_memory()  # its encoding and chunks, as big as the index
        except (StoreUnavailable, BucketNotFound) as exc:
            # Tried again when a refresh would be due, not at every pass (NATS may refuse us the
            # stream for good: an account without the right to create it).
            index.snapshot_at = time.time()
            log.warning("index snapshot not saved", extra={"bucket": bucket, "error": str(exc)})

    async def renew_snapshot(self, bucket: str) -> bool:
        """Housekeeping, on the collector's leader: keep a big bucket's snapshot young while no gateway
        holds its index (gateways that do keep it young themselves, refresh_snapshots), so that the next
        listing anywhere restores it instead of replaying the whole stream. The index is opened (from
        the old snapshot, replaying what came after; from the stream where there is none yet and the
        bucket may be big), saved, and let go. True when a snapshot was written."""
        if self.snapshots is None or bucket in self._heads or bucket in self._saving:
            return False
        nb = naming.nats_bucket(bucket)
        now = time.time()
        if now < self._renew_after.get(bucket, 0.0):
            return False
        head = await self.snapshots.head(nb)
        if head is not None and now - head.taken_at < self.snapshots.max_age / 3:
            self._absent_since.pop(bucket, None)
            return False
        if head is not None and head.seq == (await self._stream_state(bucket))[0]:
            return False  # nothing came after it: exact, and used whatever its age (index_snapshot.load)
        if head is None:
            if await self._subject_count(bucket) < MIN_KEYS:
                # Meta, chunk and claim subjects together: fewer than that many keys for certain.
                self._renew_after[bucket] = now + self.snapshots.max_age / 3
                return False
            # A gateway that has just built the index may be saving its snapshot right now: build one
            # here only once there has been none for a while.
            absent_since = self._absent_since.setdefault(bucket, now)
            if now - absent_since < self.snapshots.max_age / 3:
                return False
        self._absent_since.pop(bucket, None)
        try:
            index = await self.current(bucket)  # a build from the stream saves itself in the background
            saving = self._saving.get(bucket)
            if saving is not None:
                await saving
                return True
            if len(index) < MIN_KEYS:
                self._renew_after[bucket] = now + self.snapshots.max_age / 3
                return False
            await self._save(bucket, index, index.state())
            return True
        finally:
            await self.forget(bucket)

    async def _subject_count(self, bucket: str) -> int:
        stream = naming.stream_name(naming.nats_bucket(bucket))
        info = await self._api(f"STREAM.INFO.{stream}")
        if err := info.get("error"):
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"stream info {stream}: {err.get('description')}")
        return int((info.get("state") or {}).get("num_subjects") or 0)

    async def refresh_snapshots(self) -> None:
        """Keep the snapshots of the big indexes this gateway holds young enough to be used: rewrite one
        once it is a third of the way to too old and the bucket has changed, unless another gateway did."""
        if self.snapshots is None:
            return
        stale_after = self.snapshots.max_age / 3
        for bucket, index in list(self._heads.items()):
            # An index still being built is not saved: its snapshot would miss what is not applied yet.
            if not index.caught_up or len(index) < MIN_KEYS or index.delivered_seq <= index.snapshot_seq:
                continue
            if time.time() - index.snapshot_at < stale_after:
                continue
            head = await self.snapshots.head(naming.nats_bucket(bucket))
            if head is not None and time.time() - head.taken_at < stale_after:
                index.snapshot_at = head.taken_at  # another gateway keeps it fresh
                continue
            self._save_soon(bucket, index)

    async def _watch(
        self, bucket: str, index: _Watched, wildcard: Callable[[str], str], start_seq: int | None = None
    ) -> None:
        """Follow the bucket's subjects: from the start, the last message of each (a build), or every
        message from `start_seq` on (a replay after a snapshot)."""
        nb = naming.nats_bucket(bucket)

        async def on_msg(msg: Msg) -> None:
            index.apply(msg)

        if start_seq is None:
            policy, config = js_api.DeliverPolicy.LAST_PER_SUBJECT, None
        else:
            policy = js_api.DeliverPolicy.BY_START_SEQUENCE
            config = js_api.ConsumerConfig(deliver_policy=policy, opt_start_seq=start_seq)
        try:
            index.sub = await self._js.subscribe(
                wildcard(nb),
                stream=naming.stream_name(nb),
                ordered_consumer=True,
                deliver_policy=policy,
                config=config,
                cb=on_msg,
                pending_msgs_limit=-1,
                pending_bytes_limit=256 * 1024 * 1024,
            )
        except nats.js.errors.NotFoundError:
            raise BucketNotFound(bucket) from None
        except nats.errors.Error as exc:
            raise StoreUnavailable(f"watch on {bucket}: {exc!r}") from exc

    async def _stream_state(self, bucket: str) -> tuple[int, str]:
        """(last sequence, creation time) of the bucket's stream."""
        stream = naming.stream_name(naming.nats_bucket(bucket))
        info = await self._api(f"STREAM.INFO.{stream}")
        if err := info.get("error"):
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                await self.forget(bucket)
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"stream info {stream}: {err.get('description')}")
        return int((info.get("state") or {}).get("last_seq") or 0), str(info.get("created") or "")

    async def _catch_up(self, bucket: str, index: _Watched, wildcard: str, last: int) -> None:
        stream = naming.stream_name(naming.nats_bucket(bucket))
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while index.delivered_seq < last:
            # Other subjects share the stream: find the first message of ours the watch has not applied.
            resp = await self._api(
                f"STREAM.MSG.GET.{stream}", {"seq": index.delivered_seq + 1, "next_by_subj": wildcard}
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
        return self._heads.get(bucket)

    async def forget(self, bucket: str) -> None:
        for indexes in (self._heads, self._history):
            index = indexes.pop(bucket, None)
            if index is not None and index.sub is not None:
                with contextlib.suppress(Exception):
                    await index.sub.unsubscribe()

    async def prune(self) -> None:
        """Drop indexes unused for a while, and those of buckets deleted (perhaps through another gateway);
        refresh the snapshots of the big ones kept."""
        self._evict_idle()
        with contextlib.suppress(StoreUnavailable):
            await self.refresh_snapshots()
        for bucket in set(self._heads) | set(self._history):
            stream = naming.stream_name(naming.nats_bucket(bucket))
            with contextlib.suppress(StoreUnavailable):
                resp = await js_request(self._nc, f"STREAM.INFO.{stream}")
                if (resp.get("error") or {}).get("err_code") == ERR_STREAM_NOT_FOUND:
                    await self.forget(bucket)

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for indexes in (self._heads, self._history):
            for bucket, index in list(indexes.items()):
                if now - index.last_used > IDLE_EVICT_SECONDS:
                    indexes.pop(bucket, None)
                    if index.sub is not None:
                        asyncio.get_running_loop().create_task(index.sub.unsubscribe())

    async def wait_saves(self) -> None:
        """Until the snapshots being saved are (a short-lived process's builds serve the next gateway)."""
        while self._saving:
            await asyncio.gather(*self._saving.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._saving.values()):
            task.cancel()
        for bucket in set(self._heads) | set(self._history):
            await self.forget(bucket)
