"""Bucket operations through boto3: names, creation dates, emptiness, location, listing basics."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from .signing import signed_request


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_bucket_lifecycle_with_dots(s3) -> None:
    name = f"dots.{uuid.uuid4().hex[:8]}.example"
    before = datetime.now(UTC) - timedelta(seconds=5)
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    found = [b for b in s3.list_buckets()["Buckets"] if b["Name"] == name]
    assert len(found) == 1
    assert before <= found[0]["CreationDate"] <= datetime.now(UTC) + timedelta(seconds=5)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    # us-east-1's legacy rule: creating a bucket you own again is 200 and keeps what it holds.
    assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"x"
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket=name)
    assert code(err.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket=name)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_creation_date_is_stable(s3, bucket: str) -> None:
    first = next(b for b in s3.list_buckets()["Buckets"] if b["Name"] == bucket)["CreationDate"]
    second = next(b for b in s3.list_buckets()["Buckets"] if b["Name"] == bucket)["CreationDate"]
    assert first == second


@pytest.mark.parametrize(
    "name", ["ab", "UPPER", "under_score", "-dash", "dot..dot", "192.168.1.1", "x" * 64, "end-", "xn--punycode"]
)
def test_invalid_bucket_names(gateway, name: str) -> None:
    resp = signed_request("PUT", f"{gateway.endpoint}/{name}")
    assert resp.status_code == 400
    assert "<Code>InvalidBucketName</Code>" in resp.text


def test_bucket_location(s3, bucket: str) -> None:
    assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") in (None, "")


def test_create_bucket_with_configuration(s3) -> None:
    name = f"cfg-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as err:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert code(err.value) == "IllegalLocationConstraintException"
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:  # us-east-1 is named by no constraint at all
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    assert code(err.value) == "InvalidLocationConstraint"
    s3.create_bucket(Bucket=name)
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    s3.delete_bucket(Bucket=name)


def test_create_bucket_malformed_configuration(gateway) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    resp = signed_request("PUT", f"{gateway.endpoint}/{name}", body=b"<CreateBucketConfiguration>")
    assert resp.status_code == 400
    assert "<Code>MalformedXML</Code>" in resp.text
    assert signed_request("HEAD", f"{gateway.endpoint}/{name}").status_code == 404


def test_delete_missing_bucket(s3) -> None:
    with pytest.raises(ClientError) as err:
        s3.delete_bucket(Bucket="does-not-exist-0001")
    assert code(err.value) == "NoSuchBucket"


def test_list_objects_basic(s3, bucket: str) -> None:
    keys = ["b", "a/1", "a/2", "a/sub/3", "c d", "ä", "Z"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/"]
    assert [o["Key"] for o in resp["Contents"]] == ["Z", "b", "c d", "ä"]
    resp = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/sub/"]
    resp = s3.list_objects(Bucket=bucket, Prefix="a/")
    assert [o["Key"] for o in resp["Contents"]] == ["a/1", "a/2", "a/sub/3"]
    assert resp["Contents"][0]["LastModified"].tzinfo is not None
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == sorted(keys, key=lambda k: k.encode())
    pages = s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == sorted(keys, key=lambda k: k.encode())


def test_list_objects_xml_dates(gateway, bucket: str, s3) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    text = signed_request("GET", f"{gateway.endpoint}/{bucket}?list-type=2").text
    import re

    assert re.search(r"<LastModified>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z</LastModified>", text)
    text = signed_request("GET", f"{gateway.endpoint}/").text
    assert re.search(r"<CreationDate>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z</CreationDate>", text)


def test_read_only_acl_answers(s3, bucket: str, gateway) -> None:
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"]["DisplayName"] and acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_acl(Bucket=bucket, Key="k")["Grants"][0]["Permission"] == "FULL_CONTROL"
    with pytest.raises(ClientError) as err:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert code(err.value) == "NoSuchKey"
    md5 = base64.b64encode(hashlib.md5(b"<AccessControlPolicy/>").digest()).decode()
    r = signed_request(
        "PUT", f"{gateway.endpoint}/{bucket}/k?acl", body=b"<AccessControlPolicy/>", headers={"Content-MD5": md5}
    )
    assert r.status_code == 400 and "<Code>MalformedACLError</Code>" in r.text


def test_acl_grantee_has_xsi_type(s3, bucket: str, gateway) -> None:
    text = signed_request("GET", f"{gateway.endpoint}/{bucket}?acl").text
    assert 'xsi:type="CanonicalUser"' in text
    assert s3.get_bucket_acl(Bucket=bucket)["Grants"][0]["Grantee"]["Type"] == "CanonicalUser"
