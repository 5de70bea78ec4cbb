"""The NATS JetStream implementation of the store: buckets as Object Store streams, objects in its format."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import api as js_api
from pydantic import ValidationError

from . import naming
from .chunks import ChunkReader, ChunkWriter, WrittenChunks
from .errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    BucketNotFound,
    CorruptObject,
    ObjectNotFound,
    PreconditionFailed,
    StoreUnavailable,
    WriteConflict,
)
from .jsapi import (
    API_TIMEOUT,
    ERR_NO_MESSAGE,
    ERR_STREAM_NAME_IN_USE,
    ERR_STREAM_NOT_FOUND,
    ERR_WRONG_LAST_SEQUENCE,
    js_request,
)
from .list_index import ListIndex, ListPage
from .models import (
    META_CHECKSUM,
    META_ETAG,
    META_SEQS,
    BodyDigests,
    BucketInfo,
    Checksum,
    ObjectInfo,
    PartRef,
    StoredObjectInfo,
    StoredOptions,
    WriteCondition,
    chunk_nuids,
    encode_seq_runs,
    format_mtime,
    parse_mtime,
    to_object_info,
)

COMMIT_RETRIES = 16

BeforeCommit = Callable[[BodyDigests], Awaitable[Checksum | None]]


def _digest_string(sha256: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(sha256).decode()


class NatsStore:
    """Buckets, objects and listings over one NATS connection."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        replicas: int = 1,
        chunk_size: int = 256 * 1024,
        write_window_bytes: int = 8 * 1024 * 1024,
        read_batch_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.replicas = replicas
        self.chunk_size = chunk_size
        self.write_window = max(1, write_window_bytes // chunk_size)
        self.read_batch_bytes = read_batch_bytes
        self.index = ListIndex(nc, self.js)

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

    async def create_bucket(self, bucket: str) -> BucketInfo:
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        # The server answers a create with an identical config by returning the existing stream.
        with contextlib.suppress(BucketNotFound):
            await self.head_bucket(bucket)
            raise BucketAlreadyExists(bucket)
        config = js_api.StreamConfig(
            name=stream,
            description=f"nats-s3 bucket {bucket}",
            subjects=[naming.chunk_wildcard(nb), naming.meta_wildcard(nb)],
            storage=js_api.StorageType.FILE,
            num_replicas=self.replicas,
            discard=js_api.DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            allow_direct=True,
            metadata={"nats-s3.bucket": bucket},
        )
        resp = await self._api(f"STREAM.CREATE.{stream}", config.as_dict())
        if err := resp.get("error"):
            if err.get("err_code") == ERR_STREAM_NAME_IN_USE:
                raise BucketAlreadyExists(bucket)
            raise StoreUnavailable(f"create stream {stream}: {err.get('description')}")
        return BucketInfo(bucket, _parse_created(resp.get("created")))

    async def head_bucket(self, bucket: str) -> BucketInfo:
        stream = naming.stream_name(naming.nats_bucket(bucket))
        resp = await self._api(f"STREAM.INFO.{stream}")
        if err := resp.get("error"):
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"stream info {stream}: {err.get('description')}")
        return BucketInfo(bucket, _parse_created(resp.get("created")))

    async def list_buckets(self) -> list[BucketInfo]:
        buckets = [BucketInfo(name, _parse_created(info.get("created"))) async for name, info in self._bucket_streams()]
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
        """(S3 bucket name, stream info) of every Object Store stream with a valid S3 name."""
        offset = 0
        while True:
            resp = await self._api("STREAM.LIST", {"offset": offset, "subject": "$O.*.M.>"})
            if err := resp.get("error"):
                raise StoreUnavailable(f"stream list: {err.get('description')}")
            streams = resp.get("streams") or []
            for info in streams:
                name = info.get("config", {}).get("name", "")
                s3name = naming.s3_bucket(name[4:]) if name.startswith("OBJ_") else None
                if s3name is not None:
                    yield s3name, info
            offset += len(streams)
            if not streams or offset >= int(resp.get("total", 0)):
                return

    async def delete_bucket(self, bucket: str) -> None:
        stream = naming.stream_name(naming.nats_bucket(bucket))
        await self.head_bucket(bucket)
        if len(await self.index.current(bucket)):
            raise BucketNotEmpty(bucket)
        await self.index.forget(bucket)
        resp = await self._api(f"STREAM.DELETE.{stream}")
        if err := resp.get("error"):
            if err.get("err_code") == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"delete stream {stream}: {err.get('description')}")

    # ---- object metadata ----------------------------------------------------------------------

    async def last_meta(self, bucket: str, key: str) -> tuple[int, StoredObjectInfo] | None:
        """The key's current meta message, read from the stream leader.

        The leader, not a direct get that any replica may answer, so that a read right after a write
        (through this gateway or another) sees it, and conditional writes compare against the truth.
        """
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        resp = await self._api(f"STREAM.MSG.GET.{stream}", {"last_by_subj": naming.meta_subject(nb, key)})
        if err := resp.get("error"):
            code = err.get("err_code")
            if code == ERR_NO_MESSAGE:
                return None
            if code == ERR_STREAM_NOT_FOUND:
                raise BucketNotFound(bucket)
            raise StoreUnavailable(f"meta of {bucket}/{key}: {err.get('description')}")
        message = resp.get("message") or {}
        try:
            doc = StoredObjectInfo.model_validate_json(base64.b64decode(message.get("data") or ""))
        except (ValidationError, ValueError) as exc:
            raise CorruptObject(f"unreadable meta for {bucket}/{key}") from exc
        return int(message.get("seq", 0)), doc

    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        found = await self.last_meta(bucket, key)
        if found is None or found[1].deleted:
            raise ObjectNotFound(key)
        seq, doc = found
        if doc.options and doc.options.link:
            raise ObjectNotFound(key)  # links to other stores are not served over S3
        return to_object_info(doc, key, bucket, seq)

    # ---- reading ------------------------------------------------------------------------------

    def read_object(self, info: ObjectInfo, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end] (inclusive) of an object found by head_object; reads no chunk before start."""
        last = info.size - 1 if end is None else min(end, info.size - 1)
        return self._read(info, start, last)

    async def _read(self, info: ObjectInfo, start: int, last: int) -> AsyncGenerator[bytes, None]:
        if info.size == 0 or start > last:
            return
        stream = naming.stream_name(naming.nats_bucket(info.bucket))
        offset = 0
        for part in info.layout():
            part_end = offset + part.size - 1
            if part.size and part_end >= start and offset <= last:
                async with contextlib.aclosing(
                    self._read_part(stream, info, part, max(start - offset, 0), min(last, part_end) - offset)
                ) as pieces:
                    async for data in pieces:
                        yield data
            offset += part.size
            if offset > last:
                break

    async def _read_part(
        self, stream: str, info: ObjectInfo, part: PartRef, start: int, last: int
    ) -> AsyncGenerator[bytes, None]:
        """Bytes [start, last] of one chunk subject; with sequence runs, no chunk before `start` is fetched."""
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
        async with contextlib.aclosing(reader.__aiter__()) as chunks:
            async for data in chunks:
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

    # ---- writing ------------------------------------------------------------------------------

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        headers: dict[str, str],
        *,
        before_commit: BeforeCommit | None = None,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:
        """Stream `body` into new chunks, then commit the meta; the old version's chunks go after.

        Nothing is visible until the meta message lands, and a failure anywhere purges the new
        chunks, so the previous version stays intact. `before_commit` sees the body's digests and
        may refuse the write by raising; it returns the checksum to record, if any.
        """
        nb = naming.nats_bucket(bucket)
        # Fails fast on a missing bucket or an unmet condition, before any body byte is read.
        current = await self.last_meta(bucket, key)
        if condition is not None:
            self._check_condition(current, condition, key)
        nuid, written = await self.write_chunks(bucket, body)
        try:
            checksum = None
            if before_commit is not None:
                checksum = await before_commit(BodyDigests(written.size, written.md5, written.sha256))
            metadata = {META_ETAG: written.md5.hex(), META_SEQS: encode_seq_runs(written.runs)}
            if checksum is not None:
                metadata[META_CHECKSUM] = f"{checksum[0]}:{checksum[1]}"
            doc = StoredObjectInfo(
                name=key,
                bucket=nb,
                nuid=nuid,
                size=written.size,
                mtime=format_mtime(datetime.now(UTC)),
                chunks=written.chunks,
                digest=_digest_string(written.sha256),
                headers={name: [value] for name, value in headers.items()},
                metadata=metadata,
                options=StoredOptions(max_chunk_size=self.chunk_size),
            )
            seq, replaced = await self.commit_meta(bucket, key, doc, condition)
        except BaseException:
            await asyncio.shield(self.purge_chunks(bucket, nuid))
            raise
        if replaced is not None:
            await self.purge_object_chunks(bucket, replaced, keep=nuid)
        return to_object_info(doc, key, bucket, seq)

    async def write_chunks(self, bucket: str, body: AsyncIterator[bytes]) -> tuple[str, WrittenChunks]:
        """Stream a body onto a fresh chunk subject of the bucket; on any failure its chunks are purged."""
        nb = naming.nats_bucket(bucket)
        stream = naming.stream_name(nb)
        nuid = self.nc._nuid.next().decode()
        subject = naming.chunk_subject(nb, nuid)
        writer = ChunkWriter(self.js, subject, stream, self.chunk_size, self.write_window)
        try:
            return nuid, await writer.write_all(body)
        except BaseException:
            await asyncio.shield(self._purge_quietly(stream, subject))
            raise

    async def purge_chunks(self, bucket: str, nuid: str) -> None:
        nb = naming.nats_bucket(bucket)
        await self._purge_quietly(naming.stream_name(nb), naming.chunk_subject(nb, nuid))

    async def purge_object_chunks(self, bucket: str, doc: StoredObjectInfo, keep: str | None = None) -> None:
        for nuid in chunk_nuids(doc):
            if nuid != keep:
                await self.purge_chunks(bucket, nuid)

    @staticmethod
    def _check_condition(found: tuple[int, StoredObjectInfo] | None, condition: WriteCondition, key: str) -> None:
        live = found is not None and not found[1].deleted
        if condition.if_none_match_star and live:
            raise PreconditionFailed(key)
        if condition.if_match is not None:
            if not live or found is None:
                raise ObjectNotFound(key)
            current = to_object_info(found[1], key, "", found[0]).etag
            if condition.if_match != "*" and condition.if_match != current:
                raise PreconditionFailed(key)

    async def commit_meta(
        self, bucket: str, key: str, doc: StoredObjectInfo, condition: WriteCondition | None
    ) -> tuple[int, StoredObjectInfo | None]:
        """Publish the meta as the subject's only message, expecting the version we last saw.

        Returns the new sequence and the live version replaced (whose chunks the caller purges).
        Expecting the last subject sequence makes concurrent writers serialise: each one learns
        exactly which version it replaced, so no chunks are orphaned by a lost race.
        """
        payload = doc.model_dump_json(exclude_none=True).encode()
        for _ in range(COMMIT_RETRIES):
            found = await self.last_meta(bucket, key)
            if condition is not None:
                self._check_condition(found, condition, key)
            seq = await self._publish_meta(bucket, key, payload, found[0] if found else 0)
            if seq is None:
                continue
            replaced = found[1] if found and not found[1].deleted else None
            return seq, replaced
        if condition is not None:
            raise PreconditionFailed(key)
        raise WriteConflict(key)

    async def _publish_meta(self, bucket: str, key: str, payload: bytes, expected: int) -> int | None:
        """Publish a meta message as its subject's only one, if the subject is still at `expected`.

        Returns the new sequence, or None when another writer got there first.
        """
        nb = naming.nats_bucket(bucket)
        headers = {"Nats-Rollup": "sub", "Nats-Expected-Last-Subject-Sequence": str(expected)}
        try:
            ack = await self.js.publish(naming.meta_subject(nb, key), payload, timeout=API_TIMEOUT, headers=headers)
        except nats.js.errors.APIError as exc:
            if exc.err_code == ERR_WRONG_LAST_SEQUENCE:
                return None
            raise StoreUnavailable(f"meta publish: {exc.description}") from exc
        except nats.errors.NoRespondersError as exc:
            raise BucketNotFound(bucket) from exc
        except (nats.errors.TimeoutError, nats.errors.Error) as exc:
            raise StoreUnavailable(f"meta publish: {exc!r}") from exc
        return int(ack.seq)

    async def update_headers(self, bucket: str, key: str, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        """Rewrite an object's stored headers in place (same bytes, same ETag), compare-and-set."""
        for _ in range(COMMIT_RETRIES):
            found = await self.last_meta(bucket, key)
            if found is None or found[1].deleted:
                raise ObjectNotFound(key)
            seq, doc = found
            current = {name.lower(): values[0] for name, values in (doc.headers or {}).items() if values}
            updated = doc.model_copy(update={"headers": {n: [v] for n, v in change(current).items()}})
            if await self._publish_meta(bucket, key, updated.model_dump_json(exclude_none=True).encode(), seq):
                return
        raise WriteConflict(key)

    async def _purge_quietly(self, stream: str, subject: str) -> None:
        # A failed purge leaves unreachable chunks (no meta points at them), never a broken object.
        with contextlib.suppress(Exception):
            await self._api(f"STREAM.PURGE.{stream}", {"filter": subject})

    async def delete_object(self, bucket: str, key: str) -> None:
        nb = naming.nats_bucket(bucket)
        for _ in range(COMMIT_RETRIES):
            found = await self.last_meta(bucket, key)
            if found is None or found[1].deleted:
                return
            seq, doc = found
            marker = StoredObjectInfo(name=key, bucket=nb, nuid=doc.nuid, deleted=True, mtime="")
            if await self._publish_meta(bucket, key, marker.model_dump_json(exclude_none=True).encode(), seq) is None:
                continue
            await self.purge_object_chunks(bucket, doc)
            return
        raise WriteConflict(key)

    # ---- listing ------------------------------------------------------------------------------

    async def list_page(self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
        """One page of a listing from the bucket's index (caught up with the stream first)."""
        index = await self.index.current(bucket)
        if max_keys <= 0:
            return ListPage([], [], index.has_more(prefix, after), None)
        return index.page(prefix, delimiter, after, max_keys)

    async def close(self) -> None:
        await self.index.close()


def _parse_created(value: Any) -> datetime:
    if isinstance(value, str) and value:
        return parse_mtime(value)
    return datetime.now(UTC)
