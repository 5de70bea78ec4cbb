"""A seeded fuzz of the S3 surface: signed and unsigned requests with random methods, sub-resources,
query values, headers and mangled XML bodies. None may get a 500, wedge the gateway or change what a
canary bucket holds; every error is S3 error XML; unsigned ones change nothing at all."""

from __future__ import annotations

import hashlib
import os
import random
from urllib.parse import quote

import requests
from lxml import etree

from .signing import sign

SEED = 20261201
REQUESTS = 400

SUBRESOURCES = [
    "versioning", "versions", "versionId", "uploads", "uploadId", "partNumber", "tagging", "acl", "delete",
    "list-type", "prefix", "delimiter", "max-keys", "key-marker", "version-id-marker", "marker",
    "continuation-token", "encoding-type", "location", "attributes", "start-after", "fetch-owner",
]  # fmt: skip
VALUES = [
    "", "null", "0", "-1", "1", "2", "1000", "10001", "99999999999999999999", "abc", "%", "%ZZ", "\u00e9", "a/b",
    "00000000000000000000000", "0123456789abcdef01234567", "ffffffffffffffffffffffff", "url", "true", "\x7f",
]  # fmt: skip
HEADERS = {
    "range": ["bytes=0-0", "bytes=5-1", "bytes=-0", "bytes=abc", "bytes=0-99999999999", "items=0-1"],
    "if-match": ['"x"', "*", ""],
    "if-none-match": ["*", '"x"', "W/"],
    "if-modified-since": ["yesterday", "Tue, 01 Dec 2026 00:00:00 GMT"],
    "x-amz-copy-source": ["/canary/k", "canary/k?versionId=null", "/nope", "%", "/canary/k?versionId=zz", "/a/b?x=1"],
    "x-amz-checksum-crc32": ["AAAAAA==", "!!", ""],
    "content-md5": ["AAAA", "1B2M2Y8AsgTpgAmY7PhCfg=="],
    "x-amz-tagging": ["a=b", "a=b&a=c", "%=%", "k=" + "v" * 300],
    "x-amz-metadata-directive": ["COPY", "REPLACE", "BOGUS"],
    "x-amz-checksum-algorithm": ["CRC32", "NOPE"],
    "x-amz-decoded-content-length": ["x", "5"],
    "x-amz-bucket-object-lock-enabled": ["true"],
}
BODIES = [
    b"",
    b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
    b"<VersioningConfiguration><Status>Suspended</Status><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>",
    b"<Delete><Object><Key>k</Key><VersionId>null</VersionId></Object></Delete>",
    b"<Delete><Object><Key>k</Key><VersionId>bad</VersionId></Object><Quiet>true</Quiet></Delete>",
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
    b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>",
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "e">]><x>&e;</x>',
    b"\x00\xff" * 10,
]  # fmt: skip


def mangle(rng: random.Random, body: bytes) -> bytes:
    if not body or rng.random() < 0.5:
        return body
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.4:
            data[i] = rng.randrange(256)
        elif choice < 0.7:
            del data[i : i + rng.randint(1, 8)]
        else:
            data[i:i] = rng.choice([b"<", b">", b"</", b"&", b"\x00", b"<Status>", b"</Delete>"])
        if not data:
            break
    return bytes(data)


def random_request(rng: random.Random, endpoint: str, buckets: list[str]) -> tuple[str, str, dict[str, str], bytes]:
    method = rng.choice(["GET", "PUT", "POST", "DELETE", "HEAD"])
    bucket = rng.choice(buckets)
    path = f"/{bucket}"
    if rng.random() < 0.7:
        # (No ".." key: the HTTP client would resolve it away after signing.)
        key = rng.choice(["k", "k", "a/b", "v", "new", "%C3%A9t%C3%A9", "x" * 200, "k%2Fk"])
        path += f"/{key}"
    params = []
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(SUBRESOURCES)
        params.append(name if rng.random() < 0.3 else f"{name}={quote(rng.choice(VALUES), safe='')}")
    url = endpoint + path + ("?" + "&".join(params) if params else "")
    headers = {name: rng.choice(values) for name, values in HEADERS.items() if rng.random() < 0.12}
    body = mangle(rng, rng.choice(BODIES)) if method in ("PUT", "POST") else b""
    return method, url, headers, body


def snapshot(s3, bucket: str) -> list[tuple[str, str, bool, str]]:  # type: ignore[no-untyped-def]
    """Every version and marker of the canary, with a digest of each version's bytes."""
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            out.append((v["Key"], v["VersionId"], v["IsLatest"], hashlib.sha256(body).hexdigest()))
        out += [(m["Key"], m["VersionId"], m["IsLatest"], "marker") for m in page.get("DeleteMarkers", [])]
    return sorted(out)


def test_seeded_fuzz(s3, gateway) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    canary = f"fuzz-canary-{SEED}"
    playground = f"fuzz-play-{SEED}"
    for name in (canary, playground):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=canary, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        s3.put_object(Bucket=canary, Key="k", Body=os.urandom(1000 + i))
    s3.delete_object(Bucket=canary, Key="gone")
    for key in ("k", "a/b", "v"):
        s3.put_object(Bucket=playground, Key=key, Body=b"fuzz")
    before = snapshot(s3, canary)
    statuses: dict[int, int] = {}
    for n in range(REQUESTS):
        method, url, headers, body = random_request(rng, gateway.endpoint, [playground] * 4 + ["no-such-fuzz"])
        signed = rng.random() < 0.85
        if not signed:
            url = url.replace(f"/{playground}", f"/{canary}", 1)
        hdrs = sign(method, url, body=body, headers=headers) if signed else dict(headers)
        r = requests.request(method, url, data=body, headers=hdrs, timeout=30)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        context = f"request {n}: {method} {url} {headers} {body[:80]!r} -> {r.status_code} {r.text[:300]}"
        assert r.status_code < 500 or r.status_code in (501, 503), context
        assert "x-amz-request-id" in r.headers, context
        if r.status_code >= 400 and method != "HEAD" and r.status_code != 304:
            root = etree.fromstring(r.content)
            assert root.tag == "Error" and root.findtext("Code"), context
        if signed:
            assert r.status_code != 403, context  # signed right: refused for what it asks, never for who
        else:
            assert r.status_code == 403, context
    print(f"fuzz statuses (seed {SEED}): {dict(sorted(statuses.items()))}")
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=5).status_code == 200
    assert snapshot(s3, canary) == before  # unsigned requests changed nothing
    assert statuses.get(200, 0) + statuses.get(204, 0) > 20, statuses  # the fuzz reached real work too
    # Clean up both buckets, every version and upload included.
    from .conftest import empty_bucket

    for name in (canary, playground):
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        empty_bucket(s3, name)
        s3.delete_bucket(Bucket=name)
