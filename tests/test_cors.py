"""Bucket CORS: Put/Get/DeleteBucketCors as S3 validates them, the preflight answered from the rules,
and Access-Control-* headers on actual requests (errors included)."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from botocore.exceptions import ClientError

from .signing import signed_request

RULES = {
    "CORSRules": [
        {"ID": "app", "AllowedOrigins": ["https://app.example.com", "https://*.preview.example.com"],
         "AllowedMethods": ["GET", "PUT", "HEAD"], "AllowedHeaders": ["content-type", "x-amz-*"],
         "ExposeHeaders": ["ETag", "x-amz-version-id"], "MaxAgeSeconds": 600},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]},
    ]
}  # fmt: skip


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def test_cors_configuration_round_trip_and_validation(s3, bucket: str, gateway) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(err.value) == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert (
        got[0]["ID"] == "app"
        and got[0]["MaxAgeSeconds"] == 600
        and got[0]["AllowedHeaders"] == ["content-type", "x-amz-*"]
    )
    assert got[1]["AllowedOrigins"] == ["*"] and got[1]["AllowedMethods"] == ["GET"]
    for bad, expected in (
        ({"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["PATCH"]}]}, "InvalidRequest"),
        ({"CORSRules": [{"AllowedOrigins": ["https://*.*.example"], "AllowedMethods": ["GET"]}]}, "InvalidRequest"),
        ({"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET"], "AllowedHeaders": ["a*b*"]}]},
         "InvalidRequest"),
    ):  # fmt: skip
        with pytest.raises(ClientError) as err:
            s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=bad)
        assert code(err.value) == expected
    body = b"<CORSConfiguration></CORSConfiguration>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    r = signed_request("PUT", f"{gateway.endpoint}/{bucket}?cors", body=body, headers={"Content-MD5": md5})
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text
    r = signed_request("PUT", f"{gateway.endpoint}/{bucket}?cors", body=body)  # S3 insists on an integrity header
    assert r.status_code == 400 and "Content-MD5" in r.text
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"]) == 2  # refused configurations changed nothing
    s3.delete_bucket_cors(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        s3.get_bucket_cors(Bucket=bucket)
    assert code(err.value) == "NoSuchCORSConfiguration"


def preflight(url: str, origin: str, method: str, headers: str | None = None) -> requests.Response:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return requests.options(url, headers=sent, timeout=10)


def test_preflight_is_answered_from_the_rules(s3, bucket: str, gateway) -> None:
    url = f"{gateway.endpoint}/{bucket}/photo.jpg"
    assert preflight(url, "https://app.example.com", "PUT").status_code == 403  # no configuration yet
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    r = preflight(url, "https://app.example.com", "PUT", "Content-Type, X-Amz-Date")
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, PUT, HEAD"
    assert r.headers["Access-Control-Allow-Headers"] == "content-type, x-amz-date"
    assert r.headers["Access-Control-Max-Age"] == "600" and r.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in r.headers["Vary"]
    assert preflight(url, "https://pr-7.preview.example.com", "GET").status_code == 200  # wildcard origin
    star = preflight(url, "https://elsewhere.example", "GET")
    assert star.status_code == 200 and star.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight(url, "https://elsewhere.example", "PUT").status_code == 403  # method not allowed there
    assert preflight(url, "https://app.example.com", "DELETE").status_code == 403
    assert preflight(url, "https://app.example.com", "PUT", "authorization").status_code == 403  # header
    assert preflight(f"{gateway.endpoint}/no-such-bucket-cors/k", "https://app.example.com", "GET").status_code == 403
    r = requests.options(url, headers={"Origin": "https://app.example.com"}, timeout=10)
    assert r.status_code == 400


def test_actual_requests_carry_the_allowed_origin(s3, bucket: str, gateway) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)
    s3.put_object(Bucket=bucket, Key="k", Body=b"cors")
    origin = {"Origin": "https://app.example.com"}
    r = signed_request("GET", f"{gateway.endpoint}/{bucket}/k", headers=origin)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-version-id" and "Origin" in r.headers["Vary"]
    missing = signed_request("GET", f"{gateway.endpoint}/{bucket}/missing", headers=origin)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    other = signed_request("GET", f"{gateway.endpoint}/{bucket}/k", headers={"Origin": "https://evil.example"})
    assert other.headers["Access-Control-Allow-Origin"] == "*"  # the second rule allows GET from anywhere
    put = signed_request("PUT", f"{gateway.endpoint}/{bucket}/p", body=b"x", headers={"Origin": "https://evil.example"})
    assert put.status_code == 200 and "Access-Control-Allow-Origin" not in put.headers
    plain = signed_request("GET", f"{gateway.endpoint}/{bucket}/k")
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_a_cors_change_applies_on_every_gateway_within_a_second(s3, bucket: str, nats_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from .support import GatewayProcess, write_credentials

    other = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url).start()
    try:
        url = f"{other.endpoint}/{bucket}/k"
        assert preflight(url, "https://app.example.com", "GET").status_code == 403
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=RULES)  # through the session's gateway
        started = time.monotonic()
        while preflight(url, "https://app.example.com", "GET").status_code != 200:
            assert time.monotonic() - started < 1.0, "the other gateway did not see the change within 1 s"
            time.sleep(0.02)
        s3.delete_bucket_cors(Bucket=bucket)
        started = time.monotonic()
        while preflight(url, "https://app.example.com", "GET").status_code != 403:
            assert time.monotonic() - started < 1.0
            time.sleep(0.02)
    finally:
        other.stop()
