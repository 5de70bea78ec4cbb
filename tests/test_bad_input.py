"""Bad input: truncated and oversized bodies, broken framing and XML, odd URLs. Always an S3 error, never a 500,
and nothing stored is lost or left orphaned."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from urllib.parse import urlsplit

import nats
import nats.js.errors
import pytest
import requests

from nats_s3.store import naming

from .signing import sign, signed_request
from .support import eventually


def live_chunk_subjects(nats_url: str, bucket: str) -> tuple[set[str], set[str]]:
    """(chunk subjects present in the stream, chunk subjects live metas point at)."""

    async def probe() -> tuple[set[str], set[str]]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            nb = naming.nats_bucket(bucket)
            info = await js.stream_info(naming.stream_name(nb), subjects_filter=naming.chunk_wildcard(nb))
            present = set((info.state.subjects or {}).keys())
            store = await js.object_store(nb)
            try:
                objects = await store.list(ignore_deletes=True)
            except nats.js.errors.NotFoundError:
                objects = []
            referenced = {naming.chunk_subject(nb, o.nuid) for o in objects if o.size}
            return present, referenced
        finally:
            await nc.close()

    return asyncio.run(probe())


def raw(endpoint: str, payload: bytes, *, close_after: bool = True, timeout: float = 5.0) -> bytes:
    parts = urlsplit(endpoint)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(payload)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes, host: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_truncated_body_keeps_previous_version(gateway, s3, bucket: str, nats_url: str) -> None:
    s3.put_object(Bucket=bucket, Key="keep", Body=b"previous version")
    body = b"n" * 2_000_000
    url = f"{gateway.endpoint}/{bucket}/keep"
    headers = sign("PUT", url, body=body)
    headers["Content-Length"] = str(len(body))
    host = urlsplit(gateway.endpoint).netloc
    raw(gateway.endpoint, request_bytes("PUT", f"/{bucket}/keep", headers, body[:700_000], host))
    assert s3.get_object(Bucket=bucket, Key="keep")["Body"].read() == b"previous version"
    present, referenced = eventually(lambda: live_chunk_subjects(nats_url, bucket), lambda pr: pr[0] == pr[1])
    assert present == referenced


def test_unsigned_payload_truncated(gateway, s3, bucket: str, nats_url: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/cut"
    headers = sign("PUT", url, payload_hash="UNSIGNED-PAYLOAD")
    headers["Content-Length"] = "1000000"
    host = urlsplit(gateway.endpoint).netloc
    raw(gateway.endpoint, request_bytes("PUT", f"/{bucket}/cut", headers, b"x" * 1000, host))
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="cut")
    present, referenced = eventually(lambda: live_chunk_subjects(nats_url, bucket), lambda pr: pr[0] == pr[1])
    assert present == referenced


def test_missing_content_length(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/nolen"
    headers = sign("PUT", url, payload_hash="UNSIGNED-PAYLOAD")
    headers.pop("Content-Length", None)
    headers["Connection"] = "close"
    host = urlsplit(gateway.endpoint).netloc
    answer = raw(gateway.endpoint, request_bytes("PUT", f"/{bucket}/nolen", headers, b"", host), close_after=False)
    assert answer.startswith(b"HTTP/1.1 411"), answer[:200]
    assert b"<Code>MissingContentLength</Code>" in answer


@pytest.mark.parametrize(
    "payload",
    [
        b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>"
        b"<Delete><Object><Key>&lol2;</Key></Object></Delete>",
        b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><Delete><Object><Key>&x;</Key>"
        b"</Object></Delete>",
        b"<Delete><Object><Key>k</Key></Object>" + b"<Object><Key>k</Key></Object>" * 200_000 + b"</Delete>",
        b"\xff\xfe garbage",
    ],
)
def test_hostile_xml_refused(gateway, bucket: str, s3, payload: bytes) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    import base64

    md5 = base64.b64encode(hashlib.md5(payload).digest()).decode()
    resp = signed_request("POST", f"{gateway.endpoint}/{bucket}?delete", body=payload, headers={"Content-MD5": md5})
    assert resp.status_code == 400
    assert "<Code>MalformedXML</Code>" in resp.text
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


@pytest.mark.parametrize("query", ["replication", "website", "logging", "lifecycle"])
def test_unknown_subresources_not_implemented(gateway, bucket: str, query: str) -> None:
    resp = signed_request("GET", f"{gateway.endpoint}/{bucket}?{query}")
    assert resp.status_code == 501
    assert "<Code>NotImplemented</Code>" in resp.text
    resp = signed_request("PUT", f"{gateway.endpoint}/{bucket}/obj?{query}", body=b"<x/>")
    assert resp.status_code == 501


def test_bucket_only_subresources_on_an_object(gateway, bucket: str) -> None:
    resp = signed_request("PUT", f"{gateway.endpoint}/{bucket}/obj?cors", body=b"<x/>")
    assert resp.status_code == 501 and signed_request("HEAD", f"{gateway.endpoint}/{bucket}/obj").status_code == 404


def test_method_not_allowed(gateway, bucket: str) -> None:
    resp = signed_request("POST", f"{gateway.endpoint}/{bucket}/obj", body=b"x")
    assert resp.status_code == 405
    assert "<Code>MethodNotAllowed</Code>" in resp.text


def test_invalid_percent_encoding(gateway, bucket: str) -> None:
    resp = requests.get(f"{gateway.endpoint}/{bucket}/%ff%fe", timeout=10)
    assert resp.status_code in (400, 403)
    assert "<Code>" in resp.text


def test_header_signed_streaming_without_decoded_length(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/s"
    resp = signed_request(
        "PUT",
        url,
        body=b"0\r\n\r\n",
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers={"Content-Encoding": "aws-chunked"},
    )
    assert resp.status_code in (400, 411)
    assert "<Code>" in resp.text


def test_no_500_on_garbage_authorization(gateway) -> None:
    for value in (
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=",
        "AWS abc:def",
        "Bearer x",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=zz",
    ):
        resp = requests.get(
            f"{gateway.endpoint}/",
            headers={
                "Authorization": value,
                "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                "x-amz-date": "20261123T000000Z",
            },
            timeout=10,
        )
        assert 400 <= resp.status_code < 500, value
        assert "<Code>" in resp.text


def test_huge_headers_get_s3_error(gateway) -> None:
    host = urlsplit(gateway.endpoint).netloc
    payload = request_bytes("GET", "/", {"x-amz-meta-big": "v" * 70_000, "Connection": "close"}, b"", host)
    answer = raw(gateway.endpoint, payload, close_after=False)
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert b"<Code>RequestHeaderSectionTooLarge</Code>" in answer
    answer = raw(gateway.endpoint, b"GARBAGE\r\n\r\n", close_after=False)
    assert answer.split(b" ", 2)[1] == b"400", answer[:200]
    assert b"<Code>" in answer
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=5).status_code == 200


def test_user_metadata_too_large(s3, bucket: str) -> None:
    with pytest.raises(s3.exceptions.ClientError) as err:
        s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={f"k{i}": "v" * 100 for i in range(30)})
    assert err.value.response["Error"]["Code"] == "MetadataTooLarge"


def test_every_error_code_raised_is_in_the_table() -> None:
    """An S3Error code missing from the table would be answered 500."""
    import pathlib
    import re

    from nats_s3.protocol.errors import ERROR_TABLE

    raised = set()
    for path in pathlib.Path(__file__).resolve().parent.parent.joinpath("nats_s3").rglob("*.py"):
        raised |= set(re.findall(r'S3Error\(\s*"([A-Za-z0-9]+)"', path.read_text()))
    assert raised and not raised - set(ERROR_TABLE), sorted(raised - set(ERROR_TABLE))


def test_numbers_parsers_cannot_break(gateway, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """Numbers S3 carries, as a fuzzer sends them: a superscript two passes str.isdigit() and fails
    int(); 5000 digits fail int(); a date past the largest datetime overflows. None may be a 500."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    base = f"{gateway.endpoint}/{bucket}/k"
    cases = [
        ("GET", base, {"Range": "bytes=" + "9" * 5000 + "-"}, b"", 416),
        ("GET", base, {"Range": "bytes=-" + "9" * 5000}, b"", 206),
        ("GET", base + "?partNumber=%C2%B2", {}, b"", 400),
        ("GET", base + "?partNumber=" + "1" * 5000, {}, b"", 400),
        ("GET", base, {"If-Modified-Since": "Tue, 31 Dec 9999 23:59:59 -2359"}, b"", 200),
        ("GET", base + "?response-content-type=a%0D%0AX-Evil%3A%201", {}, b"", 400),
        ("GET", f"{gateway.endpoint}/{bucket}?max-keys=%C2%B2", {}, b"", 400),
        ("GET", f"{gateway.endpoint}/{bucket}?uploads&max-uploads=" + "9" * 5000, {}, b"", 200),
    ]
    for method, url, headers, body, want in cases:
        r = requests.request(method, url, headers=sign(method, url, body=body, headers=headers), data=body, timeout=10)
        assert r.status_code == want, (url[-60:], headers, r.status_code, r.text[:300])
        assert "\r\nX-Evil" not in str(r.headers) and "X-Evil" not in r.headers
    # A header value in UTF-8 as sent (requests would send it in Latin-1, and the signature would not match).
    hdrs = {"x-amz-decoded-content-length": "\u00b2", "Content-Encoding": "aws-chunked", "Content-Length": "0"}
    signed = sign("PUT", base, headers=hdrs, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    signed["Connection"] = "close"
    sent = request_bytes("PUT", base[len(gateway.endpoint) :], signed, b"", urlsplit(base).netloc)
    answer = raw(gateway.endpoint, sent, close_after=False)
    assert answer.startswith(b"HTTP/1.1 400") and b"InvalidArgument" in answer, answer[:300]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    for number in ("\u00b2", "9" * 5000):
        part = f"<Part><PartNumber>{number}</PartNumber><ETag>x</ETag></Part>"
        xml = f"<CompleteMultipartUpload>{part}</CompleteMultipartUpload>"
        url = f"{base[: -len('/k')]}/mp?uploadId={upload_id}"
        r = requests.post(url, data=xml.encode(), headers=sign("POST", url, body=xml.encode()), timeout=10)
        assert r.status_code == 400, r.text
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)
    for expires in ("%C2%B2", "9" * 5000):  # SigV2 presigned, unauthenticated
        r = requests.get(f"{base}?AWSAccessKeyId=test-access-key&Expires={expires}&Signature=x", timeout=10)
        assert r.status_code == 403, r.text


def test_names_that_cannot_be_buckets_never_reach_nats(gateway, s3) -> None:  # type: ignore[no-untyped-def]
    for path in ["/" + "b" * 5000, "/a.%20", "/UPPER", "/x"]:
        r = requests.head(f"{gateway.endpoint}{path}", headers=sign("HEAD", f"{gateway.endpoint}{path}"), timeout=10)
        assert r.status_code == 400, (path[:20], r.status_code)
    key = "k" * 1025
    r = requests.get(
        f"{gateway.endpoint}/any-bucket/{key}", headers=sign("GET", f"{gateway.endpoint}/any-bucket/{key}"), timeout=10
    )
    assert r.status_code == 400 and "<Code>KeyTooLongError</Code>" in r.text
    # The connection every request shares survived: the gateway still serves.
    assert s3.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
    r = requests.get(f"{gateway.endpoint}/repro/a%0ab", timeout=10)  # a newline in the path: still S3 XML
    assert r.headers["Content-Type"].startswith("application/xml") and "x-amz-request-id" in r.headers
    r = requests.get(f"{gateway.endpoint}/readyz", headers={"Expect": "something-else"}, timeout=10)
    assert r.status_code == 200
