"""Snapshots of a bucket's listing index (latest versions), kept in NATS so that a gateway that lists a
big bucket for the first time loads the packed index in one read instead of replaying a meta message
per key, then replays only what the stream got since.

Layout: stream NATS_S3_INDEX (an upper-case name: no S3 bucket maps to it), per bucket a head record
on `nats_s3.index.<bucket>.head` (rolled up: only the last is kept) naming the snapshot's chunk subject
`nats_s3.index.<bucket>.c.<id>`, the stream sequence it covers, the creation time of the bucket's
stream, when it was taken, its size and SHA-256, and the chunks' sequence runs.

A snapshot is only used while it is younger than half the collector's grace: the collector purges a
deletion's meta record (the message a replay needs to see the key go) only once the grace has passed
since the deletion, so every deletion after a young enough snapshot is still in the stream. A snapshot
of a bucket deleted and created again does not match the new stream's creation time. A damaged one
(digest, size, layout) is ignored and the index is built from the stream, as without snapshots.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import struct
import time
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import api as js_api
from nats.nuid import NUID
from pydantic import BaseModel, ValidationError

from .chunks import ChunkReader, ChunkWriter
from .errors import CorruptObject, StoreUnavailable
from .jsapi import ERR_NO_MESSAGE, ERR_STREAM_NAME_IN_USE, ERR_STREAM_NOT_FOUND, js_request
from .packed_entries import PackedEntries
from .publisher import Publisher

log = logging.getLogger("nats_s3.store.index")

STREAM = "NATS_S3_INDEX"
SUBJECTS = "nats_s3.index.>"
CHUNK_SIZE = 512 * 1024
WRITE_WINDOW = 8
MIN_KEYS = 10_000  # smaller indexes build from the stream in well under a second
_MAGIC = b"NSX1"
_U32 = struct.Struct("<I")
_BLOCK = struct.Struct("<II")  # records, blob bytes


def head_subject(nats_bucket: str) -> str:
    return f"nats_s3.index.{nats_bucket}.head"


def chunk_subject(nats_bucket: str, snapshot_id: str) -> str:
    return f"nats_s3.index.{nats_bucket}.c.{snapshot_id}"


class SnapshotHead(BaseModel):
    id: str
    seq: int  # the bucket stream's sequence the snapshot reflects, every message up to it applied
    stream_created: str  # the bucket stream's creation time, as stream info gives it
    taken_at: float  # POSIX seconds
    keys: int
    size: int
    sha256: str
    runs: list[tuple[int, int]]
    chunks: int


@dataclass(slots=True)
class IndexState:
    """What a snapshot holds: the packed latest versions, and the few per-key facts kept beside them."""

    seq: int
    taken_at: float
    objects: PackedEntries
    markers: dict[str, tuple[str, float]]  # key -> (version id, mtime) of a delete marker on top
    nullv: dict[str, str]  # key -> uid of its older null version


def encode_state(state: IndexState) -> list[bytes]:
    blocks = state.objects.export()
    out = [_MAGIC, _U32.pack(len(blocks))]
    for blob, offsets in blocks:
        out += [_BLOCK.pack(len(offsets), len(blob)), offsets.tobytes(), blob]
    extras = json.dumps({"markers": state.markers, "nullv": state.nullv}, separators=(",", ":")).encode()
    out += [_U32.pack(len(extras)), extras]
    return out


def decode_state(data: bytes, seq: int, taken_at: float) -> IndexState:
    """The state `encode_state` wrote; CorruptObject on anything that does not fit."""
    view = memoryview(data)
    try:
        if bytes(view[:4]) != _MAGIC:
            raise CorruptObject("index snapshot: bad magic")
        (count,) = _U32.unpack_from(view, 4)
        at = 8
        blocks: list[tuple[bytes, array[int]]] = []
        for _ in range(count):
            records, size = _BLOCK.unpack_from(view, at)
            at += _BLOCK.size
            offsets = array("I")
            offsets.frombytes(view[at : at + 4 * records])
            at += 4 * records
            blob = bytes(view[at : at + size])
            at += size
            if len(offsets) != records or len(blob) != size:
                raise CorruptObject("index snapshot: truncated")
            blocks.append((blob, offsets))
        (extras_size,) = _U32.unpack_from(view, at)
        extras = json.loads(bytes(view[at + 4 : at + 4 + extras_size]))
        if at + 4 + extras_size != len(data):
            raise CorruptObject("index snapshot: trailing bytes")
        objects = PackedEntries()
        objects.restore(blocks)
        markers = {str(k): (str(v[0]), float(v[1])) for k, v in extras["markers"].items()}
        nullv = {str(k): str(v) for k, v in extras["nullv"].items()}
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptObject(f"index snapshot: {exc}") from None
    return IndexState(seq, taken_at, objects, markers, nullv)


class IndexSnapshots:
    def __init__(self, nc: NatsClient, publisher: Publisher, *, replicas: int, max_age: float) -> None:
        """`max_age`: the oldest snapshot still used (half the collector's grace)."""
        self._nc = nc
        self._publisher = publisher
        self._replicas = replicas
        self.max_age = max_age
        self._nuid = NUID()
        self._stream_ready = False

    async def head(self, nats_bucket: str) -> SnapshotHead | None:
        resp = await js_request(self._nc, f"STREAM.MSG.GET.{STREAM}", {"last_by_subj": head_subject(nats_bucket)})
        if err := resp.get("error"):
            if err.get("err_code") in (ERR_NO_MESSAGE, ERR_STREAM_NOT_FOUND):
                return None
            raise StoreUnavailable(f"index snapshot head: {err.get('description')}")
        try:
            return SnapshotHead.model_validate_json(base64.b64decode((resp.get("message") or {}).get("data") or ""))
        except (ValidationError, ValueError):
            log.warning("index snapshot head does not parse; ignored", extra={"bucket": nats_bucket})
            return None

    async def load(self, nats_bucket: str, stream_created: str, last_seq: int) -> IndexState | None:
        """The bucket's snapshot if there is a usable one, else None (the caller builds from the stream)."""
        head = await self.head(nats_bucket)
        if head is None:
            return None
        age = time.time() - head.taken_at
        if head.stream_created != stream_created or head.seq > last_seq:
            return None
        # Too old to trust, unless nothing at all came into the stream after it: the age limit is
        # for deletions after the snapshot whose records the collector may have removed since.
        if not 0 <= age < self.max_age and head.seq != last_seq:
            return None
        reader = ChunkReader(
            self._nc, STREAM, chunk_subject(nats_bucket, head.id), runs=tuple(head.runs), first=0,
            count=head.chunks, chunk_size=CHUNK_SIZE,
        )  # fmt: skip
        data = bytearray()
        try:
            async for piece in reader:
                data += piece
            if len(data) != head.size or hashlib.sha256(data).hexdigest() != head.sha256:
                raise CorruptObject("index snapshot: digest or size mismatch")
            return decode_state(bytes(data), head.seq, head.taken_at)
        except CorruptObject as exc:
            # Replaced while read (its chunks purged), or damaged: building from the stream is always right.
            log.warning("index snapshot not used", extra={"bucket": nats_bucket, "reason": str(exc)})
            return None

    async def _ensure_stream(self) -> None:
        if self._stream_ready:
            return
        config = js_api.StreamConfig(
            name=STREAM,
            description="nats-s3 listing index snapshots (derived data: losing them costs a rebuild)",
            subjects=[SUBJECTS],
            storage=js_api.StorageType.FILE,
            num_replicas=self._replicas,
            allow_rollup_hdrs=True,
            allow_direct=True,
            # A snapshot outlives its use by far after this (a gateway refreshes the ones it holds).
            max_age=max(2 * self.max_age, 3600.0),
        )
        resp = await js_request(self._nc, f"STREAM.CREATE.{STREAM}", config.as_dict())
        # A stream made by another gateway with other limits is in use as it is.
        if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NAME_IN_USE:
            raise StoreUnavailable(f"create stream {STREAM}: {err.get('description')}")
        self._stream_ready = True

    async def save(self, nats_bucket: str, state: IndexState, stream_created: str) -> SnapshotHead:
        """Write `state` as the bucket's snapshot, then drop the one it replaces."""
        await self._ensure_stream()
        previous = await self.head(nats_bucket)
        snapshot_id = self._nuid.next().decode()
        pieces = encode_state(state)

        async def body() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        writer = ChunkWriter(
            self._publisher, chunk_subject(nats_bucket, snapshot_id), STREAM, CHUNK_SIZE, WRITE_WINDOW, None
        )
        written = await writer.write_all(body())
        head = SnapshotHead(
            id=snapshot_id, seq=state.seq, stream_created=stream_created, taken_at=state.taken_at,
            keys=len(state.objects), size=written.size, sha256=written.sha256.hex(), runs=written.runs,
            chunks=written.chunks,
        )  # fmt: skip
        await self._publisher.request(
            head_subject(nats_bucket), head.model_dump_json().encode(), headers={"Nats-Rollup": "sub"}
        )
        if previous is not None and previous.id != snapshot_id:
            await js_request(self._nc, f"STREAM.PURGE.{STREAM}", {"filter": chunk_subject(nats_bucket, previous.id)})
        return head

    async def forget(self, nats_bucket: str) -> None:
        """Drop a deleted bucket's snapshot (a new bucket of that name would not use it anyway)."""
        resp = await js_request(self._nc, f"STREAM.PURGE.{STREAM}", {"filter": f"nats_s3.index.{nats_bucket}.>"})
        if (err := resp.get("error")) and err.get("err_code") != ERR_STREAM_NOT_FOUND:
            raise StoreUnavailable(f"purging index snapshot of {nats_bucket}: {err.get('description')}")
