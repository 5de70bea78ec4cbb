"""minio-py against the endpoint, one test per feature-matrix cell."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from minio import Minio
from minio.commonconfig import REPLACE, ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.versioningconfig import ENABLED, VersioningConfig

from .clients import (
    LIST,
    PRESIGNED_KEY,
    THOUSAND_KEYS,
    Endpoint,
    MiB,
    Wire,
    expected_listing,
    md5_etag,
    minio_client,
    not_supported,
    sha256,
    tampered,
)

CLIENT = "minio-py"


def cell(operation: str) -> pytest.MarkDecorator:
    return pytest.mark.cell(CLIENT, operation)


@pytest.fixture(scope="module")
def mc(endpoint: Endpoint) -> Minio:
    return minio_client(endpoint)


def read(mc: Minio, bucket: str, key: str, **kw: Any) -> bytes:
    resp = mc.get_object(bucket, key, **kw)
    try:
        return bytes(resp.read())
    finally:
        resp.close()
        resp.release_conn()


def meta(stat: Any) -> Any:
    """The response headers minio-py keeps on a stat (user metadata among them)."""
    assert stat.metadata is not None
    return stat.metadata


def put(mc: Minio, bucket: str, key: str, data: bytes, **kw: Any) -> Any:
    return mc.put_object(bucket, key, io.BytesIO(data), len(data), **kw)


@cell("buckets")
def test_buckets(mc: Minio, new_bucket: Any, endpoint: Endpoint) -> None:
    name = new_bucket(create=False)
    mc.make_bucket(name)
    assert mc.bucket_exists(name)
    assert name in [b.name for b in mc.list_buckets()]
    if endpoint.region == "us-east-1":
        mc.make_bucket(name)  # S3's legacy rule there: a bucket you own is created again, 200
    else:
        with pytest.raises(S3Error) as exists:
            mc.make_bucket(name)
        assert exists.value.code == "BucketAlreadyOwnedByYou"
    mc.remove_bucket(name)
    assert not mc.bucket_exists(name)


@cell("objects")
def test_objects(mc: Minio, bucket: str) -> None:
    body = b"hello from minio-py\n" * 60
    result = put(mc, bucket, "dir/hello.txt", body)
    assert result.etag == md5_etag(body)
    stat = mc.stat_object(bucket, "dir/hello.txt")
    assert stat.size == len(body) and stat.etag == md5_etag(body)
    assert read(mc, bucket, "dir/hello.txt") == body
    mc.remove_object(bucket, "dir/hello.txt")
    with pytest.raises(S3Error) as missing:
        mc.stat_object(bucket, "dir/hello.txt")
    assert missing.value.code in ("NoSuchKey", "ResourceNotFound")
    with pytest.raises(S3Error) as missing_get:
        read(mc, bucket, "dir/hello.txt")
    assert missing_get.value.code == "NoSuchKey"


@cell("metadata")
def test_metadata(mc: Minio, bucket: str, probe: Any) -> None:
    put(mc, bucket, "m.txt", b"metadata", content_type="text/x-conformance",
        metadata={"color": "blue", "owner-id": "42", "Cache-Control": "max-age=60"})  # fmt: skip
    stat = mc.stat_object(bucket, "m.txt")
    assert stat.content_type == "text/x-conformance"
    assert meta(stat)["x-amz-meta-color"] == "blue" and meta(stat)["x-amz-meta-owner-id"] == "42"
    assert meta(stat)["Cache-Control"] == "max-age=60"
    head = probe.head_object(Bucket=bucket, Key="m.txt")
    assert head["Metadata"] == {"color": "blue", "owner-id": "42"} and head["CacheControl"] == "max-age=60"


@cell("copy")
def test_copy(mc: Minio, bucket: str, wire: Wire) -> None:
    put(mc, bucket, "src.txt", b"copy me", content_type="text/plain", metadata={"a": "1"})
    watch = wire.watch(bucket)
    mc.copy_object(bucket, "same.txt", CopySource(bucket, "src.txt"))
    stat = mc.stat_object(bucket, "same.txt")
    assert meta(stat)["x-amz-meta-a"] == "1" and stat.content_type == "text/plain"
    mc.copy_object(bucket, "replaced.txt", CopySource(bucket, "src.txt"),
                   metadata={"b": "2", "Content-Type": "text/x-new"}, metadata_directive=REPLACE)  # fmt: skip
    stat = mc.stat_object(bucket, "replaced.txt")
    assert meta(stat)["x-amz-meta-b"] == "2" and "x-amz-meta-a" not in meta(stat)
    assert stat.content_type == "text/x-new"
    assert read(mc, bucket, "replaced.txt") == b"copy me"
    watch.expect("CopyObject", status=200, at_least=2)


@cell("range")
def test_range(mc: Minio, bucket: str, wire: Wire) -> None:
    body = bytes(range(256)) * 4
    put(mc, bucket, "r.bin", body)
    watch = wire.watch(bucket)
    assert read(mc, bucket, "r.bin", offset=100, length=100) == body[100:200]
    assert read(mc, bucket, "r.bin", offset=1000) == body[1000:]
    watch.expect("GetObject", status=206, at_least=2)


@cell("list_delimiter")
def test_list_delimiter(mc: Minio, listing_bucket: str) -> None:
    for prefix in ("", "photos/", "docs/"):
        keys, prefixes = expected_listing(prefix, "/")
        for v1 in (False, True):
            found = list(mc.list_objects(listing_bucket, prefix=prefix, recursive=False, use_api_v1=v1))
            assert [o.object_name for o in found if not o.is_dir] == keys
            assert [o.object_name for o in found if o.is_dir] == prefixes


@cell("list_paging")
def test_list_paging(mc: Minio, thousand_bucket: str, wire: Wire) -> None:
    watch = wire.watch(thousand_bucket)
    # minio-py cannot ask for small pages: 1003 keys need two 1000-key pages, in v2 and in v1.
    for v1 in (False, True):
        names = [o.object_name for o in mc.list_objects(thousand_bucket, recursive=True, use_api_v1=v1)]
        assert names == THOUSAND_KEYS
    after = [o.object_name for o in mc.list_objects(thousand_bucket, recursive=True, start_after=THOUSAND_KEYS[-3])]
    assert after == THOUSAND_KEYS[-2:]
    watch.expect(LIST, status=200, at_least=5)


@cell("batch_delete")
def test_batch_delete(mc: Minio, bucket: str, wire: Wire) -> None:
    for key in ["del/1", "del/2", "del/3", "keep"]:
        put(mc, bucket, key, key.encode())
    watch = wire.watch(bucket)
    doomed = [DeleteObject(k) for k in ["del/1", "del/2", "del/3", "never-existed"]]
    errors = list(mc.remove_objects(bucket, doomed))  # lazy: the request goes out as it is iterated
    assert errors == []
    assert [o.object_name for o in mc.list_objects(bucket, recursive=True)] == ["keep"]
    watch.expect("DeleteObjects", status=200)


@cell("versions")
def test_versions(mc: Minio, bucket: str, wire: Wire) -> None:
    watch = wire.watch(bucket)
    mc.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    assert mc.get_bucket_versioning(bucket).status == ENABLED
    ids = [put(mc, bucket, "doc.txt", f"generation {g}".encode()).version_id for g in range(2)]
    listed = [(o.object_name, o.version_id, o.is_latest) for o in mc.list_objects(bucket, include_version=True)]
    assert listed == [("doc.txt", ids[1], "true"), ("doc.txt", ids[0], "false")], listed
    assert read(mc, bucket, "doc.txt", version_id=ids[0]) == b"generation 0"
    for vid in ids:
        mc.remove_object(bucket, "doc.txt", version_id=vid)
    assert list(mc.list_objects(bucket, include_version=True)) == []
    watch.expect("ListObjectVersions", status=200, at_least=2)


@cell("multipart")
def test_multipart(mc: Minio, bucket: str, big_file: Path, tmp_path: Path, wire: Wire) -> None:
    watch = wire.watch(bucket)
    data = big_file.read_bytes()
    with big_file.open("rb") as fh:
        mc.put_object(bucket, "big.bin", fh, len(data), part_size=5 * MiB, metadata={"kind": "big"})
    watch.expect("UploadPart", status=200, at_least=3)
    watch.expect("CompleteMultipartUpload", status=200)
    stat = mc.stat_object(bucket, "big.bin")
    assert stat.size == len(data) and str(stat.etag).endswith("-3")
    assert meta(stat)["x-amz-meta-kind"] == "big"
    # Unknown length: minio-py streams 5 MiB parts until the reader ends.
    with big_file.open("rb") as fh:
        mc.put_object(bucket, "streamed.bin", fh, -1, part_size=5 * MiB)
    # compose_object builds a multipart object server-side from others (UploadPartCopy).
    put(mc, bucket, "tail.txt", b"and a tail")
    mc.compose_object(bucket, "composed.bin", [ComposeSource(bucket, "big.bin"), ComposeSource(bucket, "tail.txt")])
    watch.expect("UploadPartCopy", status=200, at_least=2)
    for key, want in (("big.bin", data), ("streamed.bin", data), ("composed.bin", data + b"and a tail")):
        mc.fget_object(bucket, key, str(tmp_path / key))
        assert sha256((tmp_path / key).read_bytes()) == sha256(want)


@cell("presigned_get")
def test_presigned_get(mc: Minio, bucket: str) -> None:
    put(mc, bucket, PRESIGNED_KEY, b"presigned by minio-py", content_type="text/plain")
    url = mc.presigned_get_object(bucket, PRESIGNED_KEY, expires=timedelta(minutes=5))
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == b"presigned by minio-py" and resp.headers["Content-Type"] == "text/plain"
    assert requests.get(tampered(url), timeout=30).status_code == 403


@cell("presigned_put")
def test_presigned_put(mc: Minio, bucket: str) -> None:
    url = mc.presigned_put_object(bucket, PRESIGNED_KEY, expires=timedelta(minutes=5))
    assert requests.put(tampered(url), data=b"x", timeout=30).status_code == 403
    resp = requests.put(url, data=b"uploaded with a minio-py URL", timeout=30)
    assert resp.status_code == 200, resp.text
    assert read(mc, bucket, PRESIGNED_KEY) == b"uploaded with a minio-py URL"


@cell("sync")
def test_sync() -> None:
    not_supported("minio-py is an SDK: it has no sync (that is the `mc mirror` command, not on PyPI)")


@cell("tagging")
def test_tagging(mc: Minio, bucket: str) -> None:
    from minio.commonconfig import Tags

    put(mc, bucket, "tagged", b"tagged")
    tags = Tags.new_object_tags()
    tags["team"], tags["tier"] = "storage", "hot"
    mc.set_object_tags(bucket, "tagged", tags)
    assert dict(mc.get_object_tags(bucket, "tagged") or {}) == {"team": "storage", "tier": "hot"}
    mc.delete_object_tags(bucket, "tagged")
    assert not mc.get_object_tags(bucket, "tagged")
    bucket_tags = Tags.new_bucket_tags()
    bucket_tags["owner"] = "ops"
    mc.set_bucket_tags(bucket, bucket_tags)
    assert dict(mc.get_bucket_tags(bucket) or {}) == {"owner": "ops"}
    mc.delete_bucket_tags(bucket)
    assert mc.get_bucket_tags(bucket) is None  # minio-py answers None for NoSuchTagSet
