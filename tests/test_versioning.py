"""S3 Versioning through boto3, the AWS CLI and rclone: states, versions, delete markers, null versions,
ListObjectVersions, copies, DeleteObjects and tagging by version id."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from botocore.exceptions import ClientError
from lxml import etree

from .conftest import empty_bucket, make_client
from .signing import signed_request
from .support import ACCESS_KEY, SECRET_KEY, GatewayProcess, aws_cli, rclone_cli

MiB = 1024 * 1024


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


def headers(exc: ClientError) -> dict[str, str]:
    return dict(exc.response["ResponseMetadata"]["HTTPHeaders"])


def enable(s3, bucket: str, state: str = "Enabled") -> None:  # type: ignore[no-untyped-def]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": state})


def versions(s3, bucket: str, page_size: int = 1000) -> list[tuple[str, str, bool, bool]]:  # type: ignore[no-untyped-def]
    """(key, version id, is latest, is a delete marker) in the order ListObjectVersions gives them.

    Read from the XML itself (boto3 splits versions from markers), page by page through the markers.
    """
    endpoint = s3.meta.endpoint_url
    out: list[tuple[str, str, bool, bool]] = []
    query = f"&max-keys={page_size}"
    while True:
        root = etree.fromstring(signed_request("GET", f"{endpoint}/{bucket}?versions{query}").content)
        for entry in root:
            name = etree.QName(entry).localname
            if name in ("Version", "DeleteMarker"):
                fields = {etree.QName(c).localname: c.text for c in entry}
                out.append((fields["Key"], fields["VersionId"], fields["IsLatest"] == "true", name == "DeleteMarker"))
        if root.findtext(f"{{{NS}}}IsTruncated") != "true":
            return out
        key = root.findtext(f"{{{NS}}}NextKeyMarker") or ""
        query = f"&max-keys={page_size}&key-marker={quote(key, safe='')}"
        if (vid := root.findtext(f"{{{NS}}}NextVersionIdMarker")) is not None:
            query += f"&version-id-marker={vid}"


NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def raw_versions(gateway, bucket: str, query: str = "") -> str:  # type: ignore[no-untyped-def]
    return signed_request("GET", f"{gateway.endpoint}/{bucket}?versions{query}").text


def test_versioning_states(s3, bucket: str, gateway) -> None:  # type: ignore[no-untyped-def]
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)  # never enabled
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Disabled"})
    with pytest.raises(ClientError) as err:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    assert code(err.value) == "NotImplemented" and "MFA Delete" in err.value.response["Error"]["Message"]
    for body in (b"<VersioningConfiguration><Status>On</Status></VersioningConfiguration>", b"<Versioning/>", b"<x"):
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        r = signed_request("PUT", f"{gateway.endpoint}/{bucket}?versioning", body=body, headers={"Content-MD5": md5})
        assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text

    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    with pytest.raises(ClientError) as err:
        s3.put_bucket_versioning(Bucket="no-such-bucket-v", VersioningConfiguration={"Status": "Enabled"})
    assert code(err.value) == "NoSuchBucket"


def test_enabled_versions_and_delete_markers(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    assert len(set(ids)) == 3 and ids == sorted(ids)  # unique and time-ordered
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"v2" and got["VersionId"] == ids[2]
    for i, vid in enumerate(ids):
        assert s3.get_object(Bucket=bucket, Key="k", VersionId=vid)["Body"].read() == f"v{i}".encode()
        assert s3.head_object(Bucket=bucket, Key="k", VersionId=vid)["VersionId"] == vid
    # DELETE without a version id adds a delete marker.
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker > ids[2]
    for read in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as err:
            read(Bucket=bucket, Key="k")
        assert status(err.value) == 404
        assert headers(err.value)["x-amz-delete-marker"] == "true"
        assert headers(err.value)["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    assert status(err.value) == 405 and code(err.value) == "MethodNotAllowed"
    assert headers(err.value)["x-amz-delete-marker"] == "true" and "last-modified" in headers(err.value)
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    assert status(err.value) == 405
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # Deleting the marker brings the previous version back.
    undone = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert undone["DeleteMarker"] is True and undone["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"
    # Deleting a version is permanent; deleting the latest makes the one before it the latest.
    gone = s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[2])
    assert gone["VersionId"] == ids[2] and "DeleteMarker" not in gone
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v1"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[0])
    assert [(v[1], v[2]) for v in versions(s3, bucket)] == [(ids[1], True)]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId=ids[0])
    assert code(err.value) == "NoSuchVersion"
    # A version id that was never ours is a 400; a well-formed one that does not exist deletes nothing.
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId="not-a-version")
    assert code(err.value) == "InvalidArgument"
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=bucket, Key="k", VersionId="not-a-version")
    assert code(err.value) == "InvalidArgument"
    assert s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[0])["VersionId"] == ids[0]
    # Repeated deletes stack markers; a delete of a key that never existed still makes one.
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_object(Bucket=bucket, Key="k")
    assert s3.delete_object(Bucket=bucket, Key="never")["DeleteMarker"] is True
    listed = versions(s3, bucket)
    assert [(v[0], v[2], v[3]) for v in listed] == [
        ("k", True, True), ("k", False, True), ("k", False, False), ("never", True, True)
    ]  # fmt: skip


def test_suspended_writes_replace_only_the_null_version(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="k", Body=b"before versioning")
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled-1")["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"before versioning"
    enable(s3, bucket, "Suspended")
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"suspended-1")
    assert "VersionId" not in put  # S3 names no version made while suspended
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    s3.put_object(Bucket=bucket, Key="k", Body=b"suspended-2")
    assert [(v[1], v[2]) for v in versions(s3, bucket)] == [("null", True), (v1, False)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"suspended-2"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"enabled-1"
    # A delete while suspended: a null delete marker replacing the null version.
    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True and deleted["VersionId"] == "null"
    s3.delete_object(Bucket=bucket, Key="k")
    assert [(v[1], v[2], v[3]) for v in versions(s3, bucket)] == [("null", True, True), (v1, False, False)]
    # Enabled again: new versions, the null marker kept in its place.
    enable(s3, bucket)
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled-2")["VersionId"]
    assert [(v[1], v[3]) for v in versions(s3, bucket)] == [(v2, False), ("null", True), (v1, False)]
    assert s3.delete_object(Bucket=bucket, Key="k", VersionId="null")["VersionId"] == "null"
    assert [v[1] for v in versions(s3, bucket)] == [v2, v1]
    # Suspended with the null version among the older ones: a write replaces it there.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v2)
    enable(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-a")
    enable(s3, bucket)
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"enabled-3")["VersionId"]
    enable(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="k", Body=b"null-b")
    assert [v[1] for v in versions(s3, bucket)] == ["null", v3, v1]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null-b"


def test_never_versioned_bucket_has_null_versions(s3, bucket: str, gateway) -> None:  # type: ignore[no-untyped-def]
    put = s3.put_object(Bucket=bucket, Key="a", Body=b"1")
    assert "VersionId" not in put
    assert "x-amz-version-id" not in s3.head_object(Bucket=bucket, Key="a")["ResponseMetadata"]["HTTPHeaders"]
    s3.put_object(Bucket=bucket, Key="a", Body=b"2")
    s3.put_object(Bucket=bucket, Key="b", Body=b"3")
    assert versions(s3, bucket) == [("a", "null", True, False), ("b", "null", True, False)]
    assert s3.get_object(Bucket=bucket, Key="a", VersionId="null")["Body"].read() == b"2"
    deleted = s3.delete_object(Bucket=bucket, Key="a")
    assert "DeleteMarker" not in deleted  # no marker where versioning was never enabled
    assert s3.delete_object(Bucket=bucket, Key="b", VersionId="null")["VersionId"] == "null"
    assert versions(s3, bucket) == []
    text = raw_versions(gateway, bucket)
    assert "<ListVersionsResult" in text and "<IsTruncated>false</IsTruncated>" in text


def test_list_object_versions_paging_prefixes_and_encoding(s3, bucket: str, gateway) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    made: dict[str, list[str]] = {}
    for key in ["a/1", "a/2", "b", "c d+e%", "\u00e9t\u00e9/x"]:
        for i in range(3):
            made.setdefault(key, []).append(
                s3.put_object(Bucket=bucket, Key=key, Body=f"{key}{i}".encode())["VersionId"]
            )
    s3.delete_object(Bucket=bucket, Key="b")
    everything = versions(s3, bucket)
    assert [e[0] for e in everything] == sorted(e[0] for e in everything)  # key order
    assert [e[1] for e in everything if e[0] == "a/1"] == list(reversed(made["a/1"]))  # newest first
    assert next(e for e in everything if e[0] == "b")[2:] == (True, True)  # the marker is the latest
    assert sum(1 for e in everything if e[2]) == 5  # one latest per key
    # Every max-keys walks everything exactly once through key-marker / version-id-marker.
    for max_keys in (1, 2, 4, 7):
        assert versions(s3, bucket, max_keys) == everything
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3})
    seen = [
        (v["Key"], v["VersionId"]) for page in pages for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
    ]
    assert sorted(seen) == sorted((e[0], e[1]) for e in everything) and len(seen) == len(everything)
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert page["IsTruncated"] and page["NextKeyMarker"] == "a/1" and page["NextVersionIdMarker"] == made["a/1"][1]
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker="a/1", VersionIdMarker=made["a/1"][1], MaxKeys=1)
    assert [v["VersionId"] for v in rest["Versions"]] == [made["a/1"][0]]
    after_key = s3.list_object_versions(Bucket=bucket, KeyMarker="a/2")
    assert {v["Key"] for v in after_key["Versions"]} == {"b", "c d+e%", "\u00e9t\u00e9/x"}
    # Prefix and delimiter.
    top = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "\u00e9t\u00e9/"]
    assert {v["Key"] for v in top["Versions"]} == {"b", "c d+e%"}
    under = s3.list_object_versions(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert len(under["Versions"]) == 6 and "CommonPrefixes" not in under
    # Owner and the per-version facts.
    one = s3.list_object_versions(Bucket=bucket, Prefix="c d")["Versions"][0]
    head = s3.head_object(Bucket=bucket, Key="c d+e%", VersionId=one["VersionId"])
    assert one["ETag"] == head["ETag"] and one["Size"] == head["ContentLength"] and one["Owner"]["ID"]
    assert one["StorageClass"] == "STANDARD"
    encoded = raw_versions(gateway, bucket, "&encoding-type=url&prefix=c")
    assert "<Key>c%20d%2Be%25</Key>" in encoded and "<EncodingType>url</EncodingType>" in encoded
    with pytest.raises(ClientError) as err:
        s3.list_object_versions(Bucket=bucket, VersionIdMarker=made["b"][0])
    assert code(err.value) == "InvalidArgument"
    with pytest.raises(ClientError) as err:
        s3.list_object_versions(Bucket=bucket, KeyMarker="b", VersionIdMarker="bogus")
    assert code(err.value) == "InvalidArgument"
    zero = s3.list_object_versions(Bucket=bucket, MaxKeys=0)
    assert zero["MaxKeys"] == 0 and "Versions" not in zero


def test_copies_and_part_copies_from_a_version(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    old = s3.put_object(Bucket=bucket, Key="src", Body=b"old bytes", Metadata={"m": "1"})["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"new bytes")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert copied["CopySourceVersionId"] == old and copied["VersionId"]
    dst = s3.get_object(Bucket=bucket, Key="dst")
    assert dst["Body"].read() == b"old bytes" and dst["Metadata"] == {"m": "1"}
    # A copy of the same key from an older version restores it as the latest.
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src", "VersionId": old})
    assert s3.get_object(Bucket=bucket, Key="src")["Body"].read() == b"old bytes"
    marker = s3.delete_object(Bucket=bucket, Key="src")["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src"})
    assert code(err.value) == "NoSuchKey"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src", "VersionId": marker})
    assert code(err.value) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.copy_object(Bucket=bucket, Key="x", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "f" * 24})
    assert code(err.value) == "NoSuchVersion"
    # UploadPartCopy from a version.
    big_old = os.urandom(5 * MiB)
    big_vid = s3.put_object(Bucket=bucket, Key="big", Body=big_old)["VersionId"]
    s3.put_object(Bucket=bucket, Key="big", Body=b"replaced")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="joined")["UploadId"]
    part = s3.upload_part_copy(
        Bucket=bucket, Key="joined", UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "big", "VersionId": big_vid},
    )  # fmt: skip
    assert part["CopySourceVersionId"] == big_vid
    tail = s3.upload_part(Bucket=bucket, Key="joined", UploadId=upload_id, PartNumber=2, Body=b"tail")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="joined", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": tail["ETag"]}]},
    )  # fmt: skip
    assert done["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="joined")["Body"].read() == big_old + b"tail"
    # The partNumber read of a multipart version that is no longer the latest.
    s3.put_object(Bucket=bucket, Key="joined", Body=b"later")
    second = s3.get_object(Bucket=bucket, Key="joined", VersionId=done["VersionId"], PartNumber=2)
    assert second["Body"].read() == b"tail" and second["PartsCount"] == 2


def test_delete_objects_with_version_ids(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="a", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="a", Body=b"2")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key="m")["VersionId"]
    answer = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a", "VersionId": v1}, {"Key": "m", "VersionId": marker}, {"Key": "new"},
                            {"Key": "a", "VersionId": "bogus"}]},
    )  # fmt: skip
    deleted = {(d["Key"], d.get("VersionId")): d for d in answer["Deleted"]}
    assert "DeleteMarker" not in deleted[("a", v1)]
    assert deleted[("m", marker)]["DeleteMarker"] is True and deleted[("m", marker)]["DeleteMarkerVersionId"] == marker
    assert deleted[("new", None)]["DeleteMarker"] is True and deleted[("new", None)]["DeleteMarkerVersionId"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("a", "InvalidArgument")]
    assert [(v[0], v[1]) for v in versions(s3, bucket)] == [
        ("a", v2),
        ("new", deleted[("new", None)]["DeleteMarkerVersionId"]),
    ]
    # Deleting the same versions again succeeds.
    again = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a", "VersionId": v1}]})
    assert again["Deleted"][0]["VersionId"] == v1 and not again.get("Errors")


def test_tagging_by_version_id(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="t", Body=b"1", Tagging="gen=one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="t", Body=b"2")["VersionId"]
    s3.put_object_tagging(Bucket=bucket, Key="t", VersionId=v1, Tagging={"TagSet": [{"Key": "gen", "Value": "old"}]})
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "gen", "Value": "new"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t", VersionId=v1)["TagSet"] == [{"Key": "gen", "Value": "old"}]
    latest = s3.get_object_tagging(Bucket=bucket, Key="t")
    assert latest["TagSet"] == [{"Key": "gen", "Value": "new"}] and latest["VersionId"] == v2
    s3.delete_object_tagging(Bucket=bucket, Key="t", VersionId=v1)
    assert s3.get_object_tagging(Bucket=bucket, Key="t", VersionId=v1)["TagSet"] == []
    assert s3.get_object(Bucket=bucket, Key="t", VersionId=v1)["Body"].read() == b"1"  # bytes untouched
    with pytest.raises(ClientError) as err:
        s3.get_object_tagging(Bucket=bucket, Key="t", VersionId="0" * 24)
    assert code(err.value) == "NoSuchVersion"


def test_concurrent_writes_each_make_a_version(s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    bodies = [os.urandom(100_000 + i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda b: s3.put_object(Bucket=bucket, Key="c", Body=b)["VersionId"], bodies))
    listed = versions(s3, bucket)
    assert sorted(v[1] for v in listed) == sorted(ids) and len(set(ids)) == 8
    assert [v[2] for v in listed] == [True] + [False] * 7
    for vid, body in zip(ids, bodies, strict=True):
        assert (
            hashlib.md5(s3.get_object(Bucket=bucket, Key="c", VersionId=vid)["Body"].read()).digest()
            == hashlib.md5(body).digest()
        )
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda vid: s3.delete_object(Bucket=bucket, Key="c", VersionId=vid), ids))
    assert versions(s3, bucket) == []


def test_bucket_with_versions_or_markers_is_not_empty(s3) -> None:  # type: ignore[no-untyped-def]
    name = f"v-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    enable(s3, name)
    vid = s3.put_object(Bucket=name, Key="k", Body=b"x")["VersionId"]
    marker = s3.delete_object(Bucket=name, Key="k")["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert code(err.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k", VersionId=vid)  # only the marker left
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert code(err.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k", VersionId=marker)
    s3.delete_bucket(Bucket=name)
    # A bucket made again under the same name starts with versioning never enabled.
    s3.create_bucket(Bucket=name)
    assert "Status" not in s3.get_bucket_versioning(Bucket=name)
    s3.delete_bucket(Bucket=name)


def test_versioning_and_versions_seen_by_another_gateway(s3, bucket: str, nats_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from .support import write_credentials

    other = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url).start()
    try:
        s3b = make_client(other.endpoint)
        s3b.list_object_versions(Bucket=bucket)  # the other gateway has its indexes open already
        enable(s3, bucket)
        deadline = time.monotonic() + 1.0
        while s3b.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
            assert time.monotonic() < deadline, "the other gateway did not see versioning enabled within 1 s"
            time.sleep(0.02)
        vid = s3b.put_object(Bucket=bucket, Key="k", Body=b"via b")["VersionId"]
        assert vid
        for i in range(5):
            made = s3.put_object(Bucket=bucket, Key="k", Body=f"via a {i}".encode())["VersionId"]
            listed = s3b.list_object_versions(Bucket=bucket)["Versions"]
            assert listed[0]["VersionId"] == made and listed[0]["IsLatest"]  # read-your-writes across gateways
        marker = s3b.delete_object(Bucket=bucket, Key="k")["VersionId"]
        assert s3.list_object_versions(Bucket=bucket)["DeleteMarkers"][0]["VersionId"] == marker
    finally:
        other.stop()


def test_aws_cli_boto3_and_rclone_versions(s3, bucket: str, gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    enable(s3, bucket)
    for i in range(3):
        s3.put_object(Bucket=bucket, Key="dir/file.txt", Body=f"generation {i}".encode())
    s3.delete_object(Bucket=bucket, Key="dir/gone.txt")
    aws = aws_cli(gateway.endpoint, tmp_path)
    listed = json.loads(aws("s3api", "list-object-versions", "--bucket", bucket).stdout)
    assert len(listed["Versions"]) == 3 and len(listed["DeleteMarkers"]) == 1
    assert [v["IsLatest"] for v in listed["Versions"]] == [True, False, False]
    rclone = rclone_cli(gateway.endpoint, tmp_path)
    out = rclone("lsf", "--s3-versions", "-R", f"gw:{bucket}/dir").stdout.split()
    # rclone shows older versions with their time in the name, beside the current file.
    assert "file.txt" in out and len([n for n in out if n.startswith("file-v")]) == 2, out
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )
    resource = session.resource("s3", endpoint_url=gateway.endpoint, config=s3.meta.config)
    assert len(list(resource.Bucket(bucket).object_versions.all())) == 4
    resource.Bucket(bucket).object_versions.delete()  # the SDK's delete-every-version helper
    assert versions(s3, bucket) == []
    empty_bucket(s3, bucket)
