"""Reclamation seen from outside, with gateway processes: a GET that outlives an overwrite, a gateway killed
mid-upload, the collector lease passing on when its holder dies, and the metric of a bucket it stopped at."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import re
import signal
import time
import urllib.request
import uuid
from pathlib import Path

import nats

from nats_s3.store import naming

from .conftest import make_client
from .signing import start_put
from .support import GatewayProcess, NatsServerProcess, eventually, stream_state, write_credentials

MiB = 1024 * 1024


def metrics(endpoint: str) -> str:
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_a_get_in_flight_survives_overwrite_and_delete(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(32 * MiB)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    body = s3.get_object(Bucket=bucket, Key="big")["Body"]
    first = body.read(4 * MiB)
    s3.put_object(Bucket=bucket, Key="big", Body=b"something else")
    s3.delete_object(Bucket=bucket, Key="big")
    rest = body.read()
    assert hashlib.md5(first + rest).digest() == hashlib.md5(data).digest()


def test_copies_while_the_source_is_rewritten_are_whole_versions(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    bodies = [os.urandom(6 * MiB) for _ in range(3)]
    etags = {hashlib.md5(b).hexdigest() for b in bodies}
    s3.put_object(Bucket=bucket, Key="src", Body=bodies[0])

    def rewrite() -> None:
        for i in range(12):
            s3.put_object(Bucket=bucket, Key="src", Body=bodies[i % 3])

    def copy(i: int) -> str:
        return str(
            s3.copy_object(Bucket=bucket, Key=f"dst{i}", CopySource={"Bucket": bucket, "Key": "src"})[
                "CopyObjectResult"
            ]["ETag"]
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        writer = pool.submit(rewrite)
        copies = list(pool.map(copy, range(8)))
        writer.result()
    for i, etag in enumerate(copies):
        got = s3.get_object(Bucket=bucket, Key=f"dst{i}")["Body"].read()
        assert hashlib.md5(got).hexdigest() == etag.strip('"') and etag.strip('"') in etags


def test_a_gateway_killed_mid_upload_leaves_nothing_behind(s3, nats_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bucket = f"kill-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="kept", Body=b"committed before")
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url).start()
    chunk = os.urandom(MiB)
    sockets = []
    try:
        for i in range(8):
            sock = start_put(gw.endpoint, f"/{bucket}/upload-{i}", 64 * MiB, b"")
            sockets.append(sock)
        for _ in range(20):  # 20 of each upload's 64 MiB
            for sock in sockets:
                sock.sendall(chunk)
        in_flight = eventually(lambda: stream_state(nats_url, bucket)[1], lambda b: b > 100 * MiB, timeout=20)
        assert in_flight > 100 * MiB
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait(10)
    finally:
        for sock in sockets:
            sock.close()
        gw.stop()
    gw.start()  # the killed gateway comes back; the collector (whichever gateway holds it) cleans up
    try:
        state = eventually(lambda: stream_state(nats_url, bucket), lambda st: st[1] < 4096, timeout=30)
        assert state[1] < 4096, state  # only the committed object's meta and chunk are left
        assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"committed before"
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["kept"]
    finally:
        gw.stop()
    s3.delete_object(Bucket=bucket, Key="kept")
    s3.delete_bucket(Bucket=bucket)


def test_the_collector_lease_passes_on_when_its_holder_dies(tmp_path: Path) -> None:
    server = NatsServerProcess().start()
    creds = write_credentials(tmp_path / "c.json")
    first = GatewayProcess(creds, server.url).start()
    second: GatewayProcess | None = None
    try:
        assert eventually(lambda: "nats_s3_gc_lease_held 1.0" in metrics(first.endpoint), bool, timeout=15)
        second = GatewayProcess(creds, server.url).start()
        time.sleep(2)
        assert "nats_s3_gc_lease_held 0.0" in metrics(second.endpoint)  # one collector at a time
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        held = eventually(lambda: "nats_s3_gc_lease_held 1.0" in metrics(second.endpoint), bool, timeout=20)
        assert held, "the lease did not pass to the gateway still running"
        # ... and it collects: an overwritten object's chunks go after the grace.
        c = make_client(second.endpoint)
        c.create_bucket(Bucket="lease-takeover")
        c.put_object(Bucket="lease-takeover", Key="k", Body=os.urandom(MiB))
        c.put_object(Bucket="lease-takeover", Key="k", Body=b"small")
        assert eventually(lambda: stream_state(server.url, "lease-takeover")[1], lambda b: b < 4096) < 4096
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.cleanup()


def test_a_bucket_with_an_unreadable_record_shows_in_the_metrics(s3, bucket: str, gateway, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    nb = naming.nats_bucket(bucket)

    async def publish(payload: bytes) -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            if payload:
                await js.publish(naming.claim_subject(nb, "garbled"), payload)
            else:
                await js.purge_stream(naming.stream_name(nb), subject=naming.claim_subject(nb, "garbled"))
        finally:
            await nc.close()

    s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(MiB))
    asyncio.run(publish(b"\x00not a claim"))
    s3.put_object(Bucket=bucket, Key="k", Body=b"overwrites the first, which now waits for the collector")
    line = re.compile(rf'nats_s3_gc_blocked\{{bucket="{re.escape(bucket)}"\}} 1\.0')
    assert eventually(lambda: bool(line.search(metrics(gateway.endpoint))), bool, timeout=15)
    time.sleep(3)  # well past the grace: still nothing freed in that bucket
    assert stream_state(nats_url, bucket)[1] > MiB
    assert "does not parse" in gateway.log_text()
    asyncio.run(publish(b""))  # the record removed by an operator: collection resumes
    assert eventually(lambda: stream_state(nats_url, bucket)[1], lambda b: b < 4096) < 4096
    assert not line.search(metrics(gateway.endpoint))
