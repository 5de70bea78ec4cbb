"""Replication across sites: a bucket of the hub's JetStream domain replicated to a leaf node site with
`nats-s3 admin bucket replicate`, served read-only there, caught up after a burst and after a cut
link, and promoted when the hub is gone."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from botocore.exceptions import ClientError

from nats_s3.store.bucket_config import GATEWAY_KV

from .sites import HubAndLeaf
from .support import GatewayProcess, eventually, write_credentials
from .test_admin import admin
from .test_failover import _client

BUCKET = "replicated"
SECOND = "second"
DROPPED = "dropped"


@pytest.fixture
def sites() -> Iterator[HubAndLeaf]:
    pair = HubAndLeaf().start()
    try:
        yield pair
    finally:
        pair.stop()


def _versions(s3, bucket: str, prefix: str = "") -> list[tuple[str, str, bool, str]]:  # type: ignore[no-untyped-def]
    out = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    rows = [(v["Key"], v["VersionId"], v["IsLatest"], v["ETag"]) for v in out.get("Versions", [])]
    rows += [(m["Key"], m["VersionId"], m["IsLatest"], "marker") for m in out.get("DeleteMarkers", [])]
    return sorted(rows)


def _keys(s3, bucket: str, prefix: str) -> int:  # type: ignore[no-untyped-def]
    return sum(
        page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    )


def _keys_or_none(s3, bucket: str, prefix: str) -> int | None:  # type: ignore[no-untyped-def]
    """As _keys; None while the gateway answers 503 (its NATS server restarting)."""
    try:
        return _keys(s3, bucket, prefix)
    except ClientError:
        return None


def _refused(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, error
    assert error["Code"] == "AccessDenied", error
    return str(error.get("Message"))


def _info(url: str, bucket: str) -> dict[str, Any]:
    got = admin("--natsServers", url, "--json", "bucket", "info", bucket)
    assert got.returncode == 0, got.stderr
    found: dict[str, Any] = json.loads(got.stdout)
    return found


def _last_seq(url: str, stream: str) -> int:
    async def ask() -> int:
        nc = await nats.connect(url)
        try:
            return int((await nc.jetstream().stream_info(stream)).state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(ask())


def _sourced_here(url: str) -> set[str]:
    """The subjects of the records the site's gateway KV sources from elsewhere."""

    async def ask() -> set[str]:
        nc = await nats.connect(url)
        try:
            config = (await nc.jetstream().stream_info("KV_" + GATEWAY_KV)).config
            return {s.filter_subject or "" for s in config.sources or []}
        finally:
            await nc.close()

    return asyncio.run(ask())


def _of(bucket: str, subjects: set[str]) -> set[str]:
    return {s for s in subjects if f".{bucket}" in s}


def _put_many(s3, bucket: str, prefix: str, count: int, threads: int = 8) -> float:  # type: ignore[no-untyped-def]
    """`count` 4 KiB objects from `threads` writers; the time the last was acknowledged."""
    body = os.urandom(4096)

    def writer(n: int) -> None:
        for i in range(n, count, threads):
            s3.put_object(Bucket=bucket, Key=f"{prefix}{i:05d}", Body=body)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.monotonic()


def test_a_bucket_replicated_to_a_leaf_site(sites: HubAndLeaf, tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    hub_gw = GatewayProcess(creds, sites.hub.url).start(60)
    leaf_gw = GatewayProcess(creds, sites.leaf.url).start(60)
    try:
        hub, leaf = _client(hub_gw), _client(leaf_gw)
        _replicate_and_compare(sites, hub, leaf)
        _read_only(sites, leaf)
        _drop_replica(sites, hub, leaf)
        _burst_and_cut(sites, hub, leaf)
        _promote(sites, hub_gw, leaf)
    except BaseException:
        print(f"leaf gateway's log:\n{leaf_gw.log_text()[-8000:]}")
        raise
    finally:
        hub_gw.stop()
        leaf_gw.stop()


def _replicate_and_compare(sites: HubAndLeaf, hub, leaf) -> None:  # type: ignore[no-untyped-def]
    hub.create_bucket(Bucket=BUCKET)
    hub.create_bucket(Bucket=SECOND)
    hub.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    hub.put_bucket_cors(
        Bucket=BUCKET,
        CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"]}]},
    )
    bodies = {"a": b"first", "big": os.urandom(1024 * 1024 + 17), "gone": b"soon deleted"}
    hub.put_object(Bucket=BUCKET, Key="a", Body=b"older")
    for key, body in bodies.items():
        hub.put_object(Bucket=BUCKET, Key=key, Body=body)
    hub.put_object_tagging(Bucket=BUCKET, Key="a", Tagging={"TagSet": [{"Key": "site", "Value": "hub"}]})
    hub.delete_object(Bucket=BUCKET, Key="gone")  # a delete marker
    part = os.urandom(5 * 1024 * 1024)
    upload = hub.create_multipart_upload(Bucket=BUCKET, Key="multi")["UploadId"]
    etags = [
        hub.upload_part(Bucket=BUCKET, Key="multi", UploadId=upload, PartNumber=n, Body=part)["ETag"] for n in (1, 2)
    ]
    hub.complete_multipart_upload(
        Bucket=BUCKET, Key="multi", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]},
    )  # fmt: skip
    hub.put_object(Bucket=SECOND, Key="s", Body=b"second bucket")
    # An upload in progress at the origin: listed at the replica, and completed there once promoted.
    pending = hub.create_multipart_upload(Bucket=BUCKET, Key="pending")["UploadId"]
    hub.upload_part(Bucket=BUCKET, Key="pending", UploadId=pending, PartNumber=1, Body=part)

    # Refusals before anything is made: an origin bucket that does not exist, a bad domain name, a
    # name taken here.
    assert (
        admin("--natsServers", sites.leaf.url, "bucket", "replicate", "nosuch", "--from-domain", "hub").returncode == 3
    )
    assert admin("--natsServers", sites.leaf.url, "bucket", "replicate", BUCKET, "--from-domain", "a.b").returncode == 2
    leaf.create_bucket(Bucket="local")
    taken = admin("--natsServers", sites.leaf.url, "bucket", "replicate", "local", "--from-domain", "hub")
    assert taken.returncode == 5 and "exists here already" in taken.stderr, taken.stderr

    # A mistyped domain says what is wrong; a mirror NATS cannot make (three replicas on a one-server
    # site) leaves no source of the bucket's records behind.
    typo = admin("--natsServers", sites.leaf.url, "bucket", "replicate", BUCKET, "--from-domain", "hbu")
    assert typo.returncode == 1 and "no JetStream answers at $JS.hbu.API" in typo.stderr, typo.stderr
    too_many = admin(
        "--natsServers", sites.leaf.url, "bucket", "replicate", BUCKET, "--from-domain", "hub", "--replicas", "3"
    )
    assert too_many.returncode == 1 and "creating the mirror" in too_many.stderr, too_many.stderr
    assert _of(BUCKET, _sourced_here(sites.leaf.url)) == set()

    for bucket in (BUCKET, SECOND):
        made = admin("--natsServers", sites.leaf.url, "--json", "bucket", "replicate", bucket, "--from-domain", "hub")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["origin"] == "$JS.hub.API"

    want = _versions(hub, BUCKET)
    assert eventually(lambda: _versions(leaf, BUCKET), lambda got: got == want) == want
    for key, body in bodies.items():
        if key != "gone":
            assert leaf.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    assert leaf.get_object(Bucket=BUCKET, Key="multi")["Body"].read() == part + part
    assert leaf.get_object(Bucket=BUCKET, Key="a", VersionId=want[0][1])["Body"].read() in (b"older", b"first")
    assert leaf.get_object_tagging(Bucket=BUCKET, Key="a")["TagSet"] == [{"Key": "site", "Value": "hub"}]
    assert leaf.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert leaf.get_bucket_cors(Bucket=BUCKET)["CORSRules"][0]["AllowedOrigins"] == ["https://example.com"]
    assert {b["Name"] for b in leaf.list_buckets()["Buckets"]} == {BUCKET, SECOND, "local"}
    uploads = eventually(lambda: leaf.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []), lambda u: len(u) == 1)
    assert (uploads[0]["Key"], uploads[0]["UploadId"]) == ("pending", pending)
    assert [p["PartNumber"] for p in leaf.list_parts(Bucket=BUCKET, Key="pending", UploadId=pending)["Parts"]] == [1]
    assert eventually(lambda: _keys(leaf, SECOND, ""), lambda n: n == 1) == 1
    # A replica is a source for copies into the leaf's own buckets.
    leaf.copy_object(Bucket="local", Key="copied", CopySource={"Bucket": BUCKET, "Key": "a"})
    assert leaf.get_object(Bucket="local", Key="copied")["Body"].read() == b"first"

    # A change of configuration at the origin arrives too.
    hub.delete_bucket_cors(Bucket=BUCKET)

    def cors_gone() -> bool:
        try:
            leaf.get_bucket_cors(Bucket=BUCKET)
        except ClientError as exc:
            return exc.response["Error"]["Code"] == "NoSuchCORSConfiguration"
        return False

    assert eventually(cors_gone, bool)
    info = _info(sites.leaf.url, BUCKET)["replication"]
    assert info["origin"] == "$JS.hub.API" and info["domain"] == "hub"
    assert info["stream"]["error"] is None and info["configuration"] is not None and info["uploads"] is not None


def _read_only(sites: HubAndLeaf, leaf) -> None:  # type: ignore[no-untyped-def]
    message = _refused(lambda: leaf.put_object(Bucket=BUCKET, Key="new", Body=b"x"))
    assert "read-only replica" in message and "promote" in message, message
    _refused(lambda: leaf.delete_object(Bucket=BUCKET, Key="a"))
    _refused(lambda: leaf.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "a"}]}))
    _refused(lambda: leaf.copy_object(Bucket=BUCKET, Key="c", CopySource={"Bucket": "local", "Key": "copied"}))
    _refused(lambda: leaf.create_multipart_upload(Bucket=BUCKET, Key="m"))
    _refused(lambda: leaf.put_object_tagging(Bucket=BUCKET, Key="a", Tagging={"TagSet": []}))
    _refused(lambda: leaf.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"}))
    _refused(lambda: leaf.delete_bucket(Bucket=BUCKET))
    _refused(lambda: leaf.abort_multipart_upload(Bucket=BUCKET, Key="pending", UploadId=_pending(leaf)))
    # CreateBucket of a replica's name answers as for any bucket of the caller's (S3's us-east-1 rule:
    # success, nothing changed), not as a write refused.
    leaf.create_bucket(Bucket=BUCKET)
    assert _info(sites.leaf.url, BUCKET)["replication"]["configuration"] is not None
    assert leaf.get_object(Bucket=BUCKET, Key="a")["Body"].read() == b"first"  # nothing changed
    quota = admin("--natsServers", sites.leaf.url, "bucket", "quota", BUCKET, "--max-bytes", "1GiB")
    assert quota.returncode == 5 and "replica" in quota.stderr, quota.stderr
    own = admin("--natsServers", sites.leaf.url, "bucket", "promote", "local")
    assert own.returncode == 5 and "not a replica" in own.stderr, own.stderr


def _pending(s3) -> str:  # type: ignore[no-untyped-def]
    return str(s3.list_multipart_uploads(Bucket=BUCKET)["Uploads"][0]["UploadId"])


def _drop_replica(sites: HubAndLeaf, hub, leaf) -> None:  # type: ignore[no-untyped-def]
    """A replica dropped goes with its sources and records; a bucket made here of its name later is
    this site's own, and the origin's changes no longer reach it."""
    hub.create_bucket(Bucket=DROPPED)
    hub.put_object(Bucket=DROPPED, Key="d", Body=b"d")
    hub.create_multipart_upload(Bucket=DROPPED, Key="upload")
    made = admin("--natsServers", sites.leaf.url, "bucket", "replicate", DROPPED, "--from-domain", "hub")
    assert made.returncode == 0, made.stderr
    assert eventually(lambda: _keys(leaf, DROPPED, ""), lambda n: n == 1) == 1
    assert eventually(lambda: len(leaf.list_multipart_uploads(Bucket=DROPPED).get("Uploads", [])), bool)
    own = admin("--natsServers", sites.leaf.url, "bucket", "drop-replica", "local")
    assert own.returncode == 5 and "not a replica" in own.stderr, own.stderr
    dropped = admin("--natsServers", sites.leaf.url, "--json", "bucket", "drop-replica", DROPPED)
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(dropped.stdout) == {"bucket": DROPPED, "dropped": True}
    assert _of(DROPPED, _sourced_here(sites.leaf.url)) == set()
    assert len(_of(BUCKET, _sourced_here(sites.leaf.url))) == 2  # the other replicas keep theirs
    with pytest.raises(ClientError) as caught:
        leaf.head_bucket(Bucket=DROPPED)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert admin("--natsServers", sites.leaf.url, "bucket", "drop-replica", DROPPED).returncode == 3

    leaf.create_bucket(Bucket=DROPPED)
    assert leaf.list_multipart_uploads(Bucket=DROPPED).get("Uploads", []) == []
    assert "Status" not in leaf.get_bucket_versioning(Bucket=DROPPED)
    hub.put_bucket_versioning(Bucket=DROPPED, VersioningConfiguration={"Status": "Enabled"})
    # A change at the origin that does arrive (another replica's), and then some: the dropped one's not.
    hub.put_bucket_tagging(Bucket=BUCKET, Tagging={"TagSet": [{"Key": "mark", "Value": DROPPED}]})
    assert eventually(lambda: _tags_or_none(leaf, BUCKET), lambda t: t == {"mark": DROPPED}) == {"mark": DROPPED}
    time.sleep(0.5)
    assert "Status" not in leaf.get_bucket_versioning(Bucket=DROPPED)
    leaf.put_object(Bucket=DROPPED, Key="mine", Body=b"here")
    assert _keys(leaf, DROPPED, "") == 1
    leaf.delete_object(Bucket=DROPPED, Key="mine")
    leaf.delete_bucket(Bucket=DROPPED)


def _tags_or_none(s3, bucket: str) -> dict[str, str] | None:  # type: ignore[no-untyped-def]
    try:
        return {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    except ClientError:
        return None


def _burst_and_cut(sites: HubAndLeaf, hub, leaf) -> None:  # type: ignore[no-untyped-def]
    stream = "OBJ_" + BUCKET
    began = time.monotonic()
    burst_done = _put_many(hub, BUCKET, "burst/", 300)
    origin_seq = _last_seq(sites.hub.url, stream)
    behind = origin_seq - _last_seq(sites.leaf.url, stream)
    assert eventually(lambda: _last_seq(sites.leaf.url, stream), lambda seq: seq >= origin_seq, step=0.02) >= origin_seq
    copied = time.monotonic()
    assert eventually(lambda: _keys(leaf, BUCKET, "burst/"), lambda n: n == 300, timeout=60) == 300
    print(
        f"\nreplication: 300 PUTs in {burst_done - began:.2f} s at the hub; the mirror {behind} messages behind "
        f"right after, all copied {copied - burst_done:.2f} s after the last PUT, listed at the leaf "
        f"{time.monotonic() - burst_done:.2f} s after it"
    )

    sites.relay.cut()
    assert eventually(sites.hub.leaf_connections, lambda n: n == 0, timeout=10) == 0
    _put_many(hub, BUCKET, "during-cut/", 40)
    hub.put_object(Bucket=BUCKET, Key="a", Body=b"changed while cut")
    time.sleep(1)
    # The leaf keeps serving what it has.
    assert _keys(leaf, BUCKET, "during-cut/") == 0
    assert leaf.get_object(Bucket=BUCKET, Key="a")["Body"].read() == b"first"
    # What a cut link looks like to an operator: no contact with the origin for a while.
    assert _info(sites.leaf.url, BUCKET)["replication"]["stream"]["last_contact_seconds"] >= 1
    origin_seq = _last_seq(sites.hub.url, stream)
    sites.relay.restore()
    restored = time.monotonic()
    sites.wait_linked()
    linked = time.monotonic()
    assert (
        eventually(lambda: _last_seq(sites.leaf.url, stream), lambda seq: seq >= origin_seq, timeout=90) >= origin_seq
    )
    print(
        f"replication: link up {linked - restored:.2f} s after the relay was, the mirror caught up "
        f"{time.monotonic() - restored:.2f} s after"
    )
    assert eventually(lambda: _keys(leaf, BUCKET, "during-cut/"), lambda n: n == 40, timeout=30) == 40
    assert (
        eventually(lambda: leaf.get_object(Bucket=BUCKET, Key="a")["Body"].read(), lambda b: b == b"changed while cut")
        == b"changed while cut"
    )
    assert _versions(leaf, BUCKET) == _versions(hub, BUCKET)

    # The leaf's server restarts while the hub takes writes: the mirror resumes from what it stored.
    sites.leaf.stop()
    _put_many(hub, BUCKET, "while-leaf-down/", 20)
    origin_seq = _last_seq(sites.hub.url, stream)
    sites.leaf.start()
    sites.wait_linked()
    assert (
        eventually(lambda: _last_seq(sites.leaf.url, stream), lambda seq: seq >= origin_seq, timeout=90) >= origin_seq
    )
    assert eventually(lambda: _keys_or_none(leaf, BUCKET, "while-leaf-down/"), lambda n: n == 20, timeout=60) == 20
    assert _versions(leaf, BUCKET) == _versions(hub, BUCKET)


def _promote(sites: HubAndLeaf, hub_gw: GatewayProcess, leaf) -> None:  # type: ignore[no-untyped-def]
    hub_gw.stop()
    sites.hub.kill()
    promoted = admin("--natsServers", sites.leaf.url, "--json", "bucket", "promote", BUCKET)
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["origin"] == "$JS.hub.API"

    def put() -> str:
        try:
            return str(leaf.put_object(Bucket=BUCKET, Key="after-promotion", Body=b"mine now")["VersionId"])
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])

    began = time.monotonic()
    version = eventually(put, lambda v: v != "AccessDenied", timeout=15)
    print(f"replication: the first PUT after promotion succeeded {time.monotonic() - began:.2f} s after it")
    assert version not in ("AccessDenied", "null"), version
    assert leaf.get_object(Bucket=BUCKET, Key="after-promotion")["Body"].read() == b"mine now"
    assert leaf.get_object(Bucket=BUCKET, Key="a")["Body"].read() == b"changed while cut"
    assert leaf.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    pending = _pending(leaf)
    parts = [p for p in leaf.list_parts(Bucket=BUCKET, Key="pending", UploadId=pending)["Parts"]]
    second = leaf.upload_part(Bucket=BUCKET, Key="pending", UploadId=pending, PartNumber=2, Body=b"tail")["ETag"]
    leaf.complete_multipart_upload(
        Bucket=BUCKET, Key="pending", UploadId=pending,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": parts[0]["ETag"]}, {"PartNumber": 2, "ETag": second}]},
    )  # fmt: skip
    assert leaf.get_object(Bucket=BUCKET, Key="pending")["Body"].read()[-4:] == b"tail"
    assert leaf.head_object(Bucket=BUCKET, Key="pending")["ContentLength"] == 5 * 1024 * 1024 + 4
    leaf.delete_object(Bucket=BUCKET, Key="burst/00000")
    assert _keys(leaf, BUCKET, "burst/") == 299
    assert _info(sites.leaf.url, BUCKET)["replication"] is None
    # The other replica keeps its sources, and stays read-only.
    assert _info(sites.leaf.url, SECOND)["replication"]["configuration"] is not None
    _refused(lambda: leaf.put_object(Bucket=SECOND, Key="x", Body=b"x"))
