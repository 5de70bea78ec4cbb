"""Object operations through boto3 against a real gateway process and nats-server."""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import pytest
import requests
from botocore.exceptions import ClientError

from .signing import raw_exchange, signed_request

ODD_KEYS = [
    "with space.txt",
    "ünïcödé/ключ/鍵.bin",
    "plus+sign",
    "percent%20literal%",
    "double//slash",
    "folder/",
    "dots/../up",
    "tilde~and=equals&amp",
    "a" * 1024,
]


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.mark.parametrize("size", [0, 1, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 17])
def test_put_get_roundtrip_sizes(s3, bucket: str, size: int) -> None:
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data)
    md5 = hashlib.md5(data).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{md5}"'
    assert got["ContentLength"] == size
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert head["ETag"] == f'"{md5}"'
    assert head["ContentLength"] == size
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["ETag"], o["Size"]) for o in listed] == [("obj", f'"{md5}"', size)]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys(s3, bucket: str, key: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [key]
    # With EncodingType given by the caller, botocore leaves the keys encoded.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, EncodingType="url")["Contents"]]
    assert [unquote_plus(k) for k in keys] == [key]
    assert all(" " not in k for k in keys)
    s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_key_too_long(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(err.value) == "KeyTooLongError"
    assert status(err.value) == 400


def test_content_headers_and_metadata(s3, bucket: str) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    s3.put_object(
        Bucket=bucket,
        Key="doc",
        Body=b"hello",
        ContentType="text/markdown; charset=utf-8",
        ContentDisposition='attachment; filename="x.md"',
        ContentLanguage="de-CH",
        CacheControl="max-age=60",
        Expires=expires,
        Metadata={"color": "blue", "Mixed-Case": "Value with spaces"},
    )
    for resp in (s3.get_object(Bucket=bucket, Key="doc"), s3.head_object(Bucket=bucket, Key="doc")):
        assert resp["ContentType"] == "text/markdown; charset=utf-8"
        assert resp["ContentDisposition"] == 'attachment; filename="x.md"'
        assert resp["ContentLanguage"] == "de-CH"
        assert resp["CacheControl"] == "max-age=60"
        assert resp["Expires"] == expires
        assert resp["Metadata"] == {"color": "blue", "mixed-case": "Value with spaces"}
        last_modified = resp["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
        assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", last_modified)


def test_default_content_type(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="plain")["ContentType"] == "binary/octet-stream"


def test_gzip_body_stored_as_sent(s3, bucket: str, gateway) -> None:
    raw = gzip.compress(b"compress me " * 1000)
    s3.put_object(Bucket=bucket, Key="z.gz", Body=raw, ContentEncoding="gzip", ContentType="text/plain")
    resp = requests.get(
        f"{gateway.endpoint}/{bucket}/z.gz", headers={"Accept-Encoding": "identity"}, stream=True, timeout=10
    )
    assert resp.status_code == 403  # unsigned
    got = s3.get_object(Bucket=bucket, Key="z.gz")
    assert got["ContentEncoding"] == "gzip"
    assert got["Body"].read() == raw
    assert got["ContentLength"] == len(raw)


def test_ranges(s3, bucket: str) -> None:
    data = os.urandom(1_000_003)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    cases = {
        "bytes=0-0": (0, 0),
        "bytes=10-19": (10, 19),
        "bytes=262140-262150": (262140, 262150),
        "bytes=999990-": (999990, 1_000_002),
        "bytes=-5": (len(data) - 5, len(data) - 1),
        "bytes=0-99999999": (0, len(data) - 1),
        "bytes=-99999999": (0, len(data) - 1),
    }
    for header, (start, end) in cases.items():
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert got["ContentRange"] == f"bytes {start}-{end}/{len(data)}", header
        assert got["Body"].read() == data[start : end + 1], header
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(data)}-")
    assert status(err.value) == 416
    assert error_code(err.value) == "InvalidRange"
    assert err.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == f"bytes */{len(data)}"
    whole = s3.get_object(Bucket=bucket, Key="r", Range="bytes=0-1,5-6")
    assert whole["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert whole["Body"].read() == data


def test_response_overrides(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
        ResponseContentLanguage="fr",
        ResponseContentEncoding="identity",
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "fr"
    assert got["ContentEncoding"] == "identity"


def test_conditional_get_and_head(s3, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    past = modified - timedelta(days=1)
    future = modified + timedelta(days=1)
    for op in (s3.get_object, s3.head_object):
        assert op(Bucket=bucket, Key="c", IfMatch=etag)["ETag"] == etag
        for kwargs, code in [
            ({"IfMatch": '"0000"'}, 412),
            ({"IfNoneMatch": etag}, 304),
            ({"IfModifiedSince": future}, 304),
            ({"IfUnmodifiedSince": past}, 412),
        ]:
            with pytest.raises(ClientError) as err:
                op(Bucket=bucket, Key="c", **kwargs)
            assert status(err.value) == code, kwargs
        assert op(Bucket=bucket, Key="c", IfModifiedSince=past)["ETag"] == etag
        assert op(Bucket=bucket, Key="c", IfNoneMatch='"other"')["ETag"] == etag
        # If-Match that holds wins over a failing If-Unmodified-Since (S3's rule).
        assert op(Bucket=bucket, Key="c", IfMatch=etag, IfUnmodifiedSince=past)["ETag"] == etag


def test_conditional_put(s3, bucket: str) -> None:
    first = s3.put_object(Bucket=bucket, Key="p", Body=b"one", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="p", Body=b"two", IfNoneMatch="*")
    assert status(err.value) == 412
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="p", Body=b"two", IfMatch='"ffffffffffffffffffffffffffffffff"')
    assert status(err.value) == 412
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"one"
    s3.put_object(Bucket=bucket, Key="p", Body=b"three", IfMatch=first)
    assert s3.get_object(Bucket=bucket, Key="p")["Body"].read() == b"three"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch=first)
    assert status(err.value) == 404


def test_delete_missing_key_is_204(s3, bucket: str) -> None:
    resp = s3.delete_object(Bucket=bucket, Key="never-was")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_get_missing(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="nope")
    assert error_code(err.value) == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="nope")
    assert status(err.value) == 404
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="no-such-bucket-xyz", Key="nope")
    assert error_code(err.value) == "NoSuchBucket"


def test_overwrite_replaces(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"old" * 100000)
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"


def test_copy_object(s3, bucket: str) -> None:
    data = os.urandom(700_000)
    src = "src dir/ü+key"
    s3.put_object(
        Bucket=bucket, Key=src, Body=data, ContentType="image/png", Metadata={"a": "1"}, ChecksumAlgorithm="CRC32C"
    )
    etag = s3.head_object(Bucket=bucket, Key=src)["ETag"]
    res = s3.copy_object(Bucket=bucket, Key="copy1", CopySource={"Bucket": bucket, "Key": src})
    assert res["CopyObjectResult"]["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="copy1", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"a": "1"}
    assert got["ChecksumCRC32C"] == s3.head_object(Bucket=bucket, Key=src, ChecksumMode="ENABLED")["ChecksumCRC32C"]
    s3.copy_object(
        Bucket=bucket,
        Key="copy2",
        CopySource=f"{bucket}/{src}",
        MetadataDirective="REPLACE",
        ContentType="text/plain",
        Metadata={"b": "2"},
    )
    head = s3.head_object(Bucket=bucket, Key="copy2")
    assert head["ContentType"] == "text/plain"
    assert head["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as err:
        s3.copy_object(
            Bucket=bucket, Key="copy3", CopySource={"Bucket": bucket, "Key": src}, CopySourceIfMatch='"nope"'
        )
    assert status(err.value) == 412
    with pytest.raises(ClientError) as err:
        s3.copy_object(
            Bucket=bucket, Key="copy3", CopySource={"Bucket": bucket, "Key": src}, CopySourceIfNoneMatch=etag
        )
    assert status(err.value) == 412
    s3.copy_object(
        Bucket=bucket,
        Key="copy3",
        CopySource={"Bucket": bucket, "Key": src},
        CopySourceIfMatch=etag,
        CopySourceIfModifiedSince=datetime(2000, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key=src, CopySource={"Bucket": bucket, "Key": src})
    assert error_code(err.value) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "missing"})
    assert error_code(err.value) == "NoSuchKey"


def test_delete_objects(s3, bucket: str) -> None:
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    res = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": f"d/{i}"} for i in range(3)] + [{"Key": "missing"}]}
    )
    assert sorted(d["Key"] for d in res["Deleted"]) == ["d/0", "d/1", "d/2", "missing"]
    res = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d/3"}, {"Key": "k" * 1100}], "Quiet": True})
    assert "Deleted" not in res
    assert [(e["Key"], e["Code"]) for e in res["Errors"]] == [("k" * 1100, "KeyTooLongError")]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d/4"]
    with pytest.raises(ClientError) as err:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert error_code(err.value) == "MalformedXML"


def test_delete_objects_malformed_xml(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}?delete"
    for body in (b"<Delete><Object><Key>a</Key></Object>", b"not xml", b"<Other/>", b"<Delete></Delete>"):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        resp = signed_request("POST", url, body=body, headers={"Content-MD5": md5})
        assert resp.status_code == 400, body
        assert "<Code>MalformedXML</Code>" in resp.text


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksums_stored_and_returned(s3, bucket: str, algorithm: str) -> None:
    data = os.urandom(300_000)
    put = s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == value
    assert got["Body"].read() == data
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value
    assert f"Checksum{algorithm}" not in s3.head_object(Bucket=bucket, Key="ck")


@pytest.mark.parametrize(
    "header,good",
    [
        ("x-amz-checksum-crc32", "crc32"),
        ("x-amz-checksum-sha256", "sha256"),
    ],
)
def test_wrong_checksum_is_bad_digest_and_stores_nothing(gateway, bucket: str, header: str, good: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/guarded"
    body = b"original"
    ok = signed_request("PUT", url, body=body)
    assert ok.status_code == 200
    wrong = base64.b64encode(b"\0" * (4 if good == "crc32" else 32)).decode()
    resp = signed_request("PUT", url, body=b"replacement", headers={header: wrong})
    assert resp.status_code == 400
    assert "<Code>BadDigest</Code>" in resp.text
    assert signed_request("GET", url).content == body


def test_content_md5(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/md5"
    body = b"md5 checked body"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    assert signed_request("PUT", url, body=body, headers={"Content-MD5": good}).status_code == 200
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    resp = signed_request("PUT", url, body=b"changed", headers={"Content-MD5": bad})
    assert resp.status_code == 400 and "<Code>BadDigest</Code>" in resp.text
    resp = signed_request("PUT", url, body=b"changed", headers={"Content-MD5": "not-base64!"})
    assert resp.status_code == 400 and "<Code>InvalidDigest</Code>" in resp.text
    assert signed_request("GET", url).content == body


def test_content_sha256_mismatch(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/sha"
    assert signed_request("PUT", url, body=b"first").status_code == 200
    resp = signed_request("PUT", url, body=b"claimed", send_body=b"actual!")
    assert resp.status_code == 400
    assert "<Code>XAmzContentSHA256Mismatch</Code>" in resp.text
    assert signed_request("GET", url).content == b"first"


def test_object_tagging(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="project=blue&owner=ann%20lee")
    tags = s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("owner", "ann lee"), ("project", "blue")]
    assert s3.head_object(Bucket=bucket, Key="t")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    etag = s3.head_object(Bucket=bucket, Key="t")["ETag"]
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "k", "Value": "v"}]
    assert s3.get_object(Bucket=bucket, Key="t")["Body"].read() == b"x"
    assert s3.head_object(Bucket=bucket, Key="t")["ETag"] == etag
    s3.copy_object(Bucket=bucket, Key="t2", CopySource={"Bucket": bucket, "Key": "t"})
    assert s3.get_object_tagging(Bucket=bucket, Key="t2")["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.copy_object(
        Bucket=bucket, Key="t3", CopySource={"Bucket": bucket, "Key": "t"}, TaggingDirective="REPLACE", Tagging="a=1"
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="t3")["TagSet"] == [{"Key": "a", "Value": "1"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []
    with pytest.raises(ClientError) as err:
        s3.put_object_tagging(
            Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
        )
    assert status(err.value) == 400
    with pytest.raises(ClientError) as err:
        s3.get_object_tagging(Bucket=bucket, Key="missing")
    assert error_code(err.value) == "NoSuchKey"


def test_conditional_writes_on_put_and_complete(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    from botocore.exceptions import ClientError

    def status(call) -> int:  # type: ignore[no-untyped-def]
        try:
            call()
        except ClientError as exc:
            return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
        return 200

    first = s3.put_object(Bucket=bucket, Key="c", Body=b"one")["ETag"]
    assert status(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"x", IfNoneMatch="*")) == 412
    put = s3.meta.events.register
    # If-None-Match with the current ETag: 412; with another ETag the write goes ahead.
    for etag, want in ((first, 412), ('"00000000000000000000000000000000"', 200)):

        def with_header(params, etag=etag, **_):  # type: ignore[no-untyped-def]
            params["headers"]["If-None-Match"] = etag

        put("before-call.s3.PutObject", with_header, unique_id="inm")
        try:
            assert status(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"two")) == want
        finally:
            s3.meta.events.unregister("before-call.s3.PutObject", unique_id="inm")
    current = s3.head_object(Bucket=bucket, Key="c")["ETag"]
    assert status(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"three", IfMatch=first)) == 412
    assert status(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"three", IfMatch=current)) == 200
    assert status(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"four", IfMatch="*")) == 200
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"x", IfMatch="*")
    assert err.value.response["Error"]["Code"] == "NoSuchKey"
    # CompleteMultipartUpload: refused while the key exists, and the upload stays usable.
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="c")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="c", UploadId=upload_id, PartNumber=1, Body=b"part")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    refused = lambda: s3.complete_multipart_upload(  # noqa: E731
        Bucket=bucket, Key="c", UploadId=upload_id, MultipartUpload=parts, IfNoneMatch="*"
    )
    assert status(refused) == 412
    s3.delete_object(Bucket=bucket, Key="c")
    assert status(refused) == 200
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"part"


def test_tag_rules(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    from botocore.exceptions import ClientError

    s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="foo=bar&bar")
    assert sorted((t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]) == [
        ("bar", ""), ("foo", "bar")
    ]  # fmt: skip
    bad = [
        [{"Key": f"k{i}", "Value": "v"} for i in range(11)],
        [{"Key": "k" * 129, "Value": "v"}],
        [{"Key": "k", "Value": "v" * 257}],
        [{"Key": "k", "Value": "a"}, {"Key": "k", "Value": "b"}],
    ]
    for tags in bad:
        with pytest.raises(ClientError) as err:
            s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": tags})
        assert err.value.response["Error"]["Code"] == "InvalidTag"
    assert len(s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"]) == 2  # the old set is kept


def test_metadata_bytes_come_back_as_sent(gateway, bucket: str) -> None:
    """S3 does not re-encode user metadata: UTF-8, Latin-1 or any other bytes come back unchanged, on HEAD
    and on GET (and a content header with such bytes too)."""
    values = ["café ☃".encode(), b"Hello World\xe9", b"\xff\xfe not utf-8 \x80"]
    for index, value in enumerate(values):
        key = f"/{bucket}/meta-{index}"
        headers = {"x-amz-meta-v": value, "content-disposition": b'attachment; filename="r\xe9sum\xe9.pdf"'}
        status, _, body = raw_exchange(gateway.endpoint, "PUT", key, headers, b"data")
        assert status == 200, body
        for method in ("HEAD", "GET"):
            status, got, body = raw_exchange(gateway.endpoint, method, key)
            assert status == 200
            assert got[b"x-amz-meta-v"] == value.strip(), method
            assert got[b"content-disposition"] == headers["content-disposition"]
        status, got, _ = raw_exchange(gateway.endpoint, "GET", key)
        assert got[b"x-amz-meta-v"] == value.strip()
    status, _, body = raw_exchange(gateway.endpoint, "PUT", f"/{bucket}/t", {"x-amz-tagging": b"a=\xe9"}, b"x")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    source = f"/{bucket}/".encode() + b"\xe9\xff"
    status, _, body = raw_exchange(gateway.endpoint, "PUT", f"/{bucket}/c", {"x-amz-copy-source": source})
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body


def test_content_encoding_is_kept_without_aws_chunked(gateway, bucket: str) -> None:
    cases = {"aws-chunked, gzip": "gzip", "gzip, aws-chunked": "gzip", "deflate, gzip": "deflate, gzip",
             "gzip": "gzip", "AWS-CHUNKED": None, "aws-chunked": None}  # fmt: skip
    for index, (sent, stored) in enumerate(cases.items()):
        url = f"{gateway.endpoint}/{bucket}/enc-{index}"
        assert signed_request("PUT", url, body=b"x", headers={"Content-Encoding": sent}).status_code == 200
        assert signed_request("HEAD", url).headers.get("Content-Encoding") == stored, sent
