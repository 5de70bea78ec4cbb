"""The small-object read cache (store/read_cache.py) against a real nats-server: a cached GET sends one
NATS message (the meta read that keeps it consistent), and serves only bytes that match the digest of
the version that meta names, whoever wrote it."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import pytest

from nats_s3.store.models import ObjectInfo
from nats_s3.store.nats_store import NatsStore
from nats_s3.store.read_cache import ReadCache
from nats_s3.store.writes import digest_string

from .test_store_layer import collect, pieces

CACHE = 1024 * 1024  # objects up to 4 KiB


@pytest.fixture
async def stores(nats_url: str) -> AsyncIterator[tuple[NatsStore, NatsStore, str]]:
    """A writer without a cache and a reader with one, on their own connections, and a bucket."""
    writer_nc, reader_nc = await nats.connect(nats_url), await nats.connect(nats_url)
    writer, reader = NatsStore(writer_nc), NatsStore(reader_nc, read_cache_bytes=CACHE)
    await writer.start()
    await reader.start()
    bucket = f"rc-{uuid.uuid4().hex[:10]}"
    await writer.create_bucket(bucket)
    yield writer, reader, bucket
    for info in (await writer.list_page(bucket, "", "", "", 1000)).objects:
        await writer.delete_object(bucket, info.key)
    await writer.delete_bucket(bucket)
    for store, nc in ((writer, writer_nc), (reader, reader_nc)):
        await store.close()
        await nc.close()


async def get(store: NatsStore, bucket: str, key: str, start: int = 0, end: int | None = None) -> tuple[bytes, int]:
    """The bytes of a GET and the NATS messages it sent."""
    before = store.nc.stats["out_msgs"]
    info = await store.head_object(bucket, key)
    data = await collect(store.read_object(info, start, end))
    return data, store.nc.stats["out_msgs"] - before


async def test_a_cached_get_costs_one_nats_message(stores: tuple[NatsStore, NatsStore, str]) -> None:
    writer, reader, bucket = stores
    body = os.urandom(3000)
    await writer.put_object(bucket, "k", pieces(body), {})
    await get(reader, bucket, "k")  # learns that the stream has one replica (direct meta reads)
    first, sent_first = await get(reader, bucket, "k")
    second, sent_second = await get(reader, bucket, "k")
    assert first == second == body
    assert reader.read_cache is not None and reader.read_cache.hits >= 1
    assert (sent_first, sent_second) == (1, 1)  # the chunk came from the cache; the meta from NATS
    assert (await get(reader, bucket, "k", 100, 199))[0] == body[100:200]  # a range of a cached object


async def test_another_gateways_overwrite_is_seen_at_once(stores: tuple[NatsStore, NatsStore, str]) -> None:
    writer, reader, bucket = stores
    for i in range(10):
        body = f"version {i} ".encode() * 50
        await writer.put_object(bucket, "k", pieces(body), {})
        assert (await get(reader, bucket, "k"))[0] == body
        assert (await get(reader, bucket, "k"))[0] == body
    # The same bytes written again are a new version (new chunk subject): still right, and cached anew.
    same = b"same" * 100
    for _ in range(2):
        await writer.put_object(bucket, "k", pieces(same), {})
        assert (await get(reader, bucket, "k"))[0] == same
    await writer.delete_object(bucket, "k")
    with pytest.raises(Exception, match="k"):
        await reader.head_object(bucket, "k")


async def test_only_small_single_part_objects_with_matching_bytes_are_kept(
    stores: tuple[NatsStore, NatsStore, str],
) -> None:
    writer, reader, bucket = stores
    cache = reader.read_cache
    assert cache is not None
    big = os.urandom(CACHE // 256 + 1)
    await writer.put_object(bucket, "big", pieces(big), {})
    assert (await get(reader, bucket, "big"))[0] == big
    assert len(cache) == 0
    await writer.put_object(bucket, "small", pieces(b"small body"), {})
    info = await reader.head_object(bucket, "small")
    cache.put(info, b"other body")  # bytes that are not the version's: never kept
    assert cache.get(info) is None
    assert await collect(reader.read_object(info)) == b"small body"
    assert cache.get(info) == b"small body"


def test_the_cache_stays_within_its_size() -> None:
    cache = ReadCache(256 * 1024)
    for i in range(1000):
        data = os.urandom(1000)
        info = ObjectInfo(
            "b", f"k{i}", len(data), "", datetime.now(UTC), nuid=f"n{i}", chunks=1,
            digest=digest_string(hashlib.sha256(data).digest()),
        )  # fmt: skip
        cache.put(info, data)
        assert cache.bytes <= cache.max_bytes
    assert 100 < len(cache) < 256
