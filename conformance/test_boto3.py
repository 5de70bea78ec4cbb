"""boto3 against the endpoint, one test per feature-matrix cell."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from .clients import (
    LIST,
    LISTING_KEYS,
    PRESIGNED_KEY,
    Endpoint,
    MiB,
    Wire,
    boto3_client,
    expected_listing,
    md5_etag,
    not_supported,
    sha256,
    tampered,
)

CLIENT = "boto3"


def cell(operation: str) -> pytest.MarkDecorator:
    return pytest.mark.cell(CLIENT, operation)


@pytest.fixture(scope="module")
def s3(endpoint: Endpoint) -> Any:
    return boto3_client(endpoint)


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@cell("buckets")
def test_buckets(s3: Any, new_bucket: Any, endpoint: Endpoint) -> None:
    name = new_bucket(create=False)
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "", "us-east-1")
    if endpoint.region == "us-east-1":
        s3.create_bucket(Bucket=name)  # S3's legacy rule there: a bucket you own is created again, 200
    else:
        with pytest.raises(ClientError) as exists:
            s3.create_bucket(Bucket=name)
        assert error_code(exists) == "BucketAlreadyOwnedByYou"
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as gone:
        s3.head_bucket(Bucket=name)
    assert error_code(gone) in ("404", "NoSuchBucket")


@cell("objects")
def test_objects(s3: Any, bucket: str) -> None:
    body = b"hello from boto3\n" * 100
    put = s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=body)
    assert put["ETag"].strip('"') == md5_etag(body)
    head = s3.head_object(Bucket=bucket, Key="dir/hello.txt")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="dir/hello.txt")["Body"].read() == body
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert error_code(missing) == "NoSuchKey"
    with pytest.raises(ClientError) as head_missing:
        s3.head_object(Bucket=bucket, Key="dir/hello.txt")
    assert error_code(head_missing) == "404"


@cell("metadata")
def test_metadata(s3: Any, bucket: str) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="meta.txt",
        Body=b"metadata",
        ContentType="text/x-conformance",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="m.txt"',
        Metadata={"color": "blue", "owner-id": "42"},
    )
    head = s3.head_object(Bucket=bucket, Key="meta.txt")
    assert head["ContentType"] == "text/x-conformance"
    assert head["CacheControl"] == "max-age=60"
    assert head["ContentDisposition"] == 'attachment; filename="m.txt"'
    assert head["Metadata"] == {"color": "blue", "owner-id": "42"}
    assert s3.get_object(Bucket=bucket, Key="meta.txt")["Metadata"] == {"color": "blue", "owner-id": "42"}


@cell("copy")
def test_copy(s3: Any, bucket: str, wire: Wire) -> None:
    s3.put_object(Bucket=bucket, Key="src.txt", Body=b"copy me", ContentType="text/plain", Metadata={"a": "1"})
    watch = wire.watch(bucket)
    s3.copy_object(Bucket=bucket, Key="same.txt", CopySource={"Bucket": bucket, "Key": "src.txt"})
    head = s3.head_object(Bucket=bucket, Key="same.txt")
    assert head["Metadata"] == {"a": "1"} and head["ContentType"] == "text/plain"
    s3.copy_object(
        Bucket=bucket,
        Key="replaced.txt",
        CopySource={"Bucket": bucket, "Key": "src.txt"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/x-new",
    )
    head = s3.head_object(Bucket=bucket, Key="replaced.txt")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/x-new"
    assert s3.get_object(Bucket=bucket, Key="replaced.txt")["Body"].read() == b"copy me"
    watch.expect("CopyObject", status=200, at_least=2)


@cell("range")
def test_range(s3: Any, bucket: str) -> None:
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r.bin", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r.bin", Range="bytes=100-199")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes 100-199/{len(body)}"
    assert got["Body"].read() == body[100:200]
    assert s3.get_object(Bucket=bucket, Key="r.bin", Range="bytes=-10")["Body"].read() == body[-10:]
    assert s3.get_object(Bucket=bucket, Key="r.bin", Range="bytes=1000-")["Body"].read() == body[1000:]


@cell("list_delimiter")
def test_list_delimiter(s3: Any, listing_bucket: str) -> None:
    for prefix in ("", "photos/", "docs/"):
        keys, prefixes = expected_listing(prefix, "/")
        v2 = s3.list_objects_v2(Bucket=listing_bucket, Prefix=prefix, Delimiter="/")
        assert [o["Key"] for o in v2.get("Contents", [])] == keys
        assert [p["Prefix"] for p in v2.get("CommonPrefixes", [])] == prefixes
        v1 = s3.list_objects(Bucket=listing_bucket, Prefix=prefix, Delimiter="/")
        assert [o["Key"] for o in v1.get("Contents", [])] == keys
        assert [p["Prefix"] for p in v1.get("CommonPrefixes", [])] == prefixes


@cell("list_paging")
def test_list_paging(s3: Any, listing_bucket: str, wire: Wire) -> None:
    watch = wire.watch(listing_bucket)
    for operation in ("list_objects_v2", "list_objects"):
        pages = list(s3.get_paginator(operation).paginate(Bucket=listing_bucket, PaginationConfig={"PageSize": 3}))
        assert len(pages) == 4
        assert [o["Key"] for page in pages for o in page["Contents"]] == LISTING_KEYS
    after = s3.list_objects_v2(Bucket=listing_bucket, StartAfter=LISTING_KEYS[4], MaxKeys=2)
    assert [o["Key"] for o in after["Contents"]] == LISTING_KEYS[5:7] and after["IsTruncated"]
    watch.expect(LIST, status=200, at_least=9)


@cell("batch_delete")
def test_batch_delete(s3: Any, bucket: str, wire: Wire) -> None:
    keys = [f"del/{i}" for i in range(5)] + ["keep"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    watch = wire.watch(bucket)
    doomed = [*keys[:5], "never-existed"]
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in doomed]})
    assert sorted(d["Key"] for d in result["Deleted"]) == sorted(doomed)
    assert not result.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]
    watch.expect("DeleteObjects", status=200)


@cell("versions")
def test_versions(s3: Any, bucket: str, wire: Wire) -> None:
    watch = wire.watch(bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    ids = [s3.put_object(Bucket=bucket, Key="doc.txt", Body=f"generation {g}".encode())["VersionId"] for g in range(2)]
    marker = s3.delete_object(Bucket=bucket, Key="doc.txt")
    assert marker["DeleteMarker"] is True
    listed = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker["VersionId"], True)]
    assert s3.get_object(Bucket=bucket, Key="doc.txt", VersionId=ids[0])["Body"].read() == b"generation 0"
    s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "doc.txt", "VersionId": v} for v in [*ids, marker["VersionId"]]]},
    )
    assert not s3.list_object_versions(Bucket=bucket).get("Versions")
    watch.expect("ListObjectVersions", status=200, at_least=2)


@cell("multipart")
def test_multipart(s3: Any, bucket: str, big_file: Path, tmp_path: Path, wire: Wire) -> None:
    watch = wire.watch(bucket)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)
    extra = {"Metadata": {"kind": "big"}, "ContentType": "application/x-big"}
    s3.upload_file(str(big_file), bucket, "big.bin", Config=config, ExtraArgs=extra)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    data = big_file.read_bytes()
    assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"] == {"kind": "big"} and head["ContentType"] == "application/x-big"
    out = tmp_path / "down.bin"
    s3.download_file(bucket, "big.bin", str(out), Config=config)
    assert sha256(out.read_bytes()) == sha256(data)
    watch.expect("UploadPart", status=200, at_least=3)
    watch.expect("CompleteMultipartUpload", status=200)
    # The low-level calls too: list an open upload and its parts, copy a part from an object, abort.
    upload = s3.create_multipart_upload(Bucket=bucket, Key="manual.bin")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="manual.bin", UploadId=upload, PartNumber=1, Body=data[: 5 * MiB])
    s3.upload_part_copy(
        Bucket=bucket,
        Key="manual.bin",
        UploadId=upload,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "big.bin"},
        CopySourceRange="bytes=0-1023",
    )
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    parts = s3.list_parts(Bucket=bucket, Key="manual.bin", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 5 * MiB), (2, 1024)]
    done = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
    s3.complete_multipart_upload(Bucket=bucket, Key="manual.bin", UploadId=upload, MultipartUpload={"Parts": done})
    body = s3.get_object(Bucket=bucket, Key="manual.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256(data[: 5 * MiB] + data[:1024])
    aborted = s3.create_multipart_upload(Bucket=bucket, Key="aborted.bin")["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted.bin", UploadId=aborted)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


@cell("presigned_get")
def test_presigned_get(endpoint: Endpoint, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key=PRESIGNED_KEY, Body=b"presigned get", ContentType="text/plain")
    for signer in ("s3v4", "s3"):  # SigV4 and SigV2 query-string signatures
        client = boto3_client(endpoint, signature_version=signer)
        params = {"Bucket": bucket, "Key": PRESIGNED_KEY}
        url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
        resp = requests.get(url, timeout=30)
        assert resp.status_code == 200, (signer, resp.text)
        assert resp.content == b"presigned get" and resp.headers["Content-Type"] == "text/plain"
        assert requests.get(tampered(url), timeout=30).status_code == 403


@cell("presigned_put")
def test_presigned_put(s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": PRESIGNED_KEY, "ContentType": "text/plain"}, ExpiresIn=300
    )
    assert requests.put(tampered(url), data=b"x", headers={"Content-Type": "text/plain"}, timeout=30).status_code == 403
    resp = requests.put(url, data=b"presigned put", headers={"Content-Type": "text/plain"}, timeout=30)
    assert resp.status_code == 200, resp.text
    got = s3.get_object(Bucket=bucket, Key=PRESIGNED_KEY)
    assert got["Body"].read() == b"presigned put" and got["ContentType"] == "text/plain"


@cell("sync")
def test_sync() -> None:
    not_supported("boto3 is an SDK: it has no sync command (the AWS CLI's `s3 sync` is the AWS one)")


@cell("tagging")
def test_tagging(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"tagged", Tagging="team=storage")
    assert s3.head_object(Bucket=bucket, Key="tagged")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "tier", "Value": "hot"}]
    s3.put_object_tagging(Bucket=bucket, Key="tagged", Tagging={"TagSet": tags})
    assert sorted(s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"], key=lambda t: t["Key"]) == tags
    s3.delete_object_tagging(Bucket=bucket, Key="tagged")
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == []
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "owner", "Value": "ops"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "owner", "Value": "ops"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as none:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(none) == "NoSuchTagSet"
