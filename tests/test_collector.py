"""Reclamation against a real nats-server of its own: claims, the leased collector, reads that outlive an
overwrite, and every interleaving of Complete, Abort, expiry, part re-uploads and DeleteBucket, forced
with the store's pause points rather than hoped for."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import nats
import pytest

from nats_s3.store import naming
from nats_s3.store.collector import Collector
from nats_s3.store.errors import (
    BucketBusy,
    BucketNotEmpty,
    BucketNotFound,
    InvalidPart,
    ObjectNotFound,
    UnreadableRecord,
    UploadNotFound,
)
from nats_s3.store.fence import raise_fence
from nats_s3.store.lease import Lease
from nats_s3.store.models import BodyDigests
from nats_s3.store.multipart import MultipartStore
from nats_s3.store.nats_store import NatsStore
from nats_s3.store.versions import Versioning

from .support import NatsServerProcess

CHUNK = 64 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def own_nats() -> Any:
    """A nats-server for this module alone: no other gateway's collector touches these buckets."""
    server = NatsServerProcess().start()
    yield server.url
    server.cleanup()


class Gateway:
    """What one gateway process holds, in-process: a connection, a store, multipart, a collector."""

    def __init__(self, store: NatsStore, lease_name: str, grace: float) -> None:
        self.store = store
        self.multipart = MultipartStore(store)
        self.collector = Collector(
            store, self.multipart, Lease(store.configs.records, lease_name, 5.0), grace=grace, multipart_expiry=3600
        )

    async def collect(self, bucket: str) -> int:
        assert await self.collector.lease.acquire()
        return await self.collector.collect_bucket(bucket)


@pytest.fixture
async def gateways(own_nats: str) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    made: list[tuple[Any, NatsStore]] = []

    async def make(grace: float = 0.0) -> Gateway:
        # Each its own lease: tests that want two collectors to compete build the leases themselves.
        lease_name = f"collector-{uuid.uuid4().hex[:8]}"
        nc = await nats.connect(own_nats)
        # As the gateway sets it: writes in progress claim their chunks again three times a grace.
        store = NatsStore(nc, chunk_size=CHUNK, claim_refresh=grace / 3 if grace else 600.0)
        await store.start()
        made.append((nc, store))
        return Gateway(store, lease_name, grace)

    yield make
    for nc, store in made:
        await store.close()
        await nc.close()


@pytest.fixture
async def gw(gateways: Callable[..., Awaitable[Gateway]]) -> Gateway:
    return await gateways()


@pytest.fixture
async def bucket(gw: Gateway) -> str:
    name = f"c-{uuid.uuid4().hex[:10]}"
    await gw.store.create_bucket(name)
    return name


async def pieces(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store: NatsStore, bucket: str, key: str, version_id: str | None = None) -> bytes:
    info = await store.head_object(bucket, key, version_id)
    return b"".join([p async for p in store.read_object(info)])


async def chunk_subjects(store: NatsStore, bucket: str) -> set[str]:
    nb = naming.nats_bucket(bucket)
    info = await store.js.stream_info(naming.stream_name(nb), subjects_filter=naming.chunk_wildcard(nb))
    return set((info.state.subjects or {}).keys())


async def stream_bytes(store: NatsStore, bucket: str) -> int:
    return int((await store.js.stream_info(naming.stream_name(naming.nats_bucket(bucket)))).state.bytes)


async def settled(store: NatsStore, bucket: str, messages: int) -> None:
    """Wait until the bucket's stream holds `messages` (publishes nobody waited for land a moment later)."""
    name = naming.stream_name(naming.nats_bucket(bucket))
    for _ in range(100):
        if (await store.js.stream_info(name)).state.messages >= messages:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} never held {messages} messages")


async def no_checksum(_: BodyDigests) -> str | None:
    return None


class Pause:
    """Holds the operation that reaches a pause point until released."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await self.release.wait()


async def outcome(coro: Awaitable[Any]) -> tuple[str, Any]:
    try:
        return "ok", await coro
    except Exception as exc:
        return "error", exc


# ---- reads that outlive an overwrite ---------------------------------------------------------


async def test_a_read_in_flight_survives_overwrite_delete_and_collection(gateways, bucket: str) -> None:  # type: ignore[no-untyped-def]
    gw = await gateways(grace=30.0)
    data = os.urandom(32 * MiB)
    await gw.store.put_object(bucket, "big", pieces(data, MiB), {})
    info = await gw.store.head_object(bucket, "big")
    reader = gw.store.read_object(info)
    got = [await anext(reader)]
    await gw.store.put_object(bucket, "big", pieces(b"replacement"), {})
    await gw.store.delete_object(bucket, "big")
    assert await gw.collect(bucket) == 0  # within the grace period: nothing is freed
    got += [piece async for piece in reader]
    assert hashlib.md5(b"".join(got)).digest() == hashlib.md5(data).digest()
    # Past the grace, both the overwritten and the deleted versions' chunks go, and the deletion mark.
    gone = await gateways(grace=0.0)
    assert await gone.collect(bucket) == 2
    assert await chunk_subjects(gw.store, bucket) == set()


async def test_a_copy_in_flight_survives_its_source_being_replaced(gateways, bucket: str) -> None:  # type: ignore[no-untyped-def]
    gw = await gateways(grace=30.0)
    data = os.urandom(8 * MiB)
    await gw.store.put_object(bucket, "src", pieces(data, MiB), {})
    source = await gw.store.head_object(bucket, "src")
    halfway = Pause()

    async def copy_body() -> AsyncIterator[bytes]:
        sent = 0
        async for piece in gw.store.read_object(source):
            yield piece
            sent += len(piece)
            if sent >= 4 * MiB and not halfway.reached.is_set():
                await halfway()

    copying = asyncio.ensure_future(gw.store.put_object(bucket, "dst", copy_body(), {}))
    await halfway.reached.wait()
    await gw.store.put_object(bucket, "src", pieces(b"other"), {})
    await gw.store.delete_object(bucket, "src")
    await gw.collect(bucket)
    halfway.release.set()
    await copying
    assert await read_all(gw.store, bucket, "dst") == data


# ---- space comes back --------------------------------------------------------------------------


async def test_space_comes_back_after_twenty_overwrites_and_a_delete(gateways, bucket: str) -> None:  # type: ignore[no-untyped-def]
    gw = await gateways(grace=60.0)
    keep = os.urandom(64 * MiB)
    await gw.store.put_object(bucket, "keeper", pieces(keep, MiB), {})
    block = os.urandom(MiB)
    for _ in range(20):
        await gw.store.put_object(bucket, "churn", pieces(block * 64, MiB), {})
    await gw.store.delete_object(bucket, "churn")
    assert await stream_bytes(gw.store, bucket) > 20 * 64 * MiB
    assert await gw.collect(bucket) == 0  # the grace period has not passed
    later = await gateways(grace=0.0)  # a pass once it has
    assert await later.collect(bucket) == 20  # each overwritten version, and the deleted one
    live = len(keep)
    assert abs(await stream_bytes(gw.store, bucket) - live) <= live / 100
    assert await read_all(gw.store, bucket, "keeper") == keep


async def test_versions_are_never_collected(gw: Gateway, bucket: str) -> None:
    await gw.store.put_object(bucket, "k", pieces(b"before"), {})
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    made = [(await gw.store.put_object(bucket, "k", pieces(os.urandom(300_000)), {})) for _ in range(3)]
    marker = await gw.store.delete_object(bucket, "k")
    await gw.store.set_versioning(bucket, Versioning.SUSPENDED)
    await gw.store.put_object(bucket, "k", pieces(b"suspended, replaces the null version"), {})
    await gw.collect(bucket)
    for info in made:
        assert len(await read_all(gw.store, bucket, "k", info.version_id)) == 300_000
    assert await read_all(gw.store, bucket, "k", "null") == b"suspended, replaces the null version"
    # The original null version (written before versioning) was replaced by the suspended write.
    assert len(await chunk_subjects(gw.store, bucket)) == 4
    await gw.store.delete_object(bucket, "k", marker.version_id)
    for info in made:
        await gw.store.delete_object(bucket, "k", info.version_id)
    await gw.store.delete_object(bucket, "k", "null")
    await gw.collect(bucket)
    assert await chunk_subjects(gw.store, bucket) == set()
    await gw.store.delete_bucket(bucket)


# ---- a write that never commits ----------------------------------------------------------------


async def test_a_write_cut_off_is_found_by_its_intent(gw: Gateway, bucket: str) -> None:
    async def dies() -> AsyncIterator[bytes]:
        yield os.urandom(3 * CHUNK)
        raise ConnectionResetError("gateway killed")

    with pytest.raises(ConnectionResetError):
        await gw.store.put_object(bucket, "k", dies(), {})
    await settled(gw.store, bucket, 4)  # chunks sent before the failure still land, unacknowledged
    assert len(await chunk_subjects(gw.store, bucket)) == 1
    assert await gw.collect(bucket) == 1
    assert await stream_bytes(gw.store, bucket) == 0


async def test_a_slow_upload_is_not_collected_while_it_writes(gateways, bucket: str) -> None:  # type: ignore[no-untyped-def]
    gw = await gateways(grace=0.6)
    going = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        for _ in range(6):
            yield os.urandom(CHUNK)
            going.set()
            await asyncio.sleep(0.3)

    writing = asyncio.ensure_future(gw.store.put_object(bucket, "slow", slow(), {}))
    await going.wait()
    for _ in range(6):
        await asyncio.sleep(0.3)
        assert await gw.collect(bucket) == 0  # its intent is older than the grace, its chunks are not
    await writing
    assert len(await read_all(gw.store, bucket, "slow")) == 6 * CHUNK


# ---- the collector itself ------------------------------------------------------------------------


async def test_one_collector_at_a_time_and_the_lease_lapses(gateways, own_nats: str) -> None:  # type: ignore[no-untyped-def]
    a, b = await gateways(), await gateways()
    name = f"lease-{uuid.uuid4().hex[:6]}"
    la = Lease(a.store.configs.records, name, 1.0)
    lb = Lease(b.store.configs.records, name, 1.0)
    assert await la.acquire()
    assert not await lb.acquire()
    assert await la.acquire()  # the holder renews
    assert not await lb.acquire()
    await asyncio.sleep(1.1)  # the holder died: it renews no more
    assert await lb.acquire()
    assert not await la.acquire() and not la.held
    await lb.release()
    assert await la.acquire()


async def test_an_unreadable_record_stops_collection_of_its_bucket(gw: Gateway, bucket: str, caplog) -> None:  # type: ignore[no-untyped-def]
    nb = naming.nats_bucket(bucket)

    async def dies() -> AsyncIterator[bytes]:
        yield os.urandom(CHUNK)
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await gw.store.put_object(bucket, "orphan", dies(), {})
    await settled(gw.store, bucket, 2)
    await gw.store.js.publish(naming.claim_subject(nb, "not-json"), b"{not json")
    before = await chunk_subjects(gw.store, bucket)
    other = f"c-{uuid.uuid4().hex[:10]}"
    await gw.store.create_bucket(other)
    with pytest.raises(ConnectionResetError):
        await gw.store.put_object(other, "orphan", dies(), {})
    await settled(gw.store, other, 2)
    assert await gw.collector.lease.acquire()
    with caplog.at_level(logging.ERROR, logger="nats_s3.store.collector"):
        await gw.collector.run_pass()
    assert bucket in gw.collector.stats.blocked and other not in gw.collector.stats.blocked
    assert any("does not parse" in r.message for r in caplog.records)
    assert await chunk_subjects(gw.store, bucket) == before  # nothing freed there
    assert await chunk_subjects(gw.store, other) == set()  # the other bucket is collected as usual
    with pytest.raises(UnreadableRecord):
        await gw.collector.collect_bucket(bucket)
    # A version record that does not parse stops it the same way, and frees nothing.
    await gw.store.js.purge_stream(naming.stream_name(nb), subject=naming.claim_subject(nb, "not-json"))
    await gw.store.put_object(bucket, "k", pieces(b"old"), {})
    await gw.store.put_object(bucket, "k", pieces(b"new"), {})
    await gw.store.js.publish(naming.meta_subject(nb, "k"), b"garbage", headers={"Nats-Rollup": "sub"})
    with pytest.raises(UnreadableRecord):
        await gw.collector.collect_bucket(bucket)


async def test_a_pass_costs_what_it_collects_not_what_the_bucket_holds(gw: Gateway, bucket: str) -> None:
    async def requests_per_claim(extra_objects: int) -> float:
        name = f"c-{uuid.uuid4().hex[:10]}"
        await gw.store.create_bucket(name)
        for i in range(extra_objects):
            await gw.store.put_object(name, f"live/{i}", pieces(b"x"), {})
        await gw.collect(name)  # settles the claims of those writes first
        for _ in range(20):
            await gw.store.put_object(name, "churn", pieces(os.urandom(1000)), {})
        before = gw.store.nc.stats["out_msgs"]
        assert await gw.collect(name) == 19
        return (gw.store.nc.stats["out_msgs"] - before) / 20

    small, large = await requests_per_claim(0), await requests_per_claim(600)
    print(
        f"collector requests per overwritten version: {small:.2f} (empty bucket), {large:.2f} (600 more live objects)"
    )
    assert small <= 6 and abs(large - small) < 1, (small, large)


# ---- multipart: every interleaving of Complete with Abort, expiry and a part re-upload -------------


PART = 5 * MiB + 17


async def new_upload(
    gw: Gateway, bucket: str, key: str, expiry: timedelta = timedelta(days=1)
) -> tuple[str, list[bytes], list[str]]:
    upload = await gw.multipart.create(
        bucket, key, {}, checksum_algorithm=None, checksum_type=None, owner="o", expiry=expiry
    )
    bodies = [os.urandom(PART), os.urandom(1234)]
    etags = []
    for number, body in enumerate(bodies, start=1):
        part = await gw.multipart.upload_part(bucket, key, upload.upload_id, number, pieces(body, MiB), no_checksum)
        etags.append(part.etag)
    return upload.upload_id, bodies, etags


COMPLETE_POINTS = ["complete.before_mark", "complete.marked", "commit.before_cas", "complete.committed"]


def _rival(gw: Gateway, bucket: str, key: str, upload_id: str, kind: str) -> Awaitable[Any]:
    if kind == "abort":
        return gw.multipart.abort(bucket, key, upload_id)
    if kind == "expire":
        return gw.multipart.expire(bucket, timedelta(0))
    return gw.multipart.upload_part(bucket, key, upload_id, 1, pieces(os.urandom(PART), MiB), no_checksum)


async def _check_outcome(gw: Gateway, bucket: str, key: str, upload_id: str, complete: tuple[str, Any],
                         bodies: list[bytes], etags: list[str]) -> None:  # fmt: skip
    # The strictest collector: every claim ripe at once. Nothing anything references may go.
    await gw.collect(bucket)
    if complete[0] == "ok":
        assert await read_all(gw.store, bucket, key) == b"".join(bodies)
        await gw.store.delete_object(bucket, key)
        with contextlib.suppress(UploadNotFound):
            await gw.multipart.abort(bucket, key, upload_id)
    else:
        assert isinstance(complete[1], UploadNotFound | InvalidPart), complete[1]
        # Still usable (it completes from the parts it holds now), or gone.
        uploads = {u.upload_id for u in await gw.multipart.list_uploads(bucket)}
        if upload_id in uploads:
            parts = await gw.multipart.list_parts(bucket, upload_id)
            await gw.multipart.complete(bucket, key, upload_id, [(p.number, p.etag) for p in parts], lambda _: None)
            await gw.collect(bucket)
            assert len(await read_all(gw.store, bucket, key)) == sum(p.size for p in parts)
            await gw.store.delete_object(bucket, key)
    await gw.collect(bucket)
    assert await chunk_subjects(gw.store, bucket) == set()  # and nothing is left behind


@pytest.mark.parametrize("rival", ["abort", "expire", "reupload"])
@pytest.mark.parametrize("point", COMPLETE_POINTS)
async def test_complete_paused_while_a_rival_runs(gw: Gateway, bucket: str, rival: str, point: str) -> None:
    expiry = timedelta(0) if rival == "expire" else timedelta(days=1)
    upload_id, bodies, etags = await new_upload(gw, bucket, "mp", expiry)
    pause = Pause()
    gw.store.pauses.set(point, pause)
    try:
        completing = asyncio.ensure_future(
            outcome(gw.multipart.complete(bucket, "mp", upload_id, [(1, etags[0]), (2, etags[1])], lambda _: None))
        )
        await asyncio.wait_for(pause.reached.wait(), 10)
        gw.store.pauses.clear()
        await outcome(_rival(gw, bucket, "mp", upload_id, rival))
        await gw.collect(bucket)  # the collector acts while Complete is held, too
        pause.release.set()
        complete = await completing
    finally:
        gw.store.pauses.clear()
    await _check_outcome(gw, bucket, "mp", upload_id, complete, bodies, etags)


RIVAL_POINTS = {"abort": "end_upload.before_delete", "expire": "end_upload.before_delete",
                "reupload": "upload_part.before_record"}  # fmt: skip


@pytest.mark.parametrize("rival", ["abort", "expire", "reupload"])
async def test_a_rival_paused_while_complete_runs(gw: Gateway, bucket: str, rival: str) -> None:
    expiry = timedelta(0) if rival == "expire" else timedelta(days=1)
    upload_id, bodies, etags = await new_upload(gw, bucket, "mp", expiry)
    pause = Pause()
    gw.store.pauses.set(RIVAL_POINTS[rival], pause)
    try:
        racing = asyncio.ensure_future(outcome(_rival(gw, bucket, "mp", upload_id, rival)))
        await asyncio.wait_for(pause.reached.wait(), 10)
        gw.store.pauses.clear()
        complete = await outcome(
            gw.multipart.complete(bucket, "mp", upload_id, [(1, etags[0]), (2, etags[1])], lambda _: None)
        )
        await gw.collect(bucket)
        pause.release.set()
        await racing
    finally:
        gw.store.pauses.clear()
    await _check_outcome(gw, bucket, "mp", upload_id, complete, bodies, etags)


async def test_complete_uses_the_latest_upload_of_a_part(gw: Gateway, bucket: str) -> None:
    upload_id, bodies, etags = await new_upload(gw, bucket, "mp")
    again = os.urandom(PART)
    part = await gw.multipart.upload_part(bucket, "mp", upload_id, 1, pieces(again, MiB), no_checksum)
    with pytest.raises(InvalidPart):  # the first body's ETag no longer names part 1
        await gw.multipart.complete(bucket, "mp", upload_id, [(1, etags[0]), (2, etags[1])], lambda _: None)
    await gw.multipart.complete(bucket, "mp", upload_id, [(1, part.etag), (2, etags[1])], lambda _: None)
    await gw.collect(bucket)
    assert await read_all(gw.store, bucket, "mp") == again + bodies[1]
    assert len(await chunk_subjects(gw.store, bucket)) == 2


# ---- DeleteBucket racing writes through another gateway --------------------------------------------


async def test_delete_bucket_while_a_put_is_about_to_commit(gateways) -> None:  # type: ignore[no-untyped-def]
    a, b = await gateways(), await gateways()
    name = f"c-{uuid.uuid4().hex[:10]}"
    await a.store.create_bucket(name)
    pause = Pause()
    b.store.pauses.set("put.before_commit", pause)
    putting = asyncio.ensure_future(outcome(b.store.put_object(name, "k", pieces(b"late"), {})))
    await pause.reached.wait()
    await a.store.delete_bucket(name)  # empty when it looked
    pause.release.set()
    result = await putting
    assert result[0] == "error" and isinstance(result[1], BucketNotFound)  # the PUT failed: nothing acknowledged


async def test_a_put_meeting_the_fence_waits_for_the_outcome(gateways) -> None:  # type: ignore[no-untyped-def]
    a, b = await gateways(), await gateways()
    for survives in (False, True):
        name = f"c-{uuid.uuid4().hex[:10]}"
        await a.store.create_bucket(name)
        commit_pause, before_fence, fenced = Pause(), Pause(), Pause()
        b.store.pauses.set("commit.before_cas", commit_pause)
        a.store.pauses.set("delete_bucket.before_fence", before_fence)
        a.store.pauses.set("delete_bucket.fenced", fenced)
        putting = asyncio.ensure_future(outcome(b.store.put_object(name, "k", pieces(b"racing"), {})))
        await commit_pause.reached.wait()
        b.store.pauses.clear()
        deleting = asyncio.ensure_future(outcome(a.store.delete_bucket(name)))
        await before_fence.reached.wait()  # the bucket was empty when DeleteBucket first looked
        if survives:  # ... and a write through another gateway lands before the fence
            other = await gateways()
            await other.store.put_object(name, "landed", pieces(b"acknowledged"), {})
        before_fence.release.set()
        await fenced.reached.wait()
        a.store.pauses.clear()
        commit_pause.release.set()  # the held PUT's commit meets the fence, and waits
        await asyncio.sleep(0.3)
        assert not putting.done()
        fenced.release.set()
        put, delete = await putting, await deleting
        if survives:
            assert delete[0] == "error" and isinstance(delete[1], BucketNotEmpty)
            assert put[0] == "ok"  # the fence lifted, the waiting PUT went through
            assert await read_all(a.store, name, "k") == b"racing"
            assert await read_all(a.store, name, "landed") == b"acknowledged"
        else:
            assert delete[0] == "ok" and put[0] == "error" and isinstance(put[1], BucketNotFound), (put, delete)


async def test_uploads_in_progress_go_with_the_bucket(gw: Gateway) -> None:
    name = f"c-{uuid.uuid4().hex[:10]}"
    await gw.store.create_bucket(name)
    upload_id, _, etags = await new_upload(gw, name, "mp")
    await gw.store.delete_bucket(name)
    with pytest.raises(BucketNotFound):
        await gw.store.head_bucket(name)
    await gw.store.create_bucket(name)  # the same name again: the old upload is not there
    with pytest.raises(UploadNotFound):
        await gw.multipart.complete(name, "mp", upload_id, [(1, etags[0]), (2, etags[1])], lambda _: None)
    assert await stream_bytes(gw.store, name) == 0
    await gw.store.delete_bucket(name)


async def test_a_fence_left_by_a_dead_gateway_lapses(gw: Gateway, bucket: str) -> None:
    await gw.store.put_object(bucket, "k", pieces(b"before"), {})
    await raise_fence(gw.store.nc, naming.stream_name(naming.nats_bucket(bucket)), seconds=1.0)
    # A write refused by the fence (409) waits for the fence to lapse, and lifts it; the retry succeeds.
    with pytest.raises(BucketBusy):
        await gw.store.put_object(bucket, "k", pieces(b"refused"), {})
    await gw.store.put_object(bucket, "k", pieces(b"after the fence"), {})
    assert await read_all(gw.store, bucket, "k") == b"after the fence"
    # A delete (no chunks, only a commit) meeting a fence waits it out and goes through.
    await raise_fence(gw.store.nc, naming.stream_name(naming.nats_bucket(bucket)), seconds=1.0)
    await gw.store.delete_object(bucket, "k")
    with pytest.raises(ObjectNotFound):
        await gw.store.head_object(bucket, "k")


async def test_upload_records_of_a_deleted_bucket_are_forgotten(gw: Gateway) -> None:
    name = f"c-{uuid.uuid4().hex[:10]}"
    await gw.store.create_bucket(name)
    upload = await gw.multipart.create(name, "k", {}, checksum_algorithm=None, checksum_type=None, owner="o")
    records = gw.multipart.records(name)
    assert await records.get(f"U.{upload.upload_id}") is not None
    await gw.store.delete_bucket(name)  # uploads merely open go with the bucket
    assert await records.get(f"U.{upload.upload_id}") is None
    # One created in the moment between the stream's deletion and that cleanup is swept by the collector.
    await records.create("U.latecomer", upload.model_copy(update={"upload_id": "latecomer"}).model_dump_json().encode())
    await gw.multipart.forget_deleted_buckets()
    assert await records.get("U.latecomer") is None


async def test_an_upload_being_completed_keeps_its_bucket(gw: Gateway) -> None:
    name = f"c-{uuid.uuid4().hex[:10]}"
    await gw.store.create_bucket(name)
    upload_id, bodies, etags = await new_upload(gw, name, "mp")
    pause = Pause()
    gw.store.pauses.set("complete.marked", pause)
    completing = asyncio.ensure_future(
        gw.multipart.complete(name, "mp", upload_id, [(1, etags[0]), (2, etags[1])], lambda _: None)
    )
    await pause.reached.wait()
    gw.store.pauses.clear()
    with pytest.raises(BucketNotEmpty):  # an object is on its way
        await gw.store.delete_bucket(name)
    pause.release.set()
    await completing
    assert await read_all(gw.store, name, "mp") == b"".join(bodies)


async def test_claims_of_one_chunk_subject_far_apart_are_settled_in_one_pass(gw: Gateway, bucket: str) -> None:
    # Each first version's intent and the claim its overwrite writes are ~300 claims apart, beyond one
    # fetched batch of claims: the pass must read the later one, not defer the subject for ever.
    for i in range(300):
        await gw.store.put_object(bucket, f"k{i}", pieces(b"first"), {})
    for i in range(300):
        await gw.store.put_object(bucket, f"k{i}", pieces(b"second"), {})
    assert await gw.collect(bucket) == 300
    assert len(await chunk_subjects(gw.store, bucket)) == 300
    info = await gw.store.js.stream_info(
        naming.stream_name(naming.nats_bucket(bucket)),
        subjects_filter=naming.claim_wildcard(naming.nats_bucket(bucket)),
    )
    assert not info.state.subjects  # and every claim is settled


# ---- what a review found, kept as regressions --------------------------------------------------------


class Boom(Exception):
    """Stands for a failure at a pause point (a lost ack, a dead connection)."""


def fail() -> Callable[[], Awaitable[None]]:
    async def hook() -> None:
        raise Boom

    return hook


async def test_a_complete_whose_answer_was_lost_is_not_reopened(gw: Gateway, bucket: str) -> None:
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    upload_id, bodies, etags = await new_upload(gw, bucket, "mp")
    requested = [(1, etags[0]), (2, etags[1])]
    gw.store.pauses.set("commit.after_cas", fail())  # the object is committed, the answer lost
    with pytest.raises(Boom):
        await gw.multipart.complete(bucket, "mp", upload_id, requested, lambda _: None)
    gw.store.pauses.clear()
    _, upload = await gw.multipart.get_upload(bucket, "mp", upload_id)
    assert upload.state == "completing"  # not handed back: an abort now could free the object's parts
    with pytest.raises(UploadNotFound):
        await gw.multipart.abort(bucket, "mp", upload_id)
    again = await gw.multipart.complete(bucket, "mp", upload_id, requested, lambda _: None)  # the retry
    history = await gw.store.list_versions_page(bucket, "", "", "", None, 100)
    assert [e.version_id for e in history.entries] == [again.version_id]  # one version, not two sharing parts
    await gw.collect(bucket)
    assert await read_all(gw.store, bucket, "mp") == b"".join(bodies)


async def test_a_slow_put_does_not_bring_back_a_version_deleted_meanwhile(gw: Gateway, bucket: str) -> None:
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    first = await gw.store.put_object(bucket, "k", pieces(b"a"), {})
    second = await gw.store.put_object(bucket, "k", pieces(b"b"), {})
    pause = Pause()
    gw.store.pauses.set("put.before_commit", pause)
    putting = asyncio.ensure_future(gw.store.put_object(bucket, "k", pieces(b"c"), {}))
    await pause.reached.wait()  # it read `second` as the latest, before its body
    gw.store.pauses.clear()
    await gw.store.delete_object(bucket, "k", second.version_id)
    await gw.collect(bucket)  # frees `second` and drops its tombstone
    pause.release.set()
    third = await putting
    listed = [e.version_id for e in (await gw.store.list_versions_page(bucket, "", "", "", None, 100)).entries]
    assert listed == [third.version_id, first.version_id]


async def test_a_failed_delete_of_the_latest_leaves_it_a_version(gw: Gateway, bucket: str) -> None:
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    kept = await gw.store.put_object(bucket, "k", pieces(b"kept"), {})
    gw.store.pauses.set("delete_latest.before_cas", fail())
    with pytest.raises(Boom):
        await gw.store.delete_object(bucket, "k", kept.version_id)
    gw.store.pauses.clear()
    await gw.store.put_object(bucket, "k", pieces(b"newer"), {})
    await gw.collect(bucket)
    assert await read_all(gw.store, bucket, "k", kept.version_id) == b"kept"


async def test_listing_resumes_after_a_marker_deleted_between_pages(gw: Gateway, bucket: str) -> None:
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    made = [await gw.store.put_object(bucket, "k", pieces(f"v{i}".encode()), {}) for i in range(3)]
    await gw.store.put_object(bucket, "l", pieces(b"other"), {})
    page = await gw.store.list_versions_page(bucket, "", "", "", None, 1)
    assert (page.next_key, page.next_version) == ("k", made[2].version_id)
    await gw.store.delete_object(bucket, "k", made[2].version_id)  # made[1] becomes the latest
    rest = await gw.store.list_versions_page(bucket, "", "", "k", made[2].version_id, 10)
    assert [(e.key, e.version_id) for e in rest.entries] == [
        ("k", made[1].version_id), ("k", made[0].version_id), ("l", rest.entries[-1].version_id)
    ]  # fmt: skip


async def test_a_long_history_is_paged_without_reading_it_whole(gw: Gateway, bucket: str) -> None:
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    made = [(await gw.store.put_object(bucket, "k", pieces(b"x"), {})).version_id for _ in range(60)]
    heads, history = await gw.store.index.current_with_history(bucket)
    seen, marker = [], None
    while True:
        page = history.versions_page(heads, "", "", "k" if marker else "", marker, 7)
        seen += [e.version_id for e in page.entries]
        if not page.truncated:
            break
        marker = page.next_version
    assert seen == made[::-1]


async def test_a_claim_refused_by_a_fence_waits_for_it(gw: Gateway, bucket: str) -> None:
    upload_id, _, _ = await new_upload(gw, bucket, "mp")
    await raise_fence(gw.store.nc, naming.stream_name(naming.nats_bucket(bucket)), seconds=1.0)
    result = await outcome(
        gw.multipart.upload_part(bucket, "mp", upload_id, 1, pieces(os.urandom(PART), MiB), no_checksum)
    )
    assert result[0] == "ok" or isinstance(result[1], BucketBusy), result  # never a raw error (a 500)
    await gw.multipart.upload_part(bucket, "mp", upload_id, 1, pieces(os.urandom(PART), MiB), no_checksum)
    await gw.multipart.abort(bucket, "mp", upload_id)
    await gw.collect(bucket)
    assert await chunk_subjects(gw.store, bucket) == set()  # the replaced parts were claimed after all


async def test_deleting_a_delete_marker_leaves_nothing_behind(gw: Gateway, bucket: str) -> None:
    await gw.store.set_versioning(bucket, Versioning.ENABLED)
    marker = await gw.store.delete_object(bucket, "k")
    await gw.store.delete_object(bucket, "k", marker.version_id)
    await gw.collect(bucket)
    nb = naming.nats_bucket(bucket)
    info = await gw.store.js.stream_info(naming.stream_name(nb), subjects_filter=f"$O.{nb}.>")
    assert not info.state.subjects, info.state.subjects  # no tombstone, no deletion mark, no claim


async def test_a_write_stalled_longer_than_the_grace_keeps_its_chunks(gateways, bucket: str) -> None:  # type: ignore[no-untyped-def]
    gw = await gateways(grace=0.6)
    stalled, resume = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield os.urandom(CHUNK)
        stalled.set()
        await resume.wait()  # the client pauses (an idle timeout allows minutes)
        yield os.urandom(CHUNK)

    putting = asyncio.ensure_future(gw.store.put_object(bucket, "k", body(), {}))
    await stalled.wait()
    for _ in range(5):
        await asyncio.sleep(0.4)
        assert await gw.collect(bucket) == 0  # its claim is renewed while it runs
    resume.set()
    await putting
    assert len(await read_all(gw.store, bucket, "k")) == 2 * CHUNK
