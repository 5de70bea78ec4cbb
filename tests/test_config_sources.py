"""The gateway KV's sources of replicas' records (store/config_sources.py) against a real nats-server:
JetStream replaces a stream's sources as a whole and without compare-and-set, so each change is made
under a lease; these tests force the interleavings that would otherwise drop a replica's sources.

The sources name a JetStream domain that does not exist: the server keeps them configured (and
reports an error on each), which is all a change of sources needs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest

from nats_s3.store import config_sources
from nats_s3.store.bucket_config import BucketConfig, record_key
from nats_s3.store.lease import Lease
from nats_s3.store.nats_store import NatsStore
from nats_s3.store.records import KvRecords, Record, Records

NOWHERE = "$JS.nowhere.API"


@pytest.fixture
async def store(nats_url: str) -> AsyncIterator[NatsStore]:
    nc = await nats.connect(nats_url)
    store = NatsStore(nc)
    await store.start()
    yield store
    await store.close()
    await nc.close()


@pytest.fixture
def names() -> list[str]:
    return [f"src-{uuid.uuid4().hex[:8]}-{n}" for n in range(4)]


async def _sourced(store: NatsStore, names: list[str]) -> set[str]:
    sources = (await store.config_sources.kv_info())["config"].get("sources")
    return {name for name in names if store.config_sources.of(name, sources)}


async def _clean(store: NatsStore, names: list[str]) -> None:
    for name in names:
        await store.config_sources.remove(name)


async def test_concurrent_changes_keep_each_others_sources(store: NatsStore, names: list[str]) -> None:
    try:
        await asyncio.gather(*(store.config_sources.add(name, NOWHERE) for name in names[:3]))
        assert await _sourced(store, names) == set(names[:3])
        sources = (await store.config_sources.kv_info())["config"]["sources"]
        # Both of a bucket's records: its configuration first, its uploads' second.
        assert [s["filter_subject"] for s in store.config_sources.of(names[0], sources)] == list(
            config_sources.record_subjects(store.configs.records.prefix, names[0])
        )
        removed, _ = await asyncio.gather(
            store.config_sources.remove(names[0]), store.config_sources.add(names[3], NOWHERE)
        )
        assert removed is True
        assert await _sourced(store, names) == set(names[1:])
        assert await store.config_sources.remove(names[0]) is False  # gone already
    finally:
        await _clean(store, names)


async def test_a_change_waits_while_another_holds_the_lease(store: NatsStore, names: list[str]) -> None:
    """The interleaving the lease exists for: a second change reads the sources while the first has
    read them and not yet written. Here the first is a lease held by hand."""
    other = Lease(store.configs.records, "kv-sources", config_sources.LEASE_TTL)
    assert await other.acquire()
    try:
        adding = asyncio.ensure_future(store.config_sources.add(names[0], NOWHERE))
        await asyncio.sleep(1.0)
        assert not adding.done()
        assert await _sourced(store, names) == set()
        await other.release()
        await asyncio.wait_for(adding, 10)
        assert await _sourced(store, names) == {names[0]}
    finally:
        await other.release()
        await _clean(store, names)


async def test_a_lease_whose_holder_died_lapses(store: NatsStore, names: list[str]) -> None:
    dead = Lease(store.configs.records, "kv-sources", 1.0)
    assert await dead.acquire()  # and never released: its holder was killed
    try:
        await asyncio.wait_for(store.config_sources.add(names[0], NOWHERE), 10)
        assert await _sourced(store, names) == {names[0]}
    finally:
        await _clean(store, names)


async def test_a_bucket_created_here_drops_stale_sources_of_its_name(store: NatsStore, names: list[str]) -> None:
    """A replicate command killed between adding the sources and making the mirror left them: a
    CreateBucket of that name here removes them, so the origin's settings never arrive in it."""
    try:
        await store.config_sources.add(names[0], NOWHERE)
        await store.config_sources.add(names[1], NOWHERE)
        await store.create_bucket(names[0])
        assert await _sourced(store, names) == {names[1]}
        await store.delete_bucket(names[0])
    finally:
        await _clean(store, names)


class _ReadThenInterleave:
    """The gateway KV's records, where the next read of `key` runs `between` before it returns: the
    moment another gateway's write lands after a reader has looked and before it writes."""

    def __init__(self, records: KvRecords, key: str, between: Callable[[], Awaitable[object]]) -> None:
        self._records = records
        self._key = key
        self._between: Callable[[], Awaitable[object]] | None = between

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    async def _last(self, key: str) -> dict | None:
        message = await self._records._last(key)
        if key == self._key and self._between is not None:
            between, self._between = self._between, None
            await between()
        return message

    async def read(self, key: str) -> tuple[Record | None, int]:
        return await Records.read(self, key)  # type: ignore[arg-type]

    async def get(self, key: str) -> Record | None:
        return await Records.get(self, key)  # type: ignore[arg-type]

    async def last_revision(self, key: str) -> int:
        return await Records.last_revision(self, key)  # type: ignore[arg-type]


async def test_a_lease_taken_between_a_look_and_a_write_is_not_taken_twice(store: NatsStore) -> None:
    """A finds no lease, B takes it, A writes: A's write states the revision it saw (none), so it
    conflicts, and only B holds the lease."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    records = store.configs.records
    b = Lease(records, name, config_sources.LEASE_TTL)
    taken: list[bool] = []

    async def b_takes_it() -> None:
        taken.append(await b.acquire())

    a = Lease(_ReadThenInterleave(records, f"lease.{name}", b_takes_it), name, config_sources.LEASE_TTL)  # type: ignore[arg-type]
    try:
        assert await a.acquire() is False
        assert taken == [True] and b.held and not a.held
        # and after B lets go, A takes it as usual
        await b.release()
        assert await a.acquire() is True
    finally:
        await a.release()
        await b.release()


async def test_a_configuration_written_between_a_look_and_a_write_is_kept(store: NatsStore) -> None:
    """The same interleaving on a bucket's configuration record: a change that found no record must
    not overwrite one another gateway wrote meanwhile; it is made again on top of that one."""
    bucket = f"race-{uuid.uuid4().hex[:8]}"
    configs = store.configs
    key = record_key(bucket)

    async def another_gateway_writes() -> None:
        await configs.records.create(key, BucketConfig(name=bucket, owner="alice").model_dump_json().encode())

    real = configs.records
    configs.records = _ReadThenInterleave(real, key, another_gateway_writes)  # type: ignore[assignment]
    try:
        updated = await configs.update(bucket, lambda c: c.model_copy(update={"versioning": "Enabled"}))
    finally:
        configs.records = real
    try:
        assert updated.owner == "alice" and updated.versioning == "Enabled"
        found = await real.get(key)
        assert found is not None
        stored = BucketConfig.model_validate_json(found.value)
        assert stored.owner == "alice" and stored.versioning == "Enabled"
    finally:
        await configs.forget(bucket)
