"""Tests for nats_s3.protocol.sigv4: requests signed by botocore verify, tampered ones fail with S3's codes."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

from nats_s3.protocol.errors import S3Error
from nats_s3.protocol.sigv4 import (
    STREAMING_PAYLOAD,
    UNSIGNED_PAYLOAD,
    AuthResult,
    SignedRequest,
    SigV4Verifier,
    canonical_query,
    canonical_uri,
)

AK = "AKIDEXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SECRETS = {AK: SK, "other": "other-secret"}
ENDPOINT = "http://s3.test:9000"

KEYS = [
    "plain.txt",
    "with space/and more  spaces",
    "ünïcödé/日本語/😀",
    "a+b+c",
    "100%/%41%zz",
    "double//slash",
    "trailing/",
    "dots/../and/./here",
    "~tilde~",
    "x=y&z;w,v",
    "!$'()*:@[]",
    "/leading",
]


def to_signed(method: str, url: str, headers: Mapping[str, Any]) -> SignedRequest:
    """The request as an HTTP server would see it."""
    parts = urlsplit(url)
    seen: dict[str, str] = {}
    for name, value in headers.items():
        text = value.decode() if isinstance(value, bytes) else str(value)
        key = name.lower()
        seen[key] = f"{seen[key]},{text}" if key in seen else text
    seen.setdefault("host", parts.netloc)
    return SignedRequest(
        method=method,
        raw_path=parts.path or "/",
        query=parse_qsl(parts.query, keep_blank_values=True),
        headers=seen,
    )


def sign(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    access_key: str = AK,
    secret: str = SK,
    region: str = "us-east-1",
    auth_cls: type[S3SigV4Auth] = S3SigV4Auth,
) -> SignedRequest:
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    auth_cls(Credentials(access_key, secret), "s3", region).add_auth(req)
    return to_signed(req.method, req.url, req.headers)


def presign(
    method: str,
    url: str,
    *,
    expires: int = 3600,
    headers: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> SignedRequest:
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    S3SigV4QueryAuth(Credentials(AK, SK), "s3", region, expires=expires).add_auth(req)
    return to_signed(req.method, req.url, req.headers)


def object_url(key: str, query: str = "") -> str:
    from urllib.parse import quote

    # botocore's serializer encodes keys this way.
    url = f"{ENDPOINT}/bucket/{quote(key, safe='/~')}"
    return f"{url}?{query}" if query else url


def clock_at(delta: timedelta) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + delta


def error_of(verifier: SigV4Verifier, req: SignedRequest) -> S3Error:
    with pytest.raises(S3Error) as e:
        verifier.verify(req)
    return e.value


def with_headers(req: SignedRequest, **changes: str | None) -> SignedRequest:
    headers = dict(req.headers)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return replace(req, headers=headers)


@pytest.fixture
def verifier() -> SigV4Verifier:
    return SigV4Verifier(SECRETS)


# -- header auth: valid requests ---------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_keys_verify(verifier: SigV4Verifier, key: str) -> None:
    req = sign("PUT", object_url(key), body=b"data", headers={"x-amz-meta-note": "  a   b  "})
    # botocore's key encoding is already canonical, so no raw-path fallback is involved.
    assert canonical_uri(req.raw_path) == req.raw_path
    result = verifier.verify(req)
    assert isinstance(result, AuthResult)
    assert result.access_key == AK
    assert not result.presigned
    assert result.scope.endswith("/us-east-1/s3/aws4_request")
    assert result.payload_hash == req.headers["x-amz-content-sha256"]
    assert result.amz_date == req.headers["x-amz-date"]
    assert result.signature == req.headers["authorization"].rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(
    "query",
    [
        "uploads",
        "acl=",
        "acl",
        percent_encode_sequence({"prefix": "a=b&c d+e", "delimiter": "/", "list-type": "2"}),
        percent_encode_sequence([("tagging", ""), ("versionId", "v~1 ü")]),
        "partNumber=2&uploadId=abc%2Bdef%3D",
        "a=1&a=0&b=",
    ],
)
def test_queries_verify(verifier: SigV4Verifier, query: str) -> None:
    verifier.verify(sign("GET", object_url("k", query)))


def test_bucket_and_root_paths(verifier: SigV4Verifier) -> None:
    verifier.verify(sign("GET", f"{ENDPOINT}/"))
    verifier.verify(sign("GET", f"{ENDPOINT}/bucket"))
    verifier.verify(sign("GET", f"{ENDPOINT}/bucket/"))


def test_any_region_and_extra_spaces(verifier: SigV4Verifier) -> None:
    req = sign("GET", object_url("k"), region="eu-central-1")
    verifier.verify(req)
    spaced = req.headers["authorization"].replace(", ", ",   ")
    verifier.verify(with_headers(req, authorization=spaced))


def test_date_header_instead_of_x_amz_date(verifier: SigV4Verifier) -> None:
    req = sign("GET", object_url("k"), headers={"Date": "placeholder"})
    assert "x-amz-date" not in req.headers
    result = verifier.verify(req)
    assert len(result.amz_date) == 16


def test_unsigned_and_streaming_payloads(verifier: SigV4Verifier) -> None:
    class Streaming(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return STREAMING_PAYLOAD

    class Unsigned(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return UNSIGNED_PAYLOAD

    assert verifier.verify(sign("PUT", object_url("k"), auth_cls=Streaming)).payload_hash == STREAMING_PAYLOAD
    assert verifier.verify(sign("PUT", object_url("k"), auth_cls=Unsigned)).payload_hash == UNSIGNED_PAYLOAD


def test_signing_key_matches_aws_derivation(verifier: SigV4Verifier) -> None:
    import hashlib
    import hmac

    result = verifier.verify(sign("GET", object_url("k")))
    date, region, service, term = result.scope.split("/")
    key = hmac.new(("AWS4" + SK).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, term):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    assert result.signing_key == key
    # A second request reuses the cached key and still verifies.
    assert verifier.verify(sign("GET", object_url("k2"))).signing_key == key


def test_secret_rotation_is_seen() -> None:
    secrets = dict(SECRETS)
    verifier = SigV4Verifier(secrets)
    verifier.verify(sign("GET", object_url("k")))
    secrets[AK] = "rotated"
    assert error_of(verifier, sign("GET", object_url("k"))).code == "SignatureDoesNotMatch"
    verifier.verify(sign("GET", object_url("k"), secret="rotated"))


def test_raw_path_encodings(verifier: SigV4Verifier) -> None:
    # Signed over the canonical encoding, sent with characters left unencoded.
    req = sign("GET", f"{ENDPOINT}/bucket/it%27s%20%21")
    verifier.verify(replace(req, raw_path="/bucket/it's%20!"))
    # Signed exactly as sent with a non-canonical encoding (botocore signs the path verbatim).
    verifier.verify(sign("GET", f"{ENDPOINT}/bucket/%7Etilde%2fslash"))


def test_canonical_helpers() -> None:
    assert canonical_uri("/b/a b/%2F/~x/%7e") == "/b/a%20b/%2F/~x/~"
    assert canonical_uri("/b//c/../") == "/b//c/../"
    assert canonical_uri("") == "/"
    assert canonical_query([("b", "2"), ("a", "x y"), ("a", "1"), ("uploads", "")]) == "a=1&a=x%20y&b=2&uploads="
    assert canonical_query([("X-Amz-Signature", "s"), ("k", "~+")], exclude="X-Amz-Signature") == "k=~%2B"


def test_boto3_client_requests() -> None:
    """Whatever a real boto3 client sends (checksum headers, Expect, query styles) verifies."""

    class Captured(Exception):
        def __init__(self, request: Any) -> None:
            super().__init__("captured")
            self.request = request

    def capture(request: Any, **_: Any) -> None:
        raise Captured(request)

    client = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="eu-west-3",
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    client.meta.events.register("before-send.s3", capture)
    calls: list[Callable[[], Any]] = [
        lambda: client.put_object(Bucket="b", Key="a b/ü+%~//x/", Body=b"hello", Metadata={"k": "v  w"}),
        lambda: client.put_object(Bucket="b", Key="k", Body=b"hi", ChecksumAlgorithm="SHA256"),
        lambda: client.list_objects_v2(Bucket="b", Prefix="a=b&c d", Delimiter="/"),
        lambda: client.create_multipart_upload(Bucket="b", Key="k"),
        lambda: client.upload_part(Bucket="b", Key="k", UploadId="u+/=", PartNumber=3, Body=b"x"),
        lambda: client.get_object_acl(Bucket="b", Key="k"),
        lambda: client.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "a"}]}),
        lambda: client.get_object(Bucket="b", Key="k", Range="bytes=0-1", VersionId="v 1"),
        lambda: client.list_buckets(),
    ]
    verifier = SigV4Verifier(SECRETS)
    for call in calls:
        with pytest.raises(Captured) as e:
            call()
        r = e.value.request
        verifier.verify(to_signed(r.method, r.url, r.headers))

    for method, params in [
        ("get_object", {"Bucket": "b", "Key": "x y/ü", "ResponseContentDisposition": 'attachment; filename="a b"'}),
        ("put_object", {"Bucket": "b", "Key": "p+q"}),
    ]:
        url = client.generate_presigned_url(method, Params=params, ExpiresIn=600)
        result = verifier.verify(to_signed("GET" if method == "get_object" else "PUT", url, {}))
        assert result.presigned
        assert result.payload_hash == UNSIGNED_PAYLOAD


# -- header auth: refusals ---------------------------------------------------------------------


def test_tampering(verifier: SigV4Verifier) -> None:
    req = sign("PUT", object_url("k", "tagging"), headers={"x-amz-meta-a": "1"}, body=b"x")
    verifier.verify(req)
    tampered = [
        replace(req, method="POST"),
        replace(req, raw_path="/bucket/K"),
        replace(req, query=[("tagging", "x")]),
        replace(req, query=[*req.query, ("versionId", "1")]),
        with_headers(req, x_amz_meta_a="2"),
        with_headers(req, host="other:9000"),
        with_headers(req, x_amz_content_sha256="0" * 64),
        # Change the signature's last digit (to a different one: a no-op "tamper" would pass 1 time in 16).
        with_headers(
            req,
            authorization=req.headers["authorization"][:-1]
            + ("1" if req.headers["authorization"].endswith("0") else "0"),
        ),
    ]
    for bad in tampered:
        err = error_of(verifier, bad)
        assert err.code == "SignatureDoesNotMatch", bad
        assert err.status == 403


def test_signature_mismatch_details(verifier: SigV4Verifier) -> None:
    req = sign("GET", object_url("k"), secret="wrong-secret")
    err = error_of(verifier, req)
    assert err.code == "SignatureDoesNotMatch"
    assert err.extra["CanonicalRequest"].startswith("GET\n/bucket/k\n")
    assert err.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n")
    assert all(SK not in v for v in err.extra.values())
    assert SK not in str(err)


def test_unknown_access_key(verifier: SigV4Verifier) -> None:
    err = error_of(verifier, sign("GET", object_url("k"), access_key="NOPE"))
    assert (err.code, err.status) == ("InvalidAccessKeyId", 403)


def test_skew() -> None:
    req = sign("GET", object_url("k"))
    SigV4Verifier(SECRETS, clock=clock_at(timedelta(minutes=14))).verify(req)
    SigV4Verifier(SECRETS, clock=clock_at(timedelta(minutes=-14))).verify(req)
    for delta in (timedelta(minutes=16), timedelta(minutes=-16), timedelta(days=2)):
        err = error_of(SigV4Verifier(SECRETS, clock=clock_at(delta)), req)
        assert (err.code, err.status) == ("RequestTimeTooSkewed", 403)
    narrow = SigV4Verifier(SECRETS, clock=clock_at(timedelta(minutes=2)), max_skew=timedelta(minutes=1))
    assert error_of(narrow, req).code == "RequestTimeTooSkewed"


def test_missing_or_bad_date(verifier: SigV4Verifier) -> None:
    req = sign("GET", object_url("k"))
    for bad in (with_headers(req, x_amz_date=None), with_headers(req, x_amz_date="yesterday")):
        err = error_of(verifier, bad)
        assert err.code == "AccessDenied"
        assert "x-amz-date" in err.message
    # Credential date must be the x-amz-date's day.
    auth = req.headers["authorization"]
    day = req.headers["x-amz-date"][:8]
    other = "19990101"
    err = error_of(verifier, with_headers(req, authorization=auth.replace(f"/{day}/", f"/{other}/")))
    assert err.code == "AuthorizationHeaderMalformed"


def test_content_sha256_rules(verifier: SigV4Verifier) -> None:
    req = sign("GET", object_url("k"))
    err = error_of(verifier, with_headers(req, x_amz_content_sha256=None))
    assert (err.code, err.status) == ("InvalidRequest", 400)
    assert "x-amz-content-sha256" in err.message
    assert error_of(verifier, with_headers(req, x_amz_content_sha256="abc")).code == "InvalidArgument"
    ecdsa = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"
    assert error_of(verifier, with_headers(req, x_amz_content_sha256=ecdsa)).code == "NotImplemented"


@pytest.mark.parametrize(
    ("transform", "code"),
    [
        (lambda a: "AWS AKIDEXAMPLE:c2lnbmF0dXJl", "InvalidRequest"),
        (lambda a: "Bearer token", "InvalidRequest"),
        (lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"), "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("Credential=", "Cred="), "AuthorizationHeaderMalformed"),
        (lambda a: a.split(", Signature=")[0], "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("/s3/", "/ec2/"), "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("/aws4_request", "/aws5_request"), "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("/us-east-1/", "/"), "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("SignedHeaders=host;", "SignedHeaders="), "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("SignedHeaders=", "SignedHeaders=;"), "AuthorizationHeaderMalformed"),
        (lambda a: a + ", Signature=00", "AuthorizationHeaderMalformed"),
        (lambda a: "AWS4-HMAC-SHA256 garbage", "AuthorizationHeaderMalformed"),
        (lambda a: a.replace("Signature=", "Signature=é"), "SignatureDoesNotMatch"),
    ],
)
def test_malformed_authorization(verifier: SigV4Verifier, transform: Callable[[str], str], code: str) -> None:
    req = sign("GET", object_url("k"))
    err = error_of(verifier, with_headers(req, authorization=transform(req.headers["authorization"])))
    assert err.code == code


def test_unsigned_amz_header_refused(verifier: SigV4Verifier) -> None:
    req = sign("PUT", object_url("k"))
    err = error_of(verifier, with_headers(req, x_amz_acl="public-read"))
    assert err.code == "AccessDenied"
    assert err.extra["HeadersNotSigned"] == "x-amz-acl"
    # Unsigned ordinary headers (proxies add them) are fine.
    verifier.verify(with_headers(req, user_agent="curl", x_forwarded_for="1.2.3.4"))
    lenient = SigV4Verifier(SECRETS, require_signed_amz_headers=False)
    lenient.verify(with_headers(req, x_amz_acl="public-read"))


def test_both_mechanisms_refused(verifier: SigV4Verifier) -> None:
    req = sign("GET", object_url("k"))
    both = replace(req, query=[("X-Amz-Signature", "0" * 64)])
    assert error_of(verifier, both).code == "InvalidArgument"


def test_is_signed(verifier: SigV4Verifier) -> None:
    anonymous = SignedRequest("GET", "/b/k", [], {"host": "h"})
    assert not verifier.is_signed(anonymous)
    assert error_of(verifier, anonymous).code == "AccessDenied"
    assert verifier.is_signed(sign("GET", object_url("k")))
    assert verifier.is_signed(presign("GET", object_url("k")))
    v2 = replace(anonymous, query=[("AWSAccessKeyId", AK), ("Signature", "x"), ("Expires", "1")])
    assert verifier.is_signed(v2)
    assert error_of(verifier, v2).code == "AccessDenied"  # a SigV2 presigned URL, long expired


# -- presigned URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS)
def test_presigned_keys(verifier: SigV4Verifier, key: str) -> None:
    req = presign("GET", object_url(key, percent_encode_sequence({"versionId": "a b&c=d", "x-id": ""})))
    result = verifier.verify(req)
    assert result.presigned
    assert result.payload_hash == UNSIGNED_PAYLOAD
    assert result.signature == dict(req.query)["X-Amz-Signature"]


def test_presigned_with_signed_header(verifier: SigV4Verifier) -> None:
    req = presign("PUT", object_url("k"), headers={"x-amz-meta-a": "1", "Content-Type": "text/plain"})
    verifier.verify(req)
    assert error_of(verifier, with_headers(req, x_amz_meta_a="2")).code == "SignatureDoesNotMatch"
    assert error_of(verifier, with_headers(req, content_type="image/png")).code == "SignatureDoesNotMatch"


def test_presigned_content_sha256_header(verifier: SigV4Verifier) -> None:
    req = presign("PUT", object_url("k"), headers={"x-amz-content-sha256": "a" * 64})
    assert verifier.verify(req).payload_hash == "a" * 64


def test_presigned_expiry() -> None:
    req = presign("GET", object_url("k"), expires=604800)
    for delta in (timedelta(0), timedelta(days=6), timedelta(days=7) - timedelta(seconds=5)):
        SigV4Verifier(SECRETS, clock=clock_at(delta)).verify(req)
    err = error_of(SigV4Verifier(SECRETS, clock=clock_at(timedelta(days=7, seconds=5))), req)
    assert (err.code, err.message) == ("AccessDenied", "Request has expired")
    short = presign("GET", object_url("k"), expires=60)
    assert error_of(SigV4Verifier(SECRETS, clock=clock_at(timedelta(seconds=65))), short).code == "AccessDenied"


def test_presigned_not_yet_valid() -> None:
    req = presign("GET", object_url("k"))
    SigV4Verifier(SECRETS, clock=clock_at(timedelta(minutes=-10))).verify(req)
    err = error_of(SigV4Verifier(SECRETS, clock=clock_at(timedelta(minutes=-20))), req)
    assert (err.code, err.message) == ("AccessDenied", "Request is not valid yet")


def test_presigned_expires_bounds(verifier: SigV4Verifier) -> None:
    """A lifetime of 0, negative or past a week is refused as an expired URL is (403), never served."""
    req = presign("GET", object_url("k"), expires=604801)
    err = error_of(verifier, req)
    assert (err.code, err.status) == ("AccessDenied", 403)
    assert "604800" in err.message
    for bad in ("0", "-1", "-99999999999999999999", "9" * 5000, "604801"):
        query = [(k, bad if k == "X-Amz-Expires" else v) for k, v in req.query]
        assert (error_of(verifier, replace(req, query=query)).code, err.status) == ("AccessDenied", 403), bad
    for bad in ("abc", "\u00b2", "1.5", ""):
        query = [(k, bad if k == "X-Amz-Expires" else v) for k, v in req.query]
        assert error_of(verifier, replace(req, query=query)).code == "AuthorizationQueryParametersError", bad


def test_a_scope_for_another_region_names_the_right_one() -> None:
    verifier = SigV4Verifier(SECRETS, region="us-east-1")
    for req in (
        sign("GET", object_url("k"), region="eu-central-1"),
        presign("GET", object_url("k"), region="eu-central-1"),
    ):
        err = error_of(verifier, req)
        assert err.status == 400 and err.extra["Region"] == "us-east-1" and "eu-central-1" in err.message
    verifier.verify(sign("GET", object_url("k"), region="us-east-1"))


@pytest.mark.parametrize(
    "param", ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"]
)
def test_presigned_missing_param(verifier: SigV4Verifier, param: str) -> None:
    req = presign("GET", object_url("k"))
    query = [(k, v) for k, v in req.query if k != param]
    assert error_of(verifier, replace(req, query=query)).code == "AuthorizationQueryParametersError"


def test_presigned_bad_params(verifier: SigV4Verifier) -> None:
    req = presign("GET", object_url("k"))

    def change(name: str, value: str) -> SignedRequest:
        return replace(req, query=[(k, value if k == name else v) for k, v in req.query])

    assert error_of(verifier, change("X-Amz-Algorithm", "AWS4-HMAC-SHA1")).code == "AuthorizationQueryParametersError"
    assert error_of(verifier, change("X-Amz-Date", "2026-01-01")).code == "AuthorizationQueryParametersError"
    assert error_of(verifier, change("X-Amz-Credential", "AK/x")).code == "AuthorizationQueryParametersError"
    assert error_of(verifier, change("X-Amz-SignedHeaders", "x-amz-date")).code == "AuthorizationQueryParametersError"
    cred = dict(req.query)["X-Amz-Credential"].replace(AK, "NOPE")
    assert error_of(verifier, change("X-Amz-Credential", cred)).code == "InvalidAccessKeyId"
    assert error_of(verifier, change("X-Amz-Signature", "0" * 64)).code == "SignatureDoesNotMatch"
    assert error_of(verifier, replace(req, method="PUT")).code == "SignatureDoesNotMatch"
    assert error_of(verifier, replace(req, raw_path="/bucket/other")).code == "SignatureDoesNotMatch"
    assert error_of(verifier, replace(req, query=[*req.query, ("acl", "")])).code == "SignatureDoesNotMatch"


# -- the worked examples in the AWS documentation ----------------------------------------------

DOC_AK = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRETS = {DOC_AK: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
DOC_VERIFIER = SigV4Verifier(DOC_SECRETS, clock=lambda: datetime(2013, 5, 24, 0, 5, tzinfo=UTC))


def test_aws_documented_get_object() -> None:
    req = SignedRequest(
        "GET",
        "/test.txt",
        [],
        {
            "host": "examplebucket.s3.amazonaws.com",
            "range": "bytes=0-9",
            "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "x-amz-date": "20130524T000000Z",
            "authorization": (
                f"AWS4-HMAC-SHA256 Credential={DOC_AK}/20130524/us-east-1/s3/aws4_request,"
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
        },
    )
    result = DOC_VERIFIER.verify(req)
    assert result.scope == "20130524/us-east-1/s3/aws4_request"
    assert error_of(DOC_VERIFIER, with_headers(req, range="bytes=0-10")).code == "SignatureDoesNotMatch"


def test_aws_documented_presigned_get() -> None:
    query = [
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        ("X-Amz-Credential", f"{DOC_AK}/20130524/us-east-1/s3/aws4_request"),
        ("X-Amz-Date", "20130524T000000Z"),
        ("X-Amz-Expires", "86400"),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Signature", "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"),
    ]
    req = SignedRequest("GET", "/test.txt", query, {"host": "examplebucket.s3.amazonaws.com"})
    assert DOC_VERIFIER.verify(req).presigned
    late = SigV4Verifier(DOC_SECRETS, clock=lambda: datetime(2013, 5, 25, 0, 0, 1, tzinfo=UTC))
    assert error_of(late, req).message == "Request has expired"


def test_mutated_requests_only_raise_s3_errors() -> None:
    """Garbage anywhere in a request (NULs, lone surrogates, emoji) is a client error, never a crash."""
    rng = random.Random(7)
    alphabet = "aZ09 /;,=:&%+~.-_\t\x00\udcff\ud800é😀\r\n"

    def mutate(text: str) -> str:
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars) + 1)
            op = rng.random()
            if op < 0.4 and chars:
                chars[min(i, len(chars) - 1)] = rng.choice(alphabet)
            elif op < 0.7:
                chars.insert(i, rng.choice(alphabet))
            elif chars:
                del chars[min(i, len(chars) - 1)]
        return "".join(chars)

    verifier = SigV4Verifier(SECRETS)
    bases = [
        sign("PUT", object_url("a b", "acl="), headers={"Date": "x"}),
        sign("GET", object_url("k", "uploads")),
        presign("GET", object_url("k", "x=1")),
    ]
    for _ in range(5000):
        req = rng.choice(bases)
        what = rng.randrange(4)
        if what == 0:
            headers = dict(req.headers)
            name = rng.choice(list(headers))
            headers[name] = mutate(headers[name])
            req = replace(req, headers=headers)
        elif what == 1:
            req = replace(req, raw_path=mutate(req.raw_path))
        elif what == 2 and req.query:
            query = list(req.query)
            i = rng.randrange(len(query))
            query[i] = (query[i][0], mutate(query[i][1]))
            req = replace(req, query=query)
        else:
            req = replace(req, method=mutate(req.method))
        with contextlib.suppress(S3Error):
            verifier.verify(req)


def test_x_amz_date_is_parsed_strictly_by_position() -> None:
    from datetime import UTC, datetime

    from nats_s3.protocol.sigv4 import _parse_amz_date

    assert _parse_amz_date("20261202T214500Z") == datetime(2026, 12, 2, 21, 45, tzinfo=UTC)
    assert _parse_amz_date("20240229T235959Z") == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    for bad in ("20230229T000000Z", "20261302T000000Z", "20261202T240000Z", "20261202T216000Z",
                "2026120\u0662T214500Z", "20261202T214500", "20261202 214500Z", ""):  # fmt: skip
        assert _parse_amz_date(bad) is None, bad
