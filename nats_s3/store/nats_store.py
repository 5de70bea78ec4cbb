"""The NATS JetStream implementation of the store: buckets as Object Store streams, objects and their
versions in them (writes in store/writes.py)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import api as js_api
from nats.nuid import NUID

from ..crypto.chunk_cipher import ChunkCipher, TamperedData
from . import naming
from .bucket_config import BucketConfig, BucketConfigs
from .chunks import ChunkReader
from .config_sources import ConfigSources
from .direct_reads import DirectReads, LastMessage, NotDirect
from .errors import (
    BucketAlreadyExists,
    BucketBusy,
    BucketNotEmpty,
    BucketNotFound,
    CorruptObject,
    InvalidPlacement,
    LatestIsDeleteMarker,
    ObjectNotFound,
    ReplicationRefused,
    StoreUnavailable,
    VersionIsDeleteMarker,
    VersionNotFound,
)
from .event_publisher import EventPublisher
from .fence import lift_fence, raise_fence, still_fenced
from .index_snapshot import IndexSnapshots
from .jsapi import (
    API_PREFIX,
    ERR_NO_MESSAGE,
    ERR_STREAM_NAME_IN_USE,
    ERR_STREAM_NOT_FOUND,
    js_request,
    stream_info,
    stream_update,
)
from .list_index import ListIndex, ListPage, VersionPage
from .models import BucketInfo, ObjectInfo, PartRef, parse_mtime
from .owner_quotas import OwnerQuotas
from .pauses import PausePoints
from .placement import Placement
from .publisher import Publisher
from .quotas import Quota, QuotaEnforcer, stream_max_bytes
from .read_cache import ReadCache
from .replicas import ReplicaRegistry, origin_in
from .sealed import ChunkOpener, open_chunks
from .versions import NULL, Versioning, is_marker, is_version, nullv_of, s3_version_id
from .writes import DeleteResult, Head, VersionedWrites, info_of, live_in_history, parse_doc

__all__ = ["DeleteResult", "Head", "NatsStore"]

ERR_NO_PEERS = 10005  # "no suitable peers for placement"
ERR_NO_PEERS_FOR = 10023  # "insufficient resources" where no server of the placement has room


class NatsStore(VersionedWrites):
    """Buckets, objects, versions and listings over one NATS connection."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        replicas: int = 1,
        chunk_size: int = 256 * 1024,
        write_window_bytes: int = 8 * 1024 * 1024,
        read_batch_bytes: int = 4 * 1024 * 1024,
        claim_refresh: float = 600.0,
        index_snapshot_max_age: float = 1800.0,
        read_cache_bytes: int = 0,
        total_quota_bytes: int = 0,
        placements: dict[str, Placement] | None = None,
    ) -> None:
        """`claim_refresh`: how often a write in progress claims its chunks again; keep it well under
        the collector's grace period (a third of it, say). `index_snapshot_max_age`: the oldest listing
        index snapshot used, at most half the grace (index_snapshot.py says why); 0 uses none.
        `read_cache_bytes`: how much the cache of small objects' bytes holds (store/read_cache.py); 0: none.
        `total_quota_bytes`: the most all buckets together may hold (0: no limit). `placements`: the
        regions buckets may be created for, and where their streams go (store/placement.py)."""
        self.nc = nc
        self.js = nc.jetstream()
        self.publisher = Publisher(nc)
        self.direct = DirectReads(nc)
        self.events = EventPublisher(nc, self.publisher)
        self.read_cache = ReadCache(read_cache_bytes) if read_cache_bytes > 0 else None
        self.nuid = NUID()
        self.replicas = replicas
        self.chunk_size = chunk_size
        self.write_window = max(1, write_window_bytes // chunk_size)
        self.read_batch_bytes = read_batch_bytes
        self.claim_refresh = claim_refresh
        self.configs = BucketConfigs(nc, self.js, self.publisher, replicas)
        snapshots = (
            IndexSnapshots(nc, self.publisher, replicas=replicas, max_age=index_snapshot_max_age)
            if index_snapshot_max_age > 0
            else None
        )
        self.index = ListIndex(nc, self.js, snapshots)
        self.placements = placements or {}
        self.owner_quotas = OwnerQuotas(self.configs.records)
        self.quotas = QuotaEnforcer(
            total_max_bytes=total_quota_bytes,
            bucket_bytes=self._stream_bytes,
            all_bucket_bytes=self._all_stream_bytes,
            live_objects=self._live_objects,
            owner_of=lambda bucket: self.configs.get(bucket).owner,
            owner_limit=self.owner_quotas.limit,
        )
        self.replica_origins = ReplicaRegistry(self.stream_info)
        self.config_sources = ConfigSources(nc, self.configs.records)
        self.pauses = PausePoints()
        # What else must agree before a bucket goes, and be forgotten once it went (multipart records).
        self.deletion_checks: list[Callable[[str], Awaitable[None]]] = []
        self.on_bucket_deleted: list[Callable[[str], Awaitable[None]]] = []

    async def start(self) -> None:
        """Load the bucket configurations (and keep them current) before serving."""
        await self.publisher.watch_leaders()
        await self.configs.start()

    async def close(self) -> None:
        await self.replica_origins.close()
        await self.index.close()
        await self.configs.close()
        await self.direct.close()
        await self.publisher.close()

    # ---- JetStream API plumbing -------------------------------------------------------------

    async def _api(self, subject: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        return await js_request(self.nc, subject, payload)

    async def jetstream_problem(self) -> str | None:
        try:
            resp = await self._api("INFO")
        except StoreUnavailable as exc:
            return f"JetStream does not answer: {exc}"
        if err := resp.get("error"):
            return f"JetStream: {err.get('description')}"
        return None

    # ---- buckets ------------------------------------------------------------------------------

    async def create_bucket(self, bucket: str, owner: str = "", region: str | None = None) -> BucketInfo:
        """`owner`: the creating principal's canonical user id, kept in the bucket's configuration.
        `region`: a region of the placement map (InvalidPlacement otherwise), whose cluster, tags and
        replicas the bucket's stream gets; None: `replicas` and the server's default placement."""
        placement = None
        if region is not None:
            placement = self.placements.get(region)
            if placement is None:
                raise InvalidPlacement(f"{region} is not a region of the placement map")
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        # The server answers a create with an identical config by returning the existing stream.
        with contextlib.suppress(BucketNotFound):
            await self.head_bucket(bucket)
            raise BucketAlreadyExists(bucket)
        config = js_api.StreamConfig(
            name=stream,
            description=f"nats-s3 bucket {bucket}",
            subjects=naming.stream_subjects(nb),
            storage=js_api.StorageType.FILE,
            num_replicas=(placement.replicas if placement and placement.replicas else self.replicas),
            discard=js_api.DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            allow_direct=True,
            metadata={"nats-s3.bucket": bucket, **({"nats-s3.region": region} if region else {})},
        )
        request = config.as_dict()
        if placement is not None and (where := placement.stream_placement()) is not None:
            request["placement"] = where
        resp = await self._api(f"STREAM.CREATE.{stream}", request)
        if err := resp.get("error"):
            if err.get("err_code") == ERR_STREAM_NAME_IN_USE:
                raise BucketAlreadyExists(bucket)
            if placement is not None and err.get("err_code") in (ERR_NO_PEERS, ERR_NO_PEERS_FOR):
                raise InvalidPlacement(f"NATS cannot place {region}: {err.get('description')}")
            raise StoreUnavailable(f"create stream {stream}: {err.get('description')}")
        # A replicate command of this name that died half way (store/replication.py) may have left the
        # sources of its records: they would keep bringing the origin's settings into this bucket. Looked
        # for only once the stream is ours: those of a live replica of this name are not stale.
        if await self.config_sources.present(bucket):
            await self.config_sources.remove(bucket)
        info = BucketInfo(bucket, _parse_created(resp.get("created")))
        await self.configs.create(bucket, info.created, owner, region)
        return info

    async def set_quota(self, bucket: str, quota: Quota | None) -> BucketConfig:
        """Set (None or unlimited: remove) the bucket's quota: its stream's max_bytes first, so that
        the limit holds for every writer from the moment the configuration says so."""
        if quota is not None and quota.unlimited:
            quota = None
        info = await self.stream_info(bucket)
        config = info["config"]
        if origin_in(config) is not None:
            raise ReplicationRefused(
                f"bucket {bucket} is a replica: it has the origin's quota, applied here when it is promoted"
            )
        wanted = stream_max_bytes(quota)
        if int(config.get("max_bytes") or -1) != wanted:
            await stream_update(self.nc, {**config, "max_bytes": wanted}, missing=bucket)
        if not self.configs.known(bucket):
            await self.configs.adopt(bucket, _parse_created(info.get("created")))
        updated = await self.configs.set_fields(bucket, quota=quota)
        self.quotas.forget(bucket)
        return updated

    async def _stream_bytes(self, bucket: str) -> int:
        return int(((await self.stream_info(bucket)).get("state") or {}).get("bytes") or 0)

    async def _all_stream_bytes(self) -> dict[str, int]:
        return {name: int((info.get("state") or {}).get("bytes") or 0) async for name, info in self._bucket_streams()}

    async def _live_objects(self, bucket: str) -> int:
        return len(await self.index.current(bucket))

    async def stream_info(self, bucket: str, *, api: str = API_PREFIX) -> dict[str, Any]:
        """The info of the bucket's stream (`api`: in another JetStream domain)."""
        return await stream_info(self.nc, naming.stream_name(naming.nats_bucket(bucket)), api=api, missing=bucket)

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return BucketInfo(bucket, _parse_created((await self.stream_info(bucket)).get("created")))

    async def ensure_ready(self, bucket: str) -> None:
        """Before a write: a bucket made by an earlier gateway version gets the subjects and the
        configuration record this one uses. Known buckets cost nothing."""
        if self.configs.known(bucket):
            return
        info = await self.stream_info(bucket)
        config = info["config"]
        if origin_in(config) is not None:
            return  # a replica: its record comes from the origin (store/replication.py), it takes no writes
        wanted = naming.stream_subjects(naming.nats_bucket(bucket))
        if set(wanted) - set(config.get("subjects") or []):
            await stream_update(self.nc, {**config, "subjects": wanted}, missing=bucket)
        await self.configs.adopt(bucket, _parse_created(info.get("created")))

    async def list_buckets(self) -> list[BucketInfo]:
        buckets = [
            BucketInfo(name, _parse_created(info.get("created")), self.replica_origins.learn(name, info))
            async for name, info in self._bucket_streams()
        ]
        buckets.sort(key=lambda b: b.name)
        return buckets

    async def usage(self) -> dict[str, tuple[int, int | None]]:
        """Per bucket: bytes its stream holds, and live objects where this gateway has the listing index."""
        out: dict[str, tuple[int, int | None]] = {}
        async for name, info in self._bucket_streams():
            index = self.index.loaded(name)
            out[name] = (int((info.get("state") or {}).get("bytes") or 0), len(index) if index is not None else None)
        return out

    async def _bucket_streams(self) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
        """(S3 bucket name, stream info) of every Object Store stream with a valid S3 name, and of every
        replica's (a mirror of such a stream, which has no subjects of its own)."""
        offset = 0
        while True:
            resp = await self._api("STREAM.LIST", {"offset": offset})
            if err := resp.get("error"):
                raise StoreUnavailable(f"stream list: {err.get('description')}")
            streams = resp.get("streams") or []
            for info in streams:
                config = info.get("config") or {}
                name = str(config.get("name") or "")
                s3name = naming.s3_bucket(name[4:]) if name.startswith("OBJ_") else None
                if s3name is None:
                    continue
                origin = origin_in(config)
                nb = name[4:]
                if naming.meta_wildcard(nb) in (config.get("subjects") or []) or (
                    origin is not None and origin.stream == name
                ):
                    yield s3name, info
            offset += len(streams)
            if not streams or offset >= int(resp.get("total", 0)):
                return

    async def _check_empty(self, bucket: str) -> None:
        """BucketNotEmpty while any version or delete marker is left (uploads in progress go with the bucket)."""
        index = await self.index.current(bucket)
        if len(index) or index.markers:
            raise BucketNotEmpty(bucket)
        history = await self.index.history(bucket)
        if history.any_live(index):
            raise BucketNotEmpty(bucket)
        for check in self.deletion_checks:
            await check(bucket)

    async def delete_bucket(self, bucket: str) -> None:
        """Delete an empty bucket. Writes are fenced off while emptiness is checked (store/fence.py), so
        a write acknowledged through any gateway is either seen by the check or refused."""
        stream = naming.stream_name(naming.nats_bucket(bucket))
        await self.head_bucket(bucket)
        await self._check_empty(bucket)  # the common refusal, without touching the stream
        if self.pauses.active:
            await self.pauses.reach("delete_bucket.before_fence")
        fence = await raise_fence(self.nc, stream)
        deleted = False
        try:
            if self.pauses.active:
                await self.pauses.reach("delete_bucket.fenced")
            await self._check_empty(bucket)
            if not await still_fenced(self.nc, stream, fence):
                raise BucketBusy(bucket)  # another DeleteBucket took over, or ours took too long
            await self.index.forget(bucket)
            resp = await self._api(f"STREAM.DELETE.{stream}")
            if err := resp.get("error"):
                if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                    raise BucketNotFound(bucket)
                raise StoreUnavailable(f"delete stream {stream}: {err.get('description')}")
            deleted = True
        finally:
            if not deleted:
                with contextlib.suppress(BucketNotFound, StoreUnavailable):
                    await lift_fence(self.nc, stream, fence.token)
        await self._forget_bucket(bucket)

    async def drop_replica(self, bucket: str) -> None:
        """Delete a replica here, whatever it holds (the origin keeps the bucket): its sources stop,
        its stream and records go. ReplicationRefused for a bucket of this site's own."""
        info = await self.stream_info(bucket)
        if origin_in(info.get("config")) is None:
            raise ReplicationRefused(f"bucket {bucket} is not a replica; delete it as any bucket (emptied first)")
        await self.config_sources.remove(bucket)
        await self.index.forget(bucket)
        stream = info["config"]["name"]
        resp = await self._api(f"STREAM.DELETE.{stream}")
        if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NOT_FOUND:
            raise StoreUnavailable(f"delete stream {stream}: {err.get('description')}")
        await self._forget_bucket(bucket)

    async def _forget_bucket(self, bucket: str) -> None:
        """After a bucket's stream went: what is kept about the bucket elsewhere goes too."""
        self.direct.forget(naming.stream_name(naming.nats_bucket(bucket)))
        self.replica_origins.forget(bucket)
        if await self.config_sources.present(bucket):
            await self.config_sources.remove(bucket)
        await self.configs.forget(bucket)
        if self.index.snapshots is not None:
            with contextlib.suppress(StoreUnavailable):  # derived data; a stale one is never used anyway
                await self.index.snapshots.forget(naming.nats_bucket(bucket))
        for forget in self.on_bucket_deleted:
            await forget(bucket)

    # ---- versioning ------------------------------------------------------------------------------

    def versioning(self, bucket: str) -> Versioning:
        return self.configs.versioning(bucket)

    async def set_versioning(self, bucket: str, state: Versioning) -> None:
        await self.ensure_ready(bucket)

        def change(config: Any) -> Any:
            config.versioning = state.value
            return config

        await self.configs.update(bucket, change)

    # ---- reading metadata -------------------------------------------------------------------------

    async def _last_on(self, bucket: str, subject: str) -> Head | None:
        """The last message on a subject of the bucket's stream, as its leader has it.

        As the leader has it, not as a replica that may be behind, so that a read right after a write
        (through this gateway or another) sees it, and compare-and-set writes compare with the truth:
        a direct get where the stream has one replica (store/direct_reads.py), else the leader's API.
        """
        stream = naming.stream_name(naming.nats_bucket(bucket))
        try:
            last = await self.direct.last_on(stream, subject)
        except NotDirect:
            last = await self._last_from_leader(bucket, stream, subject)
        if last is None:
            return None
        try:
            doc = parse_doc(last.data, subject)
        except Exception as exc:
            raise CorruptObject(f"unreadable record {subject}") from exc
        return Head(last.seq, doc)

    async def _last_from_leader(self, bucket: str, stream: str, subject: str) -> LastMessage | None:
        resp = await self._api(f"STREAM.MSG.GET.{stream}", {"last_by_subj": subject})
        if err := resp.get("error"):
            code = err.get("err_code")
            if code == ERR_NO_MESSAGE:
                return None
            if code == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"{subject}: {err.get('description')}")
        message = resp.get("message") or {}
        return LastMessage(int(message.get("seq", 0)), base64.b64decode(message.get("data") or ""))

    async def read_head(self, bucket: str, key: str) -> Head | None:
        """The key's meta message: its latest version, a deletion, or None."""
        return await self._last_on(bucket, naming.meta_subject(naming.nats_bucket(bucket), key))

    async def read_version(self, bucket: str, key: str, uid: str) -> Head | None:
        return await self._last_on(bucket, naming.version_subject(naming.nats_bucket(bucket), key, uid))

    async def head_object(self, bucket: str, key: str, version_id: str | None = None) -> ObjectInfo:
        """The latest version of a key, or the version `version_id`."""
        head = await self.read_head(bucket, key)
        latest = head.doc if head is not None and is_version(head.doc) else None
        if version_id is None:
            if head is None or latest is None or (latest.options and latest.options.link):
                raise ObjectNotFound(key)  # links to other stores are not served over S3
            if is_marker(latest):
                raise LatestIsDeleteMarker(key, s3_version_id(latest), parse_mtime(latest.mtime))
            return info_of(head, key, bucket, latest=True)
        found: Head | None = None
        if head is not None and latest is not None and s3_version_id(latest) == version_id:
            found, is_latest = head, True
        else:
            uid = (nullv_of(latest) if latest is not None else None) if version_id == NULL else version_id
            found = await self.read_version(bucket, key, uid) if uid is not None else None
            if found is None or not live_in_history(found.doc, latest):
                raise VersionNotFound(key)
            is_latest = False
        if is_marker(found.doc):
            raise VersionIsDeleteMarker(key, version_id, parse_mtime(found.doc.mtime))
        return info_of(found, key, bucket, latest=is_latest)

    # ---- reading bytes ------------------------------------------------------------------------

    def read_object(
        self, info: ObjectInfo, start: int = 0, end: int | None = None, *, data_key: bytes | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end] (inclusive) of an object version found by head_object; reads no chunk
        before start. A version overwritten or deleted meanwhile is still read in full: its chunks
        stay until the collector's grace period has passed. An encrypted version needs its `data_key`
        (the envelope's, opened by the caller): its layout is checked before anything is read, and each
        chunk as it is opened; what does not check out is CorruptObject, never other bytes."""
        last = info.size - 1 if end is None else min(end, info.size - 1)
        if info.sse:
            return self._read(info, start, last, open_chunks(info, data_key))
        if self.read_cache is not None and self.read_cache.holds(info) and start <= last:
            return self._read_cached(self.read_cache, info, start, last)
        return self._read(info, start, last)

    async def _read_cached(
        self, cache: ReadCache, info: ObjectInfo, start: int, last: int
    ) -> AsyncGenerator[bytes, None]:
        """A small object from the cache, or read whole from NATS into it (a range of it included)."""
        data = cache.get(info)
        if data is None:
            async with contextlib.aclosing(self._read(info, 0, info.size - 1)) as pieces:
                data = b"".join([piece async for piece in pieces])
            cache.put(info, data)
        yield data if start == 0 and last == len(data) - 1 else data[start : last + 1]

    async def _read(
        self, info: ObjectInfo, start: int, last: int, opener: ChunkOpener | None = None
    ) -> AsyncGenerator[bytes, None]:
        if info.size == 0 or start > last:
            return
        stream = naming.stream_name(naming.nats_bucket(info.bucket))
        offset = 0
        for part in info.layout():
            part_end = offset + part.size - 1
            if part.size and part_end >= start and offset <= last:
                cipher = opener(part.nuid) if opener is not None else None
                lo, hi = max(start - offset, 0), min(last, part_end) - offset
                async with contextlib.aclosing(self._read_part(stream, info, part, lo, hi, cipher)) as pieces:
                    async for data in pieces:
                        yield data
            offset += part.size
            if offset > last:
                break

    async def _read_part(
        self, stream: str, info: ObjectInfo, part: PartRef, start: int, last: int, cipher: ChunkCipher | None
    ) -> AsyncGenerator[bytes, None]:
        """Bytes [start, last] of one chunk subject; with sequence runs, no chunk before `start` is fetched.
        `cipher` opens each chunk of an encrypted object."""
        subject = naming.chunk_subject(naming.nats_bucket(info.bucket), part.nuid)
        indexed = bool(part.runs) and part.chunk_size > 0
        if indexed:
            first = start // part.chunk_size
            count = last // part.chunk_size - first + 1
            pos = first * part.chunk_size
        else:
            first, count, pos = 0, part.chunks, 0
        reader = ChunkReader(
            self.nc,
            stream,
            subject,
            runs=part.runs if indexed else (),
            first=first,
            count=count,
            chunk_size=part.chunk_size or self.chunk_size,
            batch_bytes=self.read_batch_bytes,
        )
        index = first
        async with contextlib.aclosing(reader.__aiter__()) as chunks:
            async for stored in chunks:
                if cipher is None:
                    data = stored
                else:
                    try:
                        data = cipher.open(index, stored)
                    except TamperedData as exc:
                        raise CorruptObject(f"{info.bucket}/{info.key}: {exc} on {subject}") from None
                    index += 1
                n = len(data)
                lo = max(start - pos, 0)
                hi = min(last + 1 - pos, n)
                pos += n
                if hi <= 0 or lo >= n:
                    continue
                yield data if lo == 0 and hi == n else data[lo:hi]
                if pos > last:
                    break
        if pos <= last:
            raise CorruptObject(f"{info.bucket}/{info.key}: stored chunks end at {pos} of {part.size}")

    # ---- listing ------------------------------------------------------------------------------

    async def list_page(self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
        """One page of a listing from the bucket's index (caught up with the stream first)."""
        index = await self.index.current(bucket)
        if max_keys <= 0:
            return ListPage([], [], False, None)  # S3: no keys, and not truncated
        return index.page(prefix, delimiter, after, max_keys)

    async def list_versions_page(
        self, bucket: str, prefix: str, delimiter: str, key_marker: str, version_marker: str | None, max_keys: int
    ) -> VersionPage:
        """One page of ListObjectVersions: every version and delete marker in key order, newest first."""
        index, history = await self.index.current_with_history(bucket)
        return history.versions_page(index, prefix, delimiter, key_marker, version_marker, max_keys)


def _parse_created(value: Any) -> datetime:
    if isinstance(value, str) and value:
        return parse_mtime(value)
    return datetime.now(UTC)
