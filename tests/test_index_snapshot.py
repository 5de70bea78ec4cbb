"""Listing index snapshots in NATS: a gateway that first lists a big bucket starts from the snapshot
another gateway saved and replays only what came after, and lists exactly what the stream holds: writes
and deletions after the snapshot, a snapshot too old to trust (its deletions may be collected), and a
damaged one."""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from pathlib import Path

import nats
import pytest

from nats_s3.store import naming
from nats_s3.store.index_snapshot import MIN_KEYS, STREAM, SnapshotHead, head_subject
from nats_s3.store.models import format_mtime

from .conftest import make_client
from .signing import signed_request
from .support import GatewayProcess, eventually, write_credentials

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EMPTY_DIGEST = "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="


def populate(url: str, bucket: str, keys: list[str]) -> None:
    """Meta messages straight to JetStream, as an Object Store client writes 0-byte objects."""

    async def run() -> None:
        nb = naming.nats_bucket(bucket)
        mtime = format_mtime(datetime.datetime.now(datetime.UTC))
        nc = await nats.connect(url)
        try:
            js = nc.jetstream(publish_async_max_pending=2000)
            for i, key in enumerate(keys):
                doc = {"name": key, "bucket": nb, "nuid": f"n{i}", "size": 0, "mtime": mtime, "chunks": 0,
                       "digest": EMPTY_DIGEST, "metadata": {"s3-etag": EMPTY_MD5}}  # fmt: skip
                await js.publish_async(
                    naming.meta_subject(nb, key), json.dumps(doc).encode(), headers={"Nats-Rollup": "sub"}
                )
            await asyncio.wait_for(js.publish_async_completed(), 60)
        finally:
            await nc.close()

    asyncio.run(run())


def restored_lines(log: str, bucket: str) -> list[str]:
    """The log's lines saying `bucket`'s index was restored (a collector may renew and restore others')."""
    return [line for line in log.splitlines() if "restored from a snapshot" in line and f"bucket={bucket} " in line]


def snapshot_head(url: str, bucket: str) -> SnapshotHead | None:
    async def run() -> SnapshotHead | None:
        nc = await nats.connect(url)
        try:
            msg = await nc.jetstream().get_last_msg(STREAM, head_subject(naming.nats_bucket(bucket)))
            return SnapshotHead.model_validate_json(msg.data or b"")
        except nats.js.errors.NotFoundError:
            return None
        finally:
            await nc.close()

    return asyncio.run(run())


def replace_head(url: str, bucket: str, head: SnapshotHead) -> None:
    async def run() -> None:
        nc = await nats.connect(url)
        try:
            await nc.jetstream().publish(
                head_subject(naming.nats_bucket(bucket)),
                head.model_dump_json().encode(),
                headers={"Nats-Rollup": "sub"},
            )
        finally:
            await nc.close()

    asyncio.run(run())


def stream_last_seq(url: str, nb: str) -> int:
    async def run() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().stream_info(naming.stream_name(nb))).state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(run())


def listing(endpoint: str, bucket: str) -> list[str]:
    pages = make_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture()
def creds(tmp_path: Path) -> Path:
    return write_credentials(tmp_path / "c.json")


def gateway(creds: Path, nats_url: str, grace: str) -> GatewayProcess:
    return GatewayProcess(creds, nats_url, gc_args=["--gc.grace", grace, "--gc.interval", "0.5s"]).start()


def test_a_second_gateway_starts_from_the_snapshot_and_sees_every_later_write(nats_url: str, creds: Path) -> None:
    bucket = f"snap-{uuid.uuid4().hex[:8]}"
    first = gateway(creds, nats_url, "1h")
    try:
        assert signed_request("PUT", f"{first.endpoint}/{bucket}").status_code == 200
        keys = [f"d{i % 50:02d}/k{i:06d}" for i in range(MIN_KEYS + 500)]
        populate(nats_url, bucket, keys)
        assert listing(first.endpoint, bucket) == sorted(keys)  # built from the stream, then saved
        head = eventually(lambda: snapshot_head(nats_url, bucket), lambda h: h is not None)
        assert head is not None and head.keys == len(keys)
        # After the snapshot: new keys, deletions (tombstones the replay must see), an overwrite.
        for key in ("a-new", "d07/k000007x", "zz-last"):
            assert signed_request("PUT", f"{first.endpoint}/{bucket}/{key}", body=b"x").status_code == 200
        for key in keys[:40:3]:
            assert signed_request("DELETE", f"{first.endpoint}/{bucket}/{key}").status_code == 204
        assert signed_request("PUT", f"{first.endpoint}/{bucket}/{keys[100]}", body=b"yy").status_code == 200
        want = sorted((set(keys) - set(keys[:40:3])) | {"a-new", "d07/k000007x", "zz-last"})
        assert listing(first.endpoint, bucket) == want
        second = gateway(creds, nats_url, "1h")
        try:
            assert listing(second.endpoint, bucket) == want
            restored = restored_lines(second.log_text(), bucket)
            # The first gateway's snapshot, or one a collector renewed since: either way, what came after.
            assert len(restored) == 1, second.log_text()[-2000:]
            shown = make_client(second.endpoint).list_objects_v2(Bucket=bucket, Prefix=keys[100], MaxKeys=1)
            assert [(o["Key"], o["Size"]) for o in shown["Contents"]] == [(keys[100], 2)]  # the overwrite
            # And it keeps following the stream: a write through the first shows in the second.
            assert signed_request("PUT", f"{first.endpoint}/{bucket}/after-both", body=b"z").status_code == 200
            assert "after-both" in listing(second.endpoint, bucket)
        finally:
            second.stop()
        # A damaged snapshot (its digest no longer matches) is not used; the listing is built as before.
        # It names the stream's last sequence, so no collector renews it (nothing came after it).
        last = stream_last_seq(nats_url, naming.nats_bucket(bucket))
        replace_head(nats_url, bucket, head.model_copy(update={"sha256": "0" * 64, "seq": last}))
        third = gateway(creds, nats_url, "1h")
        try:
            assert listing(third.endpoint, bucket) == sorted([*want, "after-both"])
            assert "index snapshot not used" in third.log_text()
            assert not restored_lines(third.log_text(), bucket)
        finally:
            third.stop()
    finally:
        first.stop()


def test_a_snapshot_older_than_half_the_grace_is_not_used(nats_url: str, creds: Path) -> None:
    """The interleaving that would break a replay: a deletion after the snapshot whose record the
    collector purged (grace over) before another gateway loads the snapshot. By then the snapshot is
    older than half the grace, so it is not used."""
    bucket = f"stale-{uuid.uuid4().hex[:8]}"
    first = gateway(creds, nats_url, "3s")
    try:
        assert signed_request("PUT", f"{first.endpoint}/{bucket}").status_code == 200
        keys = [f"k{i:06d}" for i in range(MIN_KEYS + 10)]
        populate(nats_url, bucket, keys)
        assert len(listing(first.endpoint, bucket)) == len(keys)
        assert eventually(lambda: snapshot_head(nats_url, bucket), lambda h: h is not None)
        assert signed_request("DELETE", f"{first.endpoint}/{bucket}/{keys[5]}").status_code == 204
        nb = naming.nats_bucket(bucket)
        deleted_at = stream_last_seq(nats_url, nb)

        def meta_left() -> bool:
            async def run() -> bool:
                nc = await nats.connect(nats_url)
                try:
                    await nc.jetstream().get_last_msg(naming.stream_name(nb), naming.meta_subject(nb, keys[5]))
                    return True
                except nats.js.errors.NotFoundError:
                    return False
                finally:
                    await nc.close()

            return asyncio.run(run())

        assert not eventually(meta_left, lambda left: not left, timeout=30)  # the tombstone is collected
    finally:
        first.stop()
    head = snapshot_head(nats_url, bucket)
    assert head is not None
    second = gateway(creds, nats_url, "3s")
    try:
        got = listing(second.endpoint, bucket)
        assert keys[5] not in got and len(got) == len(keys) - 1
        if head.seq < deleted_at:  # not a refresh taken after the deletion: too old to be used
            assert not restored_lines(second.log_text(), bucket)
    finally:
        second.stop()


async def test_a_refresh_while_an_index_is_built_saves_nothing_then_the_whole_index_is_saved(nats_url: str) -> None:
    """The interleaving that once saved a third of a million-key index: the housekeeping pass meeting
    an index whose build is under way. Forced: the pass meets an index that has applied more than
    enough keys to be saved but has not caught up with the stream yet."""
    from nats_s3.store.list_index import BucketIndex
    from nats_s3.store.nats_store import NatsStore
    from nats_s3.store.packed_entries import Entry

    bucket = f"mid-{uuid.uuid4().hex[:8]}"
    nb = naming.nats_bucket(bucket)
    nc = await nats.connect(nats_url)
    store = NatsStore(nc, index_snapshot_max_age=600)
    await store.start()
    try:
        await store.create_bucket(bucket)
        snapshots = store.index.snapshots
        assert snapshots is not None
        index = BucketIndex(bucket)  # as a build leaves it part way: keys applied, not caught up
        for i in range(MIN_KEYS + 1):
            index._upsert(f"k{i:06d}", Entry(0, EMPTY_MD5, 1.7e9, None, "null"))
        index.delivered_seq = MIN_KEYS + 1
        store.index._heads[bucket] = index
        await store.index.refresh_snapshots()
        await asyncio.sleep(0.5)
        assert await snapshots.head(nb) is None
        index.caught_up = True  # the build completed (current() sets it after its catch-up)
        await store.index.refresh_snapshots()
        for _ in range(100):
            head = await snapshots.head(nb)
            if head is not None:
                break
            await asyncio.sleep(0.1)
        assert head is not None and head.keys == MIN_KEYS + 1 and head.seq == MIN_KEYS + 1
    finally:
        store.index._heads.pop(bucket, None)
        await store.close()
        await nc.close()


def test_the_collector_keeps_a_snapshot_young_for_a_bucket_nobody_lists(nats_url: str) -> None:
    """No gateway holds the index of a big bucket: the housekeeping leader writes its snapshot (built from
    the stream the first time, then from the last snapshot and what came after), so a later listing on
    any gateway restores it; a small bucket is looked at once, not built at every pass."""
    from nats_s3.store import list_index
    from nats_s3.store.nats_store import NatsStore

    bucket, small = f"renew-{uuid.uuid4().hex[:8]}", f"small-{uuid.uuid4().hex[:8]}"
    nb = naming.nats_bucket(bucket)
    keys = [f"k{i:06d}" for i in range(MIN_KEYS + 50)]

    async def setup() -> None:
        nc = await nats.connect(nats_url)
        store = NatsStore(nc)
        await store.start()
        await store.create_bucket(bucket)
        await store.create_bucket(small)
        await store.close()
        await nc.close()

    asyncio.run(setup())
    populate(nats_url, bucket, keys)
    populate(nats_url, small, keys[:100])

    async def run() -> None:
        nc = await nats.connect(nats_url)
        leader = NatsStore(nc, index_snapshot_max_age=3.0)
        await leader.start()
        try:
            snapshots = leader.index.snapshots
            assert snapshots is not None
            # None yet: noted first (a gateway that just built the index may be saving it), then, once
            # there has been none for a third of the snapshots' age limit, built from the stream and
            # saved: by this leader, or by the suite's shared gateway, whose collector does the same.
            assert not await leader.index.renew_snapshot(bucket)
            first = None
            for _ in range(100):
                await asyncio.sleep(0.1)
                await leader.index.renew_snapshot(bucket)
                first = await snapshots.head(nb)
                if first is not None:
                    break
            assert first is not None and first.keys == len(keys)
            assert leader.index.loaded(bucket) is None  # let go once saved
            assert not await leader.index.renew_snapshot(bucket)  # young, or nothing came after it
            assert not await leader.index.renew_snapshot(small)
            assert not await leader.index.renew_snapshot(small)  # not looked at again for a while
            assert await snapshots.head(naming.nats_bucket(small)) is None
            # Later writes, and a deletion, then the snapshot gets a third of the way to too old.
            await leader.put_object(bucket, "late", _body(b"late"), {})
            await leader.delete_object(bucket, keys[0])
            # Renewed here, or by the suite's shared gateway, whose collector does the same.
            second = await renewed(leader, nb, after=first.seq, keys=len(keys))
            # Another gateway lists: restored from the renewed snapshot, and exactly what the stream holds.
            other_nc = await nats.connect(nats_url)
            other = NatsStore(other_nc, index_snapshot_max_age=3.0)
            await other.start()
            try:
                index = await other.index.current(bucket)
                assert not index.from_stream and index.snapshot_seq >= second.seq
                listed = [o.key for o in (await other.list_page(bucket, "", "", "", 20_000)).objects]
                assert listed == sorted([*keys[1:], "late"])
            finally:
                await other.close()
                await other_nc.close()
            # The collector's pass is what does it, on the gateway holding the collector lease.
            from nats_s3.store.collector import Collector
            from nats_s3.store.lease import Lease
            from nats_s3.store.multipart import MultipartStore

            await leader.put_object(bucket, "later", _body(b"later"), {})
            lease = Lease(leader.configs.records, f"test-{uuid.uuid4().hex}", 30)
            collector = Collector(leader, MultipartStore(leader), lease, grace=3600, multipart_expiry=3600)
            assert await collector.lease.acquire()
            await renewed(leader, nb, after=second.seq, keys=len(keys) + 1, collector=collector)
        finally:
            await leader.close()
            await nc.close()

    assert list_index.MIN_KEYS == MIN_KEYS
    asyncio.run(run())


async def renewed(store, nb: str, *, after: int, keys: int, collector=None):  # type: ignore[no-untyped-def]
    """The bucket's snapshot once one taken after sequence `after` holds `keys` keys (renewed by `store`,
    by a `collector` pass, or by another gateway's collector)."""
    bucket = nb.replace("_", ".")
    for _ in range(100):
        if collector is not None:
            await collector.run_pass()
        else:
            await store.index.renew_snapshot(bucket)
        head = await store.index.snapshots.head(nb)
        if head is not None and head.seq > after and head.keys == keys:
            return head
        await asyncio.sleep(0.1)
    raise AssertionError(f"no snapshot of {nb} after {after} with {keys} keys: {head}")


async def _body(data: bytes):  # type: ignore[no-untyped-def]
    yield data
