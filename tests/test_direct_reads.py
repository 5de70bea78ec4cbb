"""Meta reads by direct get on one-replica streams (store/direct_reads.py), against a real nats-server:
the server's own API counter shows which path a read took."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import nats
import pytest

from nats_s3.store import direct_reads
from nats_s3.store.direct_reads import DirectReads, NotDirect
from nats_s3.store.errors import BucketNotFound
from nats_s3.store.nats_store import NatsStore

from .test_store_layer import collect, pieces


async def api_requests(nc: nats.NATS) -> int:
    """JetStream API requests the account has made so far (a direct get is not one)."""
    info = await nc.jetstream().account_info()
    return int(info.api.total)


async def learned(reads: DirectReads, stream: str) -> None:
    """Let the stream's info be learned (a read of an unknown stream starts that, and asks the leader)."""
    for _ in range(100):
        if stream in reads._single:
            return
        with pytest.raises(NotDirect):
            await reads.last_on(stream, "$O.none.M.none")
        await asyncio.sleep(0.05)
    raise AssertionError(f"{stream} was not learned as one replica")


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[nats.NATS]:
    conn = await nats.connect(nats_url)
    yield conn
    await conn.close()


async def test_one_replica_stream_is_read_directly(nc: nats.NATS) -> None:
    js = nc.jetstream()
    stream = f"DR_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"], allow_direct=True)
    reads = DirectReads(nc)
    try:
        await learned(reads, stream)
        await js.publish(f"{stream}.a", b"one")
        second = await js.publish(f"{stream}.a", b"two")
        before = await api_requests(nc)
        last = await reads.last_on(stream, f"{stream}.a")
        assert last is not None and last.data == b"two" and last.seq == second.seq
        assert await reads.last_on(stream, f"{stream}.missing") is None
        # account_info itself is one API request; the two reads were none.
        assert await api_requests(nc) == before + 1
        # A stream that went: nobody answers its direct gets; the read goes to the leader's API.
        await js.delete_stream(stream)
        with pytest.raises(NotDirect):
            await reads.last_on(stream, f"{stream}.a")
        assert stream not in reads._single
    finally:
        await reads.close()


async def test_stream_without_direct_gets_is_read_from_the_leader(nc: nats.NATS) -> None:
    js = nc.jetstream()
    stream = f"DR_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"], allow_direct=False)
    reads = DirectReads(nc)
    try:
        for _ in range(10):
            with pytest.raises(NotDirect):
                await reads.last_on(stream, f"{stream}.a")
            await asyncio.sleep(0.05)
        assert stream not in reads._single
    finally:
        await reads.close()
        await js.delete_stream(stream)


async def test_store_reads_its_writes_and_another_gateways_directly(nc: nats.NATS, nats_url: str) -> None:
    # The reader's leader reads are counted from JetStream's API audit advisories by connection name:
    # the account-wide API counter also counts what other gateways on the server ask meanwhile.
    other_nc = await nats.connect(nats_url, name="direct-reads-reader")
    audits: list[dict[str, object]] = []

    async def audited(msg: nats.aio.msg.Msg) -> None:
        found = json.loads(msg.data)
        if (found.get("client") or {}).get("name") == "direct-reads-reader":
            audits.append(found)

    audit_sub = await nc.subscribe("$JS.EVENT.ADVISORY.API", cb=audited)
    writer, reader = NatsStore(nc), NatsStore(other_nc)
    await writer.start()
    await reader.start()
    bucket = f"dr-{uuid.uuid4().hex[:10]}"
    try:
        await writer.create_bucket(bucket)
        await writer.put_object(bucket, "k", pieces(b"first"), {})
        stream = f"OBJ_{bucket.replace('.', '_')}"
        # Both have learned the stream, so neither has a stream-info request in flight (the account's
        # API counter is shared by both connections).
        await learned(writer.direct, stream)
        await learned(reader.direct, stream)
        await asyncio.sleep(0.5)
        audits.clear()
        for i in range(20):
            body = f"version {i}".encode()
            await writer.put_object(bucket, "k", pieces(body), {})
            info = await reader.head_object(bucket, "k")
            assert await collect(reader.read_object(info)) == body  # written by one, read at once by the other
        await reader.stream_info(bucket)  # one audited request: the advisories do arrive
        for _ in range(50):
            if audits:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert [a["subject"] for a in audits] == [f"$JS.API.STREAM.INFO.{stream}"]  # no leader read
        await audit_sub.unsubscribe()
        await writer.delete_object(bucket, "k")
        await writer.delete_bucket(bucket)
        with pytest.raises(BucketNotFound):  # the direct get finds nobody, the leader's API says why
            await reader.head_object(bucket, "k")
    finally:
        await writer.close()
        await reader.close()
        await other_nc.close()


async def test_learned_again_after_refresh(nc: nats.NATS, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream changed so that direct gets may be stale is read from the leader once relearned."""
    js = nc.jetstream()
    stream = f"DR_{uuid.uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"], allow_direct=True)
    monkeypatch.setattr(direct_reads, "REFRESH", 0.1)
    reads = DirectReads(nc)
    try:
        await learned(reads, stream)
        info = await js.stream_info(stream)
        config = info.config
        config.allow_direct = False  # on one server, the change a scale-up to three replicas would be
        await js.update_stream(config)
        for _ in range(100):
            await asyncio.sleep(0.05)
            try:
                await reads.last_on(stream, f"{stream}.a")
            except NotDirect:
                break
        assert stream not in reads._single
    finally:
        await reads.close()
        await js.delete_stream(stream)
