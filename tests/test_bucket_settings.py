"""Bucket-level answers SDKs parse: ListBuckets paging and filters, bucket tagging, canned ACLs, regions."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from .conftest import empty_bucket, make_client
from .signing import signed_request
from .support import GatewayProcess


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_list_buckets_pages_and_filters(s3, gateway) -> None:
    prefix = f"lb-{uuid.uuid4().hex[:6]}-"
    names = [f"{prefix}{i:02d}" for i in range(7)]
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        # The service's own paginator walks max-buckets pages by continuation token.
        pages = list(s3.get_paginator("list_buckets").paginate(Prefix=prefix, PaginationConfig={"PageSize": 3}))
        assert [[b["Name"] for b in p["Buckets"]] for p in pages] == [names[0:3], names[3:6], names[6:]]
        assert all("ContinuationToken" in p for p in pages[:-1]) and "ContinuationToken" not in pages[-1]
        assert pages[0]["Prefix"] == prefix
        assert {b["BucketRegion"] for p in pages for b in p["Buckets"]} == {"us-east-1"}
        whole = s3.list_buckets(Prefix=prefix)
        assert [b["Name"] for b in whole["Buckets"]] == names and "ContinuationToken" not in whole
        exact = s3.list_buckets(Prefix=prefix, MaxBuckets=7)
        assert len(exact["Buckets"]) == 7 and "ContinuationToken" not in exact
        assert s3.list_buckets(Prefix=prefix, BucketRegion="us-east-1")["Buckets"]
        assert s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")["Buckets"] == []
        assert s3.list_buckets(Prefix=prefix + "zz")["Buckets"] == []
        for bad in ("0", "10001", "-1", "x", "%C2%B2"):
            r = signed_request("GET", f"{gateway.endpoint}/?max-buckets={bad}")
            assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, bad
        r = signed_request("GET", f"{gateway.endpoint}/?continuation-token=%21%21")
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)


def test_bucket_tagging(s3, bucket: str, gateway) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(err.value) == "NoSuchTagSet"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "empty", "Value": ""}]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert sorted(s3.get_bucket_tagging(Bucket=bucket)["TagSet"], key=lambda t: t["Key"]) == sorted(
        tags, key=lambda t: t["Key"]
    )
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    for bad in (
        too_many,
        [{"Key": "k" * 129, "Value": "v"}],
        [{"Key": "k", "Value": "v" * 257}],
        [{"Key": "dup", "Value": "1"}, {"Key": "dup", "Value": "2"}],
        [{"Key": "aws:reserved", "Value": "v"}],
    ):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": bad})
        assert code(err.value) == "InvalidTag"
    # A refused tag set leaves the old one; fifty tags are a bucket's limit.
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 2
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": too_many[:50]})
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket=bucket)
    assert code(err.value) == "NoSuchTagSet"
    with pytest.raises(ClientError) as err:
        s3.get_bucket_tagging(Bucket="no-such-bucket-tags")
    assert code(err.value) == "NoSuchBucket"
    # Bucket tags are not object tags: objects in the bucket have none.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []


def test_small_bodies_are_checked_against_the_signed_payload_hash(gateway, bucket: str) -> None:
    """Every XML body the gateway parses is verified against x-amz-content-sha256 before it acts."""
    wrong = "0" * 64
    tagging = b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"
    delete = b"<Delete><Object><Key>k</Key></Object></Delete>"
    signed_request("PUT", f"{gateway.endpoint}/{bucket}/k", body=b"x")
    cases = [
        ("PUT", f"{gateway.endpoint}/{bucket}?tagging", tagging),
        ("PUT", f"{gateway.endpoint}/{bucket}/k?tagging", tagging),
        ("POST", f"{gateway.endpoint}/{bucket}?delete", delete),
        (
            "PUT",
            f"{gateway.endpoint}/{bucket}?versioning",
            b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
        ),
        ("PUT", f"{gateway.endpoint}/nb-{uuid.uuid4().hex[:8]}", b"<CreateBucketConfiguration/>"),
        ("POST", f"{gateway.endpoint}/{bucket}/k?uploadId=x", b"<CompleteMultipartUpload/>"),
        ("PUT", f"{gateway.endpoint}/{bucket}?acl", b"<AccessControlPolicy/>"),
    ]
    for method, url, body in cases:
        headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        r = signed_request(method, url, body=body, payload_hash=wrong, headers=headers)
        assert r.status_code == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in r.text, (url, r.text)
    assert signed_request("GET", f"{gateway.endpoint}/{bucket}?tagging").status_code == 404
    assert signed_request("GET", f"{gateway.endpoint}/{bucket}/k?tagging").text.count("<Tag>") == 0
    assert signed_request("HEAD", f"{gateway.endpoint}/{bucket}/k").status_code == 200
    assert "<Status>" not in signed_request("GET", f"{gateway.endpoint}/{bucket}?versioning").text
    # The bodies S3 insists on an integrity header for are refused without one.
    for method, url, body in (cases[0], cases[2]):
        r = signed_request(method, url, body=body)
        assert r.status_code == 400 and "Missing required header for this request: Content-MD5" in r.text, url
    # A checksum header on a small body is checked too, and a mismatch is BadDigest.
    r = signed_request("PUT", f"{gateway.endpoint}/{bucket}?tagging", body=tagging,
                       headers={"x-amz-checksum-crc32": "AAAAAA=="})  # fmt: skip
    assert r.status_code == 400 and "<Code>BadDigest</Code>" in r.text


def test_canned_acls_are_kept_and_answered(s3, bucket: str, gateway) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"]
    assert {g["Permission"] for g in grants} == {"FULL_CONTROL", "READ"}
    assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") for g in grants)
    assert "x-amz-acl" not in s3.head_object(Bucket=bucket, Key="pub")["ResponseMetadata"]["HTTPHeaders"]
    s3.put_object_acl(Bucket=bucket, Key="pub", ACL="private")
    assert [g["Permission"] for g in s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"]] == ["FULL_CONTROL"]
    # A copy gets the ACL its own request names, not the source's.
    s3.put_object_acl(Bucket=bucket, Key="pub", ACL="authenticated-read")
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "pub"})
    assert len(s3.get_object_acl(Bucket=bucket, Key="copy")["Grants"]) == 1
    # The private ACL as a body (what `aws s3api put-object-acl --access-control-policy` sends).
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    policy = {
        "Owner": owner,
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"}],
    }
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy=policy)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert len(s3.get_bucket_acl(Bucket=bucket)["Grants"]) == 2
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    assert len(s3.get_bucket_acl(Bucket=bucket)["Grants"]) == 1
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ACL="world-writable")  # type: ignore[arg-type]
    assert code(err.value) == "InvalidArgument"
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket=bucket, Key="bad")
    s3.put_bucket_acl(Bucket=bucket, GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"')
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert [(g["Grantee"]["URI"], g["Permission"]) for g in grants] == [
        ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")
    ]
    s3.put_object(
        Bucket=bucket, Key="granted", Body=b"x", GrantRead='id="someone"', GrantFullControl=f'id="{owner["ID"]}"'
    )
    grants = s3.get_object_acl(Bucket=bucket, Key="granted")["Grants"]
    assert sorted((g["Grantee"]["ID"], g["Permission"]) for g in grants) == [
        (owner["ID"], "FULL_CONTROL"),
        ("someone", "READ"),
    ]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", ACL="private", GrantRead='id="someone"')
    assert code(err.value) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"x", GrantRead='emailAddress="a@example.com"')
    assert code(err.value) == "UnresolvableGrantByEmailAddress"
    name = f"acl-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name, ACL="public-read")
    try:
        assert len(s3.get_bucket_acl(Bucket=name)["Grants"]) == 2
    finally:
        s3.delete_bucket(Bucket=name)


def test_options_that_is_not_a_preflight_is_400(gateway, bucket: str) -> None:
    import requests

    r = requests.options(f"{gateway.endpoint}/{bucket}/k", timeout=10)
    assert r.status_code == 400 and "<Code>BadRequest</Code>" in r.text and r.headers["x-amz-request-id"]
    r = requests.options(f"{gateway.endpoint}/{bucket}/k", headers={"Origin": "https://a.example"}, timeout=10)
    assert r.status_code == 400
    r = requests.options(
        f"{gateway.endpoint}/{bucket}/k",
        headers={"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text


@pytest.fixture(scope="module")
def eu_gateway(nats_url: str, credentials_file: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(credentials_file, nats_url, extra=["--region", "eu-west-1"]).start()
    yield gw
    gw.stop()


def test_a_gateway_for_another_region(eu_gateway: GatewayProcess) -> None:
    eu = make_client(eu_gateway.endpoint, region="eu-west-1")
    name = f"eu-{uuid.uuid4().hex[:8]}"
    eu.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    try:
        eu.put_object(Bucket=name, Key="k", Body=b"x")
        with pytest.raises(ClientError) as err:
            eu.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        assert code(err.value) == "BucketAlreadyOwnedByYou"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
        assert eu.get_object(Bucket=name, Key="k")["Body"].read() == b"x"
        assert eu.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
        assert eu.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"
        assert {b["BucketRegion"] for b in eu.list_buckets(Prefix=name)["Buckets"]} == {"eu-west-1"}
        # A request signed for another region is told which one to use (SDKs redirect on this answer).
        r = signed_request("GET", f"{eu_gateway.endpoint}/{name}")
        assert r.status_code == 400 and "<Code>AuthorizationHeaderMalformed</Code>" in r.text
        assert "<Region>eu-west-1</Region>" in r.text
    finally:
        empty_bucket(eu, name)
        eu.delete_bucket(Bucket=name)
