"""The store layer on its own against a real nats-server: range reads touch only their chunks, writes are atomic."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from nats_s3.store.errors import BucketNotFound, ObjectNotFound, PreconditionFailed
from nats_s3.store.models import BodyDigests, Checksum, WriteCondition
from nats_s3.store.nats_store import NatsStore

CHUNK = 64 * 1024


async def pieces(data: bytes, size: int = 50_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[NatsStore]:
    nc = await nats.connect(nats_url)
    store = NatsStore(nc, chunk_size=CHUNK)
    await store.start()
    yield store
    await store.close()
    await nc.close()


async def collect_now(store: NatsStore, bucket: str) -> int:
    """One collector pass over `bucket` with no grace period (what a pass does an hour later)."""
    from nats_s3.store.collector import Collector
    from nats_s3.store.lease import Lease
    from nats_s3.store.multipart import MultipartStore

    lease = Lease(store.configs.records, f"test-{uuid.uuid4().hex}", 30)
    collector = Collector(store, MultipartStore(store), lease, grace=0, multipart_expiry=3600)
    assert await collector.lease.acquire()
    return await collector.collect_bucket(bucket)


@pytest.fixture
async def sbucket(store: NatsStore) -> AsyncIterator[str]:
    name = f"s-{uuid.uuid4().hex[:10]}"
    await store.create_bucket(name)
    yield name
    for info in (await store.list_page(name, "", "", "", 1000)).objects:
        await store.delete_object(name, info.key)
    await store.delete_bucket(name)


async def collect(it: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in it])


async def test_range_reads_fetch_only_their_chunks(store: NatsStore, sbucket: str) -> None:
    data = os.urandom(200 * CHUNK + 123)
    await store.put_object(sbucket, "big", pieces(data), {})
    info = await store.head_object(sbucket, "big")
    assert info.chunks == 201 and info.chunk_size == CHUNK
    for start, end in [(len(data) - 10, len(data) - 1), (150 * CHUNK - 5, 150 * CHUNK + 5), (CHUNK * 7, CHUNK * 7)]:
        before = store.nc.stats["in_bytes"]
        assert await collect(store.read_object(info, start, end)) == data[start : end + 1]
        received = store.nc.stats["in_bytes"] - before
        chunks_touched = end // CHUNK - start // CHUNK + 1
        assert received < chunks_touched * CHUNK + 8192, (start, end, received)


async def test_full_read_and_interleaved_writers(store: NatsStore, sbucket: str) -> None:
    import asyncio

    blobs = {f"k{i}": os.urandom(37 * CHUNK + i) for i in range(4)}
    await asyncio.gather(*(store.put_object(sbucket, k, pieces(v, 7000), {}) for k, v in blobs.items()))
    for key, value in blobs.items():
        info = await store.head_object(sbucket, key)
        assert len(info.seq_runs) >= 1
        assert await collect(store.read_object(info)) == value
        mid = len(value) // 2
        assert await collect(store.read_object(info, mid, mid + 3 * CHUNK)) == value[mid : mid + 3 * CHUNK + 1]


async def test_refused_commit_keeps_previous_version(store: NatsStore, sbucket: str) -> None:
    await store.put_object(sbucket, "k", pieces(b"v1" * 100_000), {})

    async def refuse(_: BodyDigests) -> Checksum | None:
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError):
        await store.put_object(sbucket, "k", pieces(os.urandom(500_000)), {}, before_commit=refuse)
    info = await store.head_object(sbucket, "k")
    assert await collect(store.read_object(info)) == b"v1" * 100_000
    # The refused write's chunks wait for the collector (its intent claim names them), then go.
    stream = await store.js.stream_info(f"OBJ_{sbucket}", subjects_filter=f"$O.{sbucket}.C.>")
    assert len(stream.state.subjects or {}) == 2
    assert await collect_now(store, sbucket) == 1
    stream = await store.js.stream_info(f"OBJ_{sbucket}", subjects_filter=f"$O.{sbucket}.C.>")
    assert list((stream.state.subjects or {}).keys()) == [f"$O.{sbucket}.C.{info.nuid}"]


async def test_body_failure_mid_stream_leaves_nothing_after_collection(store: NatsStore, sbucket: str) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(5 * CHUNK)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_object(sbucket, "k", broken(), {})
    with pytest.raises(ObjectNotFound):
        await store.head_object(sbucket, "k")
    await collect_now(store, sbucket)
    stream = await store.js.stream_info(f"OBJ_{sbucket}")
    assert stream.state.messages == 0


async def test_conditions(store: NatsStore, sbucket: str) -> None:
    first = await store.put_object(sbucket, "c", pieces(b"1"), {}, condition=WriteCondition(if_none_match="*"))
    with pytest.raises(PreconditionFailed):
        await store.put_object(sbucket, "c", pieces(b"2"), {}, condition=WriteCondition(if_none_match="*"))
    with pytest.raises(PreconditionFailed):
        await store.put_object(sbucket, "c", pieces(b"2"), {}, condition=WriteCondition(if_match="0" * 32))
    await store.put_object(sbucket, "c", pieces(b"3"), {}, condition=WriteCondition(if_match=first.etag))
    await store.delete_object(sbucket, "c")
    # After a delete marker, If-None-Match: * succeeds again.
    await store.put_object(sbucket, "c", pieces(b"4"), {}, condition=WriteCondition(if_none_match="*"))


async def test_missing_bucket(store: NatsStore) -> None:
    with pytest.raises(BucketNotFound):
        await store.put_object("no-such-bucket-here", "k", pieces(b"x"), {})
    with pytest.raises(BucketNotFound):
        await store.head_object("no-such-bucket-here", "k")


async def test_index_pruned_when_bucket_deleted_elsewhere(store: NatsStore, nats_url: str) -> None:
    name = f"s-{uuid.uuid4().hex[:10]}"
    await store.create_bucket(name)
    await store.list_page(name, "", "", "", 10)
    assert store.index.loaded(name) is not None
    other = await nats.connect(nats_url)
    try:
        await other.jetstream().delete_stream(f"OBJ_{name}")
    finally:
        await other.close()
    await store.index.prune()
    assert store.index.loaded(name) is None
