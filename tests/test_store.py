"""The NATS side: Object Store interop with nats-py both ways, no consumers left behind, no orphaned chunks,
and nothing lost across gateway restarts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
from pathlib import Path

import nats
import nats.js.errors
import pytest

from nats_s3.store import naming

from .conftest import make_client
from .support import GatewayProcess, eventually


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _with_js(nats_url: str, fn):  # type: ignore[no-untyped-def]
    nc = await nats.connect(nats_url)
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


def test_gateway_object_read_by_nats_py(s3, bucket: str, nats_url: str) -> None:
    data = os.urandom(1_234_567)
    s3.put_object(Bucket=bucket, Key="dir/interop.bin", Body=data, ContentType="application/x-test")

    async def read(js):  # type: ignore[no-untyped-def]
        store = await js.object_store(naming.nats_bucket(bucket))
        result = await store.get("dir/interop.bin")  # also verifies the SHA-256 digest
        info = await store.get_info("dir/interop.bin")
        return result.data, info

    got, info = run(_with_js(nats_url, read))
    assert got == data
    assert info.size == len(data)
    assert info.headers["content-type"] == ["application/x-test"]


def test_latest_version_of_a_versioned_key_read_by_nats_py(s3, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    bodies = [os.urandom(400_000 + i) for i in range(3)]
    for body in bodies:
        s3.put_object(Bucket=bucket, Key="versioned.bin", Body=body)

    async def read(js):  # type: ignore[no-untyped-def]
        store = await js.object_store(naming.nats_bucket(bucket))
        return (await store.get("versioned.bin")).data, [i.name for i in await store.list()]

    data, names = run(_with_js(nats_url, read))
    assert data == bodies[-1] and names == ["versioned.bin"]  # the latest, and older versions are not entries
    s3.delete_object(Bucket=bucket, Key="versioned.bin")  # a delete marker: deleted, to an Object Store client

    async def gone(js):  # type: ignore[no-untyped-def]
        store = await js.object_store(naming.nats_bucket(bucket))
        with pytest.raises(nats.js.errors.ObjectNotFoundError):
            await store.get_info("versioned.bin")

    run(_with_js(nats_url, gone))


def test_nats_py_object_served_over_s3(s3, bucket: str, nats_url: str) -> None:
    data = os.urandom(700_001)

    async def write(js):  # type: ignore[no-untyped-def]
        store = await js.object_store(naming.nats_bucket(bucket))
        await store.put("from nats-py/ü.bin", data)

    run(_with_js(nats_url, write))
    got = s3.get_object(Bucket=bucket, Key="from nats-py/ü.bin")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    ranged = s3.get_object(Bucket=bucket, Key="from nats-py/ü.bin", Range="bytes=300000-300099")
    assert ranged["Body"].read() == data[300000:300100]
    etag = got["ETag"].strip('"')
    assert len(etag) == 64  # SHA-256 hex: not mistaken for an MD5 by clients
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["from nats-py/ü.bin"]
    s3.delete_object(Bucket=bucket, Key="from nats-py/ü.bin")

    async def gone(js):  # type: ignore[no-untyped-def]
        store = await js.object_store(naming.nats_bucket(bucket))
        with pytest.raises(nats.js.errors.ObjectNotFoundError):
            await store.get_info("from nats-py/ü.bin")

    run(_with_js(nats_url, gone))


def test_bucket_made_by_nats_py_is_listed(s3, nats_url: str) -> None:
    async def make(js):  # type: ignore[no-untyped-def]
        await js.create_object_store("made_by_nats_py")

    run(_with_js(nats_url, make))
    try:
        names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
        assert "made.by.nats.py" in names  # '_' maps back to '.'
        s3.put_object(Bucket="made.by.nats.py", Key="k", Body=b"v")
        assert s3.get_object(Bucket="made.by.nats.py", Key="k")["Body"].read() == b"v"
        s3.delete_object(Bucket="made.by.nats.py", Key="k")
    finally:
        s3.delete_bucket(Bucket="made.by.nats.py")


def test_gets_leave_no_consumers(s3, bucket: str, nats_url: str) -> None:
    data = os.urandom(2_000_000)
    s3.put_object(Bucket=bucket, Key="hot", Body=data)

    def get(i: int) -> bytes:
        rng = f"bytes={i * 1000}-" if i % 2 else None
        kwargs = {"Range": rng} if rng else {}
        return bytes(s3.get_object(Bucket=bucket, Key="hot", **kwargs)["Body"].read()[:10])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(get, range(200)))
    assert len(results) == 200

    async def consumers(js):  # type: ignore[no-untyped-def]
        info = await js.stream_info(naming.stream_name(naming.nats_bucket(bucket)))
        return info.state.consumer_count

    assert run(_with_js(nats_url, consumers)) == 0


def test_concurrent_overwrites_leave_one_version(s3, bucket: str, nats_url: str) -> None:
    bodies = [os.urandom(300_000 + i) for i in range(8)]

    def put(body: bytes) -> str:
        return str(s3.put_object(Bucket=bucket, Key="race", Body=body)["ETag"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, bodies))
    final = s3.get_object(Bucket=bucket, Key="race")["Body"].read()
    assert final in bodies

    async def chunk_subjects(js):  # type: ignore[no-untyped-def]
        nb = naming.nats_bucket(bucket)
        info = await js.stream_info(naming.stream_name(nb), subjects_filter=naming.chunk_wildcard(nb))
        return info.state.subjects or {}

    subjects = eventually(lambda: run(_with_js(nats_url, chunk_subjects)), lambda found: len(found) == 1)
    assert len(subjects) == 1  # only the surviving version's chunks remain, once the collector has been


def test_delete_frees_chunks(s3, bucket: str, nats_url: str) -> None:
    s3.put_object(Bucket=bucket, Key="big", Body=os.urandom(3_000_000))
    s3.delete_object(Bucket=bucket, Key="big")

    async def state(js):  # type: ignore[no-untyped-def]
        info = await js.stream_info(naming.stream_name(naming.nats_bucket(bucket)))
        return info.state.bytes

    assert eventually(lambda: run(_with_js(nats_url, state)), lambda size: size == 0) == 0  # nothing, after the grace


def test_restart_keeps_everything(nats_url: str, credentials_file: Path) -> None:
    gw = GatewayProcess(credentials_file, nats_url).start()
    try:
        client = make_client(gw.endpoint)
        client.create_bucket(Bucket="restart.keeps")
        data = os.urandom(900_000)
        client.put_object(
            Bucket="restart.keeps",
            Key="k",
            Body=data,
            ContentType="text/x-kept",
            Metadata={"m": "v"},
            ChecksumAlgorithm="SHA1",
        )
        created = next(b for b in client.list_buckets()["Buckets"] if b["Name"] == "restart.keeps")["CreationDate"]
    finally:
        gw.stop()
    gw = GatewayProcess(credentials_file, nats_url).start()
    try:
        client = make_client(gw.endpoint)
        got = client.get_object(Bucket="restart.keeps", Key="k", ChecksumMode="ENABLED")
        assert got["Body"].read() == data
        assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert got["ContentType"] == "text/x-kept"
        assert got["Metadata"] == {"m": "v"}
        assert got["ChecksumSHA1"]
        again = next(b for b in client.list_buckets()["Buckets"] if b["Name"] == "restart.keeps")["CreationDate"]
        assert again == created
        client.delete_object(Bucket="restart.keeps", Key="k")
        client.delete_bucket(Bucket="restart.keeps")
    finally:
        gw.stop()


def test_lost_chunks_are_an_error_not_a_short_body(s3, bucket: str, nats_url: str, gateway) -> None:
    from .signing import signed_request

    s3.put_object(Bucket=bucket, Key="damaged", Body=os.urandom(1_000_000))
    info = s3.head_object(Bucket=bucket, Key="damaged")

    async def purge_chunks(js):  # type: ignore[no-untyped-def]
        nb = naming.nats_bucket(bucket)
        await js.purge_stream(naming.stream_name(nb), subject=naming.chunk_wildcard(nb))

    run(_with_js(nats_url, purge_chunks))
    resp = signed_request("GET", f"{gateway.endpoint}/{bucket}/damaged")
    assert resp.status_code == 500
    assert "<Code>InternalError</Code>" in resp.text
    assert s3.head_object(Bucket=bucket, Key="damaged")["ETag"] == info["ETag"]


def test_chunk_reader_reads_a_single_chunk_and_waits_briefly_for_one_not_yet_there(nats_url: str) -> None:
    """A one-chunk read (every small object) is a single direct get: it finds the chunk by sequence, asks
    again while a replica may still be catching up, and calls the object damaged only after that."""
    from nats_s3.store.chunks import ChunkReader
    from nats_s3.store.errors import CorruptObject

    async def scenario() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        stream = f"CHUNKREADER_{os.getpid()}"
        await js.add_stream(name=stream, subjects=[f"{stream}.>"], allow_direct=True)
        try:
            other = await js.publish(f"{stream}.other", b"not this one")
            ack = await js.publish(f"{stream}.c1", b"chunk one")

            async def read(subject: str, seq: int) -> list[bytes]:
                reader = ChunkReader(nc, stream, subject, runs=((seq, 1),), first=0, count=1, chunk_size=1024)
                return [data async for data in reader]

            assert await read(f"{stream}.c1", ack.seq) == [b"chunk one"]
            # From an earlier sequence, the next message on the chunk's own subject, never another's.
            assert await read(f"{stream}.c1", other.seq) == [b"chunk one"]

            async def publish_late() -> None:
                await asyncio.sleep(0.02)
                await js.publish(f"{stream}.late", b"late chunk")

            late = asyncio.create_task(publish_late())
            assert await read(f"{stream}.late", ack.seq + 1) == [b"late chunk"]
            await late
            with pytest.raises(CorruptObject):
                await read(f"{stream}.missing", 1)
        finally:
            await js.delete_stream(stream)
            await nc.close()

    run(scenario())
