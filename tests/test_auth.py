"""Authentication end to end: SigV4 headers, presigned URLs, 100-continue, and what unauthenticated requests can do."""

from __future__ import annotations

import datetime
import re
import socket
from urllib.parse import urlsplit

import requests

from .conftest import make_client
from .signing import presign, sign, signed_request, signing_clock
from .support import ACCESS_KEY, SECRET_KEY


def test_unsigned_request_is_denied_and_writes_nothing(gateway, s3, bucket: str) -> None:
    resp = requests.put(f"{gateway.endpoint}/{bucket}/anon", data=b"x", timeout=10)
    assert resp.status_code == 403
    assert "<Code>AccessDenied</Code>" in resp.text
    assert resp.headers["x-amz-request-id"]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert requests.get(f"{gateway.endpoint}/", timeout=10).status_code == 403
    assert requests.delete(f"{gateway.endpoint}/{bucket}", timeout=10).status_code == 403
    s3.head_bucket(Bucket=bucket)


def test_wrong_secret_and_unknown_key(gateway, bucket: str, s3) -> None:
    bad = make_client(gateway.endpoint, secret="wrong-secret-value")
    try:
        bad.put_object(Bucket=bucket, Key="k", Body=b"x")
        raise AssertionError("accepted a wrong secret")
    except bad.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    unknown = make_client(gateway.endpoint, access="nobody-here")
    try:
        unknown.list_buckets()
        raise AssertionError("accepted an unknown key")
    except unknown.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_signature_covers_body_hash_path_and_query(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/signed"
    headers = sign("PUT", url, body=b"abc")
    resp = requests.put(f"{gateway.endpoint}/{bucket}/other", data=b"abc", headers=headers, timeout=10)
    assert resp.status_code == 403 and "SignatureDoesNotMatch" in resp.text
    headers = sign("GET", f"{gateway.endpoint}/{bucket}?prefix=a")
    resp = requests.get(f"{gateway.endpoint}/{bucket}?prefix=b", headers=headers, timeout=10)
    assert resp.status_code == 403 and "SignatureDoesNotMatch" in resp.text


def test_clock_skew(gateway) -> None:
    url = f"{gateway.endpoint}/"
    for minutes in (-20, 20):
        with signing_clock(datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)):
            headers = sign("GET", url)
        resp = requests.get(url, headers=headers, timeout=10)
        assert resp.status_code == 403
        assert "<Code>RequestTimeTooSkewed</Code>" in resp.text
    with signing_clock(datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)):
        headers = sign("GET", url)
    assert requests.get(url, headers=headers, timeout=10).status_code == 200


def test_presigned_get_and_put(gateway, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared file.txt", Body=b"shared bytes")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared file.txt"}, ExpiresIn=600)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200
    assert resp.content == b"shared bytes"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=600)
    assert requests.put(put_url, data=b"via presigned put", timeout=10).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == b"via presigned put"


def test_presigned_lifetime_is_not_cut_by_skew(gateway, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="old-link", Body=b"still valid")
    url = f"{gateway.endpoint}/{bucket}/old-link"
    with signing_clock(datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=6)):
        six_days_old = presign(url, expires=604800)
    resp = requests.get(six_days_old, timeout=10)
    assert resp.status_code == 200 and resp.content == b"still valid"
    with signing_clock(datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)):
        expired = presign(url, expires=3600)
    resp = requests.get(expired, timeout=10)
    assert resp.status_code == 403 and "<Code>AccessDenied</Code>" in resp.text
    too_long = presign(url, expires=604801)
    resp = requests.get(too_long, timeout=10)
    assert resp.status_code == 403 and "<Code>AccessDenied</Code>" in resp.text
    for lifetime in ("0", "-5"):
        resp = requests.get(re.sub(r"X-Amz-Expires=\d+", f"X-Amz-Expires={lifetime}", six_days_old), timeout=10)
        assert resp.status_code == 403 and "<Code>AccessDenied</Code>" in resp.text, lifetime


def test_presigned_tampered(gateway, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    url = presign(f"{gateway.endpoint}/{bucket}/a")
    resp = requests.get(url.replace(f"/{bucket}/a?", f"/{bucket}/b?"), timeout=10)
    assert resp.status_code == 403 and "SignatureDoesNotMatch" in resp.text
    resp = requests.get(url.replace("X-Amz-Expires=3600", "X-Amz-Expires=3601"), timeout=10)
    assert resp.status_code == 403 and "SignatureDoesNotMatch" in resp.text
    resp = requests.put(url, data=b"overwrite", timeout=10)
    assert resp.status_code == 403
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"a"


def _raw_exchange(endpoint: str, head: bytes, wait: float = 3.0) -> bytes:
    parts = urlsplit(endpoint)
    with socket.create_connection((parts.hostname, parts.port), timeout=wait) as sock:
        sock.sendall(head)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
        return data


def _put_head(endpoint: str, path: str, headers: dict[str, str], length: int) -> bytes:
    lines = [f"PUT {path} HTTP/1.1", f"Host: {urlsplit(endpoint).netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("content-length", "expect", "host")]
    lines += [f"Content-Length: {length}", "Expect: 100-continue", "", ""]
    return "\r\n".join(lines).encode()


def test_expect_continue_checks_signature_first(gateway, s3, bucket: str) -> None:
    body = b"x" * 1000
    path = f"/{bucket}/continued"
    good = sign("PUT", f"{gateway.endpoint}{path}", body=body)
    answer = _raw_exchange(gateway.endpoint, _put_head(gateway.endpoint, path, good, len(body)))
    assert answer.startswith(b"HTTP/1.1 100 Continue"), answer[:100]
    bad = dict(good)
    # Another signature for sure (appending "0000" over a signature ending in it would change nothing).
    tail = "0000" if not bad["Authorization"].endswith("0000") else "1111"
    bad["Authorization"] = bad["Authorization"][:-4] + tail
    answer = _raw_exchange(gateway.endpoint, _put_head(gateway.endpoint, path, bad, len(body)))
    assert answer.startswith(b"HTTP/1.1 403"), answer[:100]
    assert b"100 Continue" not in answer
    try:
        s3.head_object(Bucket=bucket, Key="continued")
        raise AssertionError("object written without a body")
    except s3.exceptions.ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_healthz_is_open(gateway) -> None:
    resp = requests.get(f"{gateway.endpoint}/healthz", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_every_response_has_request_id(gateway, bucket: str) -> None:
    for resp in (
        signed_request("GET", f"{gateway.endpoint}/"),
        signed_request("GET", f"{gateway.endpoint}/{bucket}/missing"),
        signed_request("HEAD", f"{gateway.endpoint}/{bucket}/missing"),
        requests.get(f"{gateway.endpoint}/{bucket}", timeout=10),
    ):
        assert resp.headers.get("x-amz-request-id"), resp.status_code
    head = signed_request("HEAD", f"{gateway.endpoint}/{bucket}/missing")
    assert head.status_code == 404 and head.content == b""
    assert ACCESS_KEY


def test_sigv2_presigned_urls(gateway, s3, bucket: str) -> None:
    """`aws s3 presign` and boto3's default presigner still make SigV2 URLs; shared links must work."""
    import boto3
    from botocore.config import Config

    s3.put_object(Bucket=bucket, Key="v2 link+ü.txt", Body=b"v2 bytes")
    v2 = boto3.client(
        "s3",
        endpoint_url=gateway.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )
    url = v2.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "v2 link+ü.txt", "ResponseContentType": "text/plain"},
        ExpiresIn=300,
    )
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.content == b"v2 bytes"
    assert resp.headers["Content-Type"] == "text/plain"
    resp = requests.get(
        url.replace("response-content-type=text%2Fplain", "response-content-type=text%2Fhtml"), timeout=10
    )
    assert resp.status_code == 403 and "SignatureDoesNotMatch" in resp.text
    expired = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "v2 link+ü.txt"}, ExpiresIn=-10)
    resp = requests.get(expired, timeout=10)
    assert resp.status_code == 403 and "<Code>AccessDenied</Code>" in resp.text
    resp = requests.put(url, data=b"overwrite", timeout=10)
    assert resp.status_code == 403
