"""Quotas: per bucket (bytes, objects), per owner and in total, set with `nats-s3 admin`, enforced by the
gateway before a write takes bytes and by JetStream's stream limits for every writer; usage in /metrics."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from botocore.exceptions import ClientError

from nats_s3.store import naming
from nats_s3.store.quotas import RESERVE_MIN

from .conftest import make_client
from .signing import sign, signed_request
from .support import GatewayProcess, NatsServerProcess, eventually, stream_state, write_credentials
from .test_admin import admin

KiB = 1024


def stream_config(nats_url: str, bucket: str) -> dict:  # type: ignore[type-arg]
    async def probe() -> dict:  # type: ignore[type-arg]
        nc = await nats.connect(nats_url)
        try:
            stream = naming.stream_name(naming.nats_bucket(bucket))
            reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)
            return json.loads(reply.data)["config"]  # type: ignore[no-any-return]
        finally:
            await nc.close()

    return asyncio.run(probe())


def refused(call) -> ClientError:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        call()
    assert err.value.response["Error"]["Code"] == "QuotaExceeded", err.value.response
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return err.value


def set_quota(nats_url: str, bucket: str, *flags: str) -> dict:  # type: ignore[type-arg]
    got = admin("--natsServers", nats_url, "--json", "bucket", "quota", bucket, *flags)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)  # type: ignore[no-any-return]


def keys(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_bucket_byte_quota_refuses_writes_before_their_bytes(s3, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    assert set_quota(nats_url, bucket, "--max-bytes", "256KiB")["quota"] == {"max_bytes": 256 * KiB, "max_objects": 0}
    # The stream's own limit: the quota and the reserve for records.
    assert stream_config(nats_url, bucket)["max_bytes"] == 256 * KiB + RESERVE_MIN
    info = json.loads(admin("--natsServers", nats_url, "--json", "bucket", "info", bucket).stdout)
    assert info["quota"]["max_bytes"] == 256 * KiB

    s3.put_object(Bucket=bucket, Key="a", Body=b"a" * (100 * KiB))
    before = stream_state(nats_url, bucket)
    err = refused(lambda: s3.put_object(Bucket=bucket, Key="b", Body=b"b" * (200 * KiB)))
    assert bucket in err.response["Error"]["Message"] and "262144 bytes" in err.response["Error"]["Message"]
    assert stream_state(nats_url, bucket) == before  # not a byte of it was taken
    assert keys(s3, bucket) == ["a"]

    # A copy brings the source's size; UploadPart its Content-Length.
    s3.copy_object(Bucket=bucket, Key="a2", CopySource={"Bucket": bucket, "Key": "a"})
    refused(lambda: s3.copy_object(Bucket=bucket, Key="a3", CopySource={"Bucket": bucket, "Key": "a"}))
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    refused(lambda: s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"m" * (100 * KiB)))
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=upload)
    assert sorted(keys(s3, bucket)) == ["a", "a2"]

    # Full, a bucket can still be emptied: deletions are records, which the reserve holds.
    s3.delete_object(Bucket=bucket, Key="a2")
    assert keys(s3, bucket) == ["a"]

    # Removed: no stream limit, and big writes pass again.
    assert set_quota(nats_url, bucket, "--max-bytes", "0")["quota"] is None
    assert stream_config(nats_url, bucket)["max_bytes"] == -1
    eventually(
        lambda: _put_passes(s3, bucket, "b", 300 * KiB),
        bool,
        timeout=5,
    )


def _put_passes(s3, bucket: str, key: str, size: int) -> bool:  # type: ignore[no-untyped-def]
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)
    except ClientError:
        return False
    return True


def _generate(total: int, piece: int = 64 * KiB) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"z" * min(piece, total - sent)
        sent += piece


def test_the_stream_limit_holds_writes_the_gateway_could_not_size(  # type: ignore[no-untyped-def]
    s3, gateway: GatewayProcess, bucket: str, nats_url: str
) -> None:
    """A body of unknown length (chunked, no x-amz-decoded-content-length) passes the admission of a
    bucket that is not full, and JetStream refuses it at the stream's limit: 403 QuotaExceeded, no
    object, and its chunks go back to the collector. A plain NATS client is held to the limit too."""
    set_quota(nats_url, bucket, "--max-bytes", "64KiB")
    url = f"{gateway.endpoint}/{bucket}/unsized"
    resp = signed_request("PUT", url, payload_hash="UNSIGNED-PAYLOAD", send_body=_generate(4 * RESERVE_MIN))
    assert resp.status_code == 403 and "<Code>QuotaExceeded</Code>" in resp.text, resp.text
    assert "unsized" not in keys(s3, bucket)
    held = stream_state(nats_url, bucket)[1]
    assert held <= 64 * KiB + RESERVE_MIN
    # The refused write's chunks are the collector's (the suite's gateway collects within seconds).
    assert eventually(lambda: stream_state(nats_url, bucket)[1], lambda n: n < 16 * KiB) < 16 * KiB

    async def publish_past_the_limit() -> str:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            subject = naming.chunk_subject(naming.nats_bucket(bucket), "PLAINCLIENT")
            for _ in range(64):
                try:
                    await js.publish(subject, b"p" * (64 * KiB))
                except nats.js.errors.APIError as exc:
                    return str(exc.description)
            return "accepted"
        finally:
            await nc.close()

    assert asyncio.run(publish_past_the_limit()) == "maximum bytes exceeded"
    assert stream_state(nats_url, bucket)[1] <= 64 * KiB + RESERVE_MIN
    asyncio.run(_purge(nats_url, bucket, "PLAINCLIENT"))


async def _purge(nats_url: str, bucket: str, nuid: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        stream = naming.stream_name(naming.nats_bucket(bucket))
        subject = naming.chunk_subject(naming.nats_bucket(bucket), nuid)
        await nc.request(f"$JS.API.STREAM.PURGE.{stream}", json.dumps({"filter": subject}).encode(), timeout=5)
    finally:
        await nc.close()


def test_object_quota_counts_new_keys_including_multipart(s3, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    set_quota(nats_url, bucket, "--max-bytes", "0", "--max-objects", "2")
    assert stream_config(nats_url, bucket)["max_bytes"] == -1  # objects have no stream limit to map onto
    s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="b", Body=b"2")
    err = refused(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"3"))
    assert "2 of 2 objects" in err.response["Error"]["Message"]
    s3.put_object(Bucket=bucket, Key="a", Body=b"overwritten")  # replaces one: no new object
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    refused(lambda: s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload, MultipartUpload=parts))
    s3.delete_object(Bucket=bucket, Key="b")
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload, MultipartUpload=parts)
    assert sorted(keys(s3, bucket)) == ["a", "m"]


def test_a_new_key_in_flight_holds_its_place(s3, gateway: GatewayProcess, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    """Forced interleaving: a PUT of a new key is admitted and stalls mid-body; a second new key is
    refused while it is in flight (not counted twice, nor forgotten), and the first then lands."""
    set_quota(nats_url, bucket, "--max-bytes", "0", "--max-objects", "1")
    host, port = gateway.endpoint.removeprefix("http://").split(":")
    body = b"s" * 1000
    url = f"{gateway.endpoint}/{bucket}/slow"
    headers = sign("PUT", url, body=body, headers={"Content-Length": str(len(body))})
    head = f"PUT /{bucket}/slow HTTP/1.1\r\nHost: {host}:{port}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host"
    )
    conn = socket.create_connection((host, int(port)))
    try:
        conn.sendall(head.encode() + b"\r\n" + body[:500])
        time.sleep(0.5)  # admitted, and reading its body
        refused(lambda: s3.put_object(Bucket=bucket, Key="other", Body=b"x"))
        conn.sendall(body[500:])
        conn.settimeout(10)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        conn.close()
    assert keys(s3, bucket) == ["slow"]


@pytest.fixture
def own_gateway(tmp_path: Path) -> Iterator[tuple[GatewayProcess, str]]:
    """A gateway with --quota.total over a NATS of its own (owner quotas are global to a deployment)."""
    server = NatsServerProcess().start()
    creds = write_credentials(
        tmp_path / "creds.json",
        [
            {"accessKey": "ALICEKEY", "secretKey": "alice-secret-key"},
            {"accessKey": "BOBKEY01", "secretKey": "bob-secret-key01"},
        ],
    )
    gw = GatewayProcess(creds, server.url, extra=["--quota.total", "600KiB"]).start()
    try:
        yield gw, server.url
    finally:
        gw.stop()
        server.cleanup()


def test_owner_and_total_quotas(own_gateway: tuple[GatewayProcess, str]) -> None:
    gw, nats_url = own_gateway
    alice = make_client(gw.endpoint, access="ALICEKEY", secret="alice-secret-key")
    bob = make_client(gw.endpoint, access="BOBKEY01", secret="bob-secret-key01")
    for client, name in ((alice, "alice-1"), (alice, "alice-2"), (bob, "bob-1")):
        client.create_bucket(Bucket=name)
    got = admin(
        "--natsServers", nats_url, "--json", "owner", "quota", "--access-key", "ALICEKEY", "--max-bytes", "250KiB"
    )
    assert got.returncode == 0, got.stderr
    alice.put_object(Bucket="alice-1", Key="k", Body=b"a" * (150 * KiB))
    # Across her buckets: 150 KiB held, 150 more would pass 250 (gateways read owner quotas every few s).
    err = eventually(
        lambda: _refusal(lambda: alice.put_object(Bucket="alice-2", Key="k", Body=b"a" * (150 * KiB))),
        lambda e: e is not None,
        timeout=10,
    )
    assert err is not None and "owner" in err["Message"], err
    alice.delete_object(Bucket="alice-2", Key="k")  # in case an early try landed before the quota was read
    alice.put_object(Bucket="alice-2", Key="small", Body=b"a" * (50 * KiB))

    # Bob has no owner quota; the total (600 KiB) holds him.
    bob.put_object(Bucket="bob-1", Key="k1", Body=b"b" * (300 * KiB))
    total = _refusal(lambda: bob.put_object(Bucket="bob-1", Key="k2", Body=b"b" * (200 * KiB)))
    assert total is not None and "total" in total["Message"], total

    usage = json.loads(admin("--natsServers", nats_url, "--json", "usage").stdout)
    owners = {row["owner"]: row for row in usage["owners"]}
    alice_row = next(row for row in owners.values() if row["max_bytes"] == 250 * KiB)
    assert 200 * KiB <= alice_row["bytes"] <= 250 * KiB

    # Usage and quotas in /metrics (read in the background every 15 s).
    metrics = eventually(lambda: _metrics(gw), lambda text: 'nats_s3_bucket_bytes{bucket="bob-1"}' in text)
    assert "nats_s3_storage_quota_bytes 614400.0" in metrics
    assert 'nats_s3_bucket_uploads_in_progress{bucket="bob-1"} 0.0' in metrics
    assert "nats_s3_storage_bytes " in metrics

    removed = admin("--natsServers", nats_url, "owner", "quota", "--access-key", "ALICEKEY", "--max-bytes", "0")
    assert removed.returncode == 0 and "no quota" in removed.stdout


def _refusal(call) -> dict | None:  # type: ignore[no-untyped-def, type-arg]
    try:
        call()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "QuotaExceeded", exc.response
        return exc.response["Error"]  # type: ignore[no-any-return]
    return None


def _metrics(gw: GatewayProcess) -> str:
    with urllib.request.urlopen(f"{gw.endpoint}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_bucket_quota_metrics(s3, gateway: GatewayProcess, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    set_quota(nats_url, bucket, "--max-bytes", "10MiB", "--max-objects", "100")
    line = f'nats_s3_bucket_quota_bytes{{bucket="{bucket}"}} 1.048576e+07'
    text = eventually(lambda: _metrics(gateway), lambda t: line in t)
    assert line in text and f'nats_s3_bucket_quota_objects{{bucket="{bucket}"}} 100.0' in text
