"""A seeded fuzz of the S3 surface: signed and unsigned requests with random methods, sub-resources,
query values, headers and mangled XML bodies. None may get a 500, wedge the gateway or change what a
canary bucket holds; every error is S3 error XML; unsigned ones change nothing at all."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from urllib.parse import quote

import requests
from lxml import etree

from .signing import sign

SEED = 20261201
REQUESTS = 400

SUBRESOURCES = [
    "versioning", "versions", "versionId", "uploads", "uploadId", "partNumber", "tagging", "acl", "delete",
    "list-type", "prefix", "delimiter", "max-keys", "key-marker", "version-id-marker", "marker",
    "continuation-token", "encoding-type", "location", "attributes", "start-after", "fetch-owner", "encryption",
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
    "x-amz-server-side-encryption": ["AES256", "aws:kms", "aws:kms:dsse", "", "AES512"],
    "x-amz-server-side-encryption-aws-kms-key-id": ["k1", "arn:aws:kms:x:1:key/k1", ""],
    "x-amz-server-side-encryption-customer-algorithm": ["AES256", "AES128", ""],
    "x-amz-server-side-encryption-customer-key": ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "!!", "", "AAAA"],
    "x-amz-server-side-encryption-customer-key-md5": ["2aRFVv4Zd6uGODbO6zBdcg==", "AAAA", ""],
    "x-amz-copy-source-server-side-encryption-customer-algorithm": ["AES256", "x"],
    "x-amz-server-side-encryption-context": ["eyJhIjoiYiJ9", "e30=", "!!"],
}
BODIES = [
    b"",
    b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>",
    b"<VersioningConfiguration><Status>Suspended</Status><MfaDelete>Enabled</MfaDelete></VersioningConfiguration>",
    b"<Delete><Object><Key>k</Key><VersionId>null</VersionId></Object></Delete>",
    b"<Delete><Object><Key>k</Key><VersionId>bad</VersionId></Object><Quiet>true</Quiet></Delete>",
    b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
    b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>",
    b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
    b"</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>",
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
        else:  # anonymous, on a private bucket (or none): refused, or told what is wrong with the request
            assert r.status_code >= 400, context
    print(f"fuzz statuses (seed {SEED}): {dict(sorted(statuses.items()))}")
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=5).status_code == 200
    assert snapshot(s3, canary) == before  # unsigned requests changed nothing
    assert statuses.get(200, 0) + statuses.get(204, 0) > 20, statuses  # the fuzz reached real work too
    # Clean up both buckets, every version and upload included.
    from .conftest import empty_bucket

    existing = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    for name in (canary, playground):
        if name not in existing:  # the fuzz itself may have emptied and deleted the playground
            continue
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        empty_bucket(s3, name)
        s3.delete_bucket(Bucket=name)


AUTH_VALUES = [
    "", "-1", "0", "²", "9" * 5000, "99999999999999999999", "abc", "%", "%C2%B2", "AWS4-HMAC-SHA256",
    "20261301T000000Z", "x/20261201/us-east-1/s3/aws4_request", "host;x-amz-date", "a;;b", "é",
]  # fmt: skip
PRESIGN_FIELDS = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                  "X-Amz-Signature", "X-Amz-Content-Sha256"]  # fmt: skip
RAW_HEADER_NAMES = ["x-amz-meta-v", "content-type", "content-disposition", "x-amz-tagging", "range", "if-match",
                    "x-amz-copy-source", "x-amz-checksum-crc32", "if-modified-since", "x-amz-object-attributes",
                    "x-amz-acl", "content-encoding", "expires"]  # fmt: skip
FRAMING_CUTS = [b"", b"\r\n", b";chunk-signature=", b"zz", b"0\r\n\r\n", b"ffffffffffffffffffff", b"\x00"]


def _mutated_presign(rng: random.Random, endpoint: str, bucket: str) -> str:
    from .signing import presign

    url = presign(f"{endpoint}/{bucket}/k", expires=rng.choice([1, 60, 3600]))
    base, _, query = url.partition("?")
    pairs = [p.split("=", 1) for p in query.split("&")]
    field = rng.choice(PRESIGN_FIELDS)
    value = quote(rng.choice(AUTH_VALUES), safe="%")
    pairs = [[k, value if k == field else v] for k, v in pairs]
    if field not in {k for k, _ in pairs} or rng.random() < 0.2:
        pairs.append([field, value])
    if rng.random() < 0.2:
        pairs = [p for p in pairs if p[0] != rng.choice(PRESIGN_FIELDS)]
    return base + "?" + "&".join(f"{k}={v}" for k, v in pairs)


def _mutated_sigv2(rng: random.Random, endpoint: str, bucket: str) -> str:
    fields = {"AWSAccessKeyId": rng.choice(["AKID", "nats-s3-test", ""]), "Expires": rng.choice(AUTH_VALUES),
              "Signature": rng.choice(["x", "", "%2B%2F%3D", "a" * 500])}  # fmt: skip
    return f"{endpoint}/{bucket}/k?" + "&".join(f"{k}={quote(v, safe='%')}" for k, v in fields.items())


def _mutated_authorization(rng: random.Random, headers: dict[str, str]) -> dict[str, str]:
    auth = headers["Authorization"]
    choice = rng.random()
    if choice < 0.25:
        auth = auth[: rng.randrange(len(auth))]
    elif choice < 0.5:
        name = rng.choice(["Credential", "SignedHeaders", "Signature"])
        auth = re.sub(rf"{name}=[^,]*", f"{name}={rng.choice(AUTH_VALUES)}", auth)
    elif choice < 0.75:
        auth = auth + ", " + rng.choice(["Signature=x", "Credential=y", "junk"])
    else:
        headers["X-Amz-Date"] = rng.choice(AUTH_VALUES)
    headers["Authorization"] = auth
    return headers


def _mutated_chunked(rng: random.Random, url: str) -> tuple[dict[str, str], bytes]:
    from .test_chunked import build_body
    from .test_streaming_uploads import prepare

    data = os.urandom(rng.choice([0, 10, 70_000]))
    mode = rng.choice(["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
    extra = {"x-amz-trailer": "x-amz-checksum-crc32"} if mode.endswith("TRAILER") else {}
    headers, signing = prepare(url, mode, data, extra)
    body = bytearray(build_body(data, 65536, signing=signing if mode.endswith("PAYLOAD") else None))
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(body) + 1)
        if rng.random() < 0.5:
            del body[at : at + rng.randint(1, 40)]
        else:
            body[at:at] = rng.choice(FRAMING_CUTS)
    if rng.random() < 0.3:
        headers["x-amz-decoded-content-length"] = rng.choice(AUTH_VALUES)
    return headers, bytes(body)


def test_seeded_fuzz_of_auth_fields_framing_and_header_bytes(s3, gateway) -> None:  # type: ignore[no-untyped-def]
    """The parsers the first fuzz does not reach: every SigV4 (header and presigned) and SigV2 field,
    aws-chunked framing, and header values that are not UTF-8, sent as raw bytes."""
    from .signing import raw_exchange

    rng = random.Random(SEED + 1)
    canary = f"fuzz-auth-canary-{SEED}"
    s3.create_bucket(Bucket=canary)
    s3.put_object(Bucket=canary, Key="k", Body=b"canary")
    before = snapshot(s3, canary)
    statuses: dict[int, int] = {}
    for n in range(REQUESTS):
        kind = rng.choice(["presign", "sigv2", "authorization", "chunked", "raw-bytes"])
        body = b""
        if kind == "presign":
            method, url, hdrs = "GET", _mutated_presign(rng, gateway.endpoint, canary), {}
        elif kind == "sigv2":
            method, url, hdrs = rng.choice(["GET", "PUT", "DELETE"]), _mutated_sigv2(rng, gateway.endpoint, canary), {}
        elif kind == "authorization":
            method = rng.choice(["GET", "PUT", "DELETE", "HEAD"])
            url = f"{gateway.endpoint}/{canary}/k"
            hdrs = _mutated_authorization(rng, sign(method, url))
        elif kind == "chunked":
            method, url = "PUT", f"{gateway.endpoint}/{canary}/chunked-{n}"
            hdrs, body = _mutated_chunked(rng, url)
        else:
            name = rng.choice(RAW_HEADER_NAMES)
            value = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 12)))
            method = rng.choice(["GET", "HEAD", "PUT"])
            path = f"/{canary}/raw-{n}" + rng.choice(["", "?attributes", "?tagging", "?acl"])
            status, got, data = raw_exchange(
                gateway.endpoint, method, path, {name: value}, b"x" if method == "PUT" else b""
            )
            statuses[status] = statuses.get(status, 0) + 1
            context = f"request {n}: raw {method} {path} {name}={value!r} -> {status} {data[:300]!r}"
            assert status < 500 or status in (501, 503), context
            assert b"x-amz-request-id" in got, context
            continue
        r = requests.request(method, url, data=body, headers=hdrs, timeout=30)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        context = f"request {n}: {kind} {method} {url[:300]} {hdrs} -> {r.status_code} {r.text[:300]}"
        assert r.status_code < 500 or r.status_code in (501, 503), context
        assert "x-amz-request-id" in r.headers, context
        if r.status_code >= 400 and method != "HEAD":
            root = etree.fromstring(r.content)
            assert root.tag == "Error" and root.findtext("Code"), context
        if kind in ("presign", "sigv2", "authorization") and r.status_code < 300:
            # A mutated signature can pass only where the mutation left the signed parts alone.
            assert method in ("GET", "HEAD") or kind == "authorization", context
    print(f"auth/framing fuzz statuses (seed {SEED + 1}): {dict(sorted(statuses.items()))}")
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{gateway.endpoint}/readyz", timeout=5).status_code == 200
    after = [entry for entry in snapshot(s3, canary) if entry[0] == "k"]
    assert after == [entry for entry in before if entry[0] == "k"]  # nothing changed the canary object
    from .conftest import empty_bucket

    empty_bucket(s3, canary)
    s3.delete_bucket(Bucket=canary)


def _mutated_policy(rng: random.Random, bucket: str) -> str:
    """A bucket policy, then broken or bent in one of many ways."""
    statement: dict[str, object] = {
        "Sid": "s1", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    }  # fmt: skip
    junk: list[object] = [None, 1, 1.5, True, [], {}, "", "*", "x" * 300, ["s3:*", 7], {"AWS": []}, "\u0000\ud7ff"]
    document: dict[str, object] = {"Version": "2012-10-17", "Statement": [statement]}
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(["doc", "statement", "condition"])
        if target == "doc":
            document[rng.choice(["Version", "Statement", "Id", "Extra"])] = rng.choice(junk)
        elif target == "statement":
            statement[rng.choice([*statement, "NotAction", "NotPrincipal", "NotResource"])] = rng.choice(junk)
        else:
            statement["Condition"] = {rng.choice(["StringLike", "ForAllValues:Bool", "NullIfExists", "DateLessThan",
                                                  "NumericEquals", "Foo"]): {rng.choice(["s3:prefix", "aws:x", "s3:no",
                                                  "s3:ExistingObjectTag/"]): rng.choice(junk)}}  # fmt: skip
    text = json.dumps(document)
    if rng.random() < 0.2:
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice(["", "{", "\\", '"', "]]]"]) + text[cut + 1 :]
    return text


def test_seeded_fuzz_of_bucket_policies(s3, gateway, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """Broken and odd policy documents: 204 or 400 MalformedPolicy, never a 500, and a refused one
    leaves the policy in place."""
    rng = random.Random(SEED)
    kept = None
    for n in range(300):
        text = _mutated_policy(rng, bucket)
        url = f"{gateway.endpoint}/{bucket}?policy"
        r = requests.put(url, data=text.encode(), headers=sign("PUT", url, body=text.encode()), timeout=30)
        assert r.status_code in (204, 400), f"policy {n}: {text[:200]!r} -> {r.status_code} {r.text[:300]}"
        if r.status_code == 204:
            kept = text
        else:
            assert "<Code>MalformedPolicy</Code>" in r.text or "<Code>InvalidArgument</Code>" in r.text, r.text
        got = requests.get(url, headers=sign("GET", url), timeout=30)
        assert (got.text if got.status_code == 200 else None) == kept, n
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=5).status_code == 200


def _mutated_notification(rng: random.Random) -> bytes:
    """A NotificationConfiguration, then bent: odd events, ARNs, filters, elements, truncation."""
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete", "s3:ObjectCreated:", "s3:*", "", "x" * 300,
              "s3:ObjectTagging:Put", "s3:LifecycleExpiration:*", "<", "s3:ObjectCreated:Put\u0000"]  # fmt: skip
    arns = [
        "arn:nats:::ev.a",
        "arn:nats:::",
        "arn:nats:::ev.*",
        "arn:nats:::$JS.API.X",
        "arn:nats:::a b",
        "arn:nats:::" + "t." * 200,
        "arn:aws:sns:us-east-1:1:t",
        "",
        "arn:nats:::ev.>",
        "arn:nats:::ev..b",
    ]
    names = ["prefix", "suffix", "Prefix", "SUFFIX", "middle", ""]
    rules = []
    for i in range(rng.randint(0, 4)):
        kind = rng.choice(["Topic", "Queue", "CloudFunction", "Topic"])
        rule = f"<{kind}Configuration>"
        if rng.random() < 0.7:
            rule += f"<Id>{rng.choice([f'r{i}', 'same', '', 'i' * 300])}</Id>"
        rule += f"<{kind}>{rng.choice(arns)}</{kind}>"
        rule += "".join(f"<Event>{rng.choice(events)}</Event>" for _ in range(rng.randint(0, 3)))
        if rng.random() < 0.5:
            filters = "".join(
                f"<FilterRule><Name>{rng.choice(names)}</Name><Value>{rng.choice(['a/', '.txt', '', 'v' * 1100])}"
                "</Value></FilterRule>"
                for _ in range(rng.randint(0, 3))
            )
            rule += f"<Filter><S3Key>{filters}</S3Key></Filter>"
        rules.append(rule + f"</{kind}Configuration>")
    text = f'<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{"".join(rules)}'
    text += "</NotificationConfiguration>"
    if rng.random() < 0.15:
        cut = rng.randrange(len(text))
        text = text[:cut] + rng.choice(["", "<", "&", "]]>"]) + text[cut + 1 :]
    return text.encode("utf-8", "surrogatepass")


def test_seeded_fuzz_of_notification_configurations(gateway, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """Broken and odd notification configurations: 200 or 400 (MalformedXML, InvalidArgument), never a
    500; a refused one leaves the configuration that was there."""
    rng = random.Random(SEED + 2)
    url = f"{gateway.endpoint}/{bucket}?notification"
    kept = requests.get(url, headers=sign("GET", url), timeout=30).text
    statuses: dict[int, int] = {}
    for n in range(300):
        body = _mutated_notification(rng)
        r = requests.put(url, data=body, headers=sign("PUT", url, body=body), timeout=30)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code in (200, 400), f"notification {n}: {body[:300]!r} -> {r.status_code} {r.text[:300]}"
        got = requests.get(url, headers=sign("GET", url), timeout=30)
        assert got.status_code == 200
        if r.status_code == 200:
            kept = got.text
        else:
            assert re.search(r"<Code>(MalformedXML|InvalidArgument)</Code>", r.text), r.text
            assert got.text == kept, n
    assert statuses.get(200, 0) >= 10 and statuses.get(400, 0) >= 100, statuses  # both sides were reached
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=5).status_code == 200
