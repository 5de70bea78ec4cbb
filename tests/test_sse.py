"""Server-side encryption against a real gateway over TLS, with boto3 (and the AWS CLI and minio-py): SSE-C,
SSE-S3 and SSE-KMS on PUT, GET, HEAD, copy and multipart; bucket default encryption; the errors S3
answers; and what NATS holds: no plaintext, and bytes changed there detected, never served."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from nats_s3.store import naming

from .conftest import empty_bucket
from .signing import signed_request
from .support import ACCESS_KEY, SECRET_KEY, GatewayProcess, self_signed_cert

KEY_A = bytes(range(32))
KEY_B = hashlib.sha256(b"another customer key").digest()
MASTER_K1 = base64.b64encode(hashlib.sha256(b"master k1").digest()).decode()
MASTER_K2 = base64.b64encode(hashlib.sha256(b"master k2").digest()).decode()
MASTER_K3 = base64.b64encode(hashlib.sha256(b"master k3").digest()).decode()
MiB = 1024 * 1024


def ssec(key: bytes = KEY_A) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_ssec(key: bytes = KEY_A) -> dict[str, Any]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def c_headers(key: bytes = KEY_A, md5: bool = True) -> dict[str, str]:
    headers = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
    }
    if md5:
        headers["x-amz-server-side-encryption-customer-key-MD5"] = base64.b64encode(hashlib.md5(key).digest()).decode()
    return headers


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"].get("Code", ""), err["Error"].get("Message", "")


def write_keys(path: Path, keys: list[tuple[str, str]], default: str) -> Path:
    path.write_text(json.dumps({"keys": [{"id": i, "key": k, "default": i == default} for i, k in keys]}))
    return path


def tls_client(endpoint: str, cert: Path):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        verify=str(cert),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("sse-tls"))


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keys(tmp_path_factory.mktemp("sse-keys") / "keys.json", [("k1", MASTER_K1), ("k2", MASTER_K2)], "k1")


@pytest.fixture(scope="module")
def sse_gateway(
    nats_url: str, credentials_file: Path, keys_file: Path, tls_files: tuple[Path, Path]
) -> Iterator[GatewayProcess]:
    cert, key = tls_files
    extra = ["--tls.cert", str(cert), "--tls.key", str(key), "--sse.keys", str(keys_file)]
    gw = GatewayProcess(credentials_file, nats_url, extra=extra)
    gw.start(health_url=f"https://localhost:{gw.port}/readyz", verify=str(cert))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def endpoint(sse_gateway: GatewayProcess) -> str:
    return f"https://localhost:{sse_gateway.port}"


@pytest.fixture(scope="module")
def ss3(endpoint: str, tls_files: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    return tls_client(endpoint, tls_files[0])


@pytest.fixture
def sbucket(ss3) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"sse-{uuid.uuid4().hex[:12]}"
    ss3.create_bucket(Bucket=name)
    yield name
    for upload in ss3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        ss3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    empty_bucket(ss3, name)
    ss3.delete_bucket(Bucket=name)


# ---- SSE-C -------------------------------------------------------------------------------------


def test_sse_c_round_trip_and_its_errors(ss3, sbucket: str, endpoint: str, tls_files) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(700_000)  # three chunks
    put = ss3.put_object(Bucket=sbucket, Key="c", Body=data, **ssec())
    key_md5 = base64.b64encode(hashlib.md5(KEY_A).digest()).decode()
    assert put["SSECustomerAlgorithm"] == "AES256" and put["SSECustomerKeyMD5"] == key_md5
    assert "ServerSideEncryption" not in put
    # S3: an SSE-C object's ETag is not its MD5 (and the same body sealed again gets another).
    etag = put["ETag"].strip('"')
    assert len(etag) == 32 and etag != hashlib.md5(data).hexdigest()
    again = ss3.put_object(Bucket=sbucket, Key="c2", Body=data, **ssec())
    assert again["ETag"] != put["ETag"]

    got = ss3.get_object(Bucket=sbucket, Key="c", **ssec())
    assert got["Body"].read() == data and got["ETag"] == put["ETag"]
    assert got["SSECustomerAlgorithm"] == "AES256" and got["SSECustomerKeyMD5"] == key_md5
    for first, last in [(0, 0), (262_140, 262_200), (500_000, 699_999), (699_999, 699_999)]:
        part = ss3.get_object(Bucket=sbucket, Key="c", Range=f"bytes={first}-{last}", **ssec())
        assert part["Body"].read() == data[first : last + 1]
    head = ss3.head_object(Bucket=sbucket, Key="c", **ssec())
    assert head["ContentLength"] == len(data) and head["SSECustomerKeyMD5"] == key_md5
    listed = ss3.list_objects_v2(Bucket=sbucket)["Contents"]
    assert {(o["Key"], o["Size"], o["ETag"]) for o in listed} >= {("c", len(data), put["ETag"])}

    # Reads without the key, with another, or with SSE-C on a plaintext object: S3's answers.
    assert error_of(lambda: ss3.get_object(Bucket=sbucket, Key="c"))[:2] == (400, "InvalidRequest")
    assert error_of(lambda: ss3.head_object(Bucket=sbucket, Key="c"))[0] == 400
    status, code, message = error_of(lambda: ss3.get_object(Bucket=sbucket, Key="c", **ssec(KEY_B)))
    assert (status, code) == (403, "AccessDenied") and "correct secret key" in message
    assert error_of(lambda: ss3.head_object(Bucket=sbucket, Key="c", **ssec(KEY_B)))[0] == 403
    ss3.put_object(Bucket=sbucket, Key="plain", Body=b"plain")
    status, code, message = error_of(lambda: ss3.get_object(Bucket=sbucket, Key="plain", **ssec()))
    assert (status, code) == (400, "InvalidRequest") and "not applicable" in message
    # A read needs the key, not its MD5 (S3 reads without one); a short key on a read is a wrong key.
    url = f"{endpoint}/{sbucket}/c"
    verify = str(tls_files[0])
    assert signed_request("GET", url, headers=c_headers(md5=False), verify=verify).content == data
    assert signed_request("GET", url, headers=c_headers(b"short", md5=True), verify=verify).status_code == 403
    # Deleting needs no key.
    ss3.delete_object(Bucket=sbucket, Key="c2")


@pytest.mark.parametrize(
    ("headers", "code", "words"),
    [
        ({"x-amz-server-side-encryption-customer-key": base64.b64encode(KEY_A).decode()}, "InvalidArgument",
         "valid encryption algorithm"),
        ({**c_headers(), "x-amz-server-side-encryption-customer-algorithm": "AES128"},
         "InvalidEncryptionAlgorithmError", "Supported value: AES256"),
        ({"x-amz-server-side-encryption-customer-algorithm": "AES256"}, "InvalidArgument", "appropriate secret key"),
        ({**c_headers(), "x-amz-server-side-encryption-customer-key-MD5": "AAAAAAAAAAAAAAAAAAAAAA=="},
         "InvalidArgument", "calculated MD5 hash"),
        (c_headers(b"sixteen byte key"), "InvalidArgument", "secret key was invalid"),
        (c_headers(md5=False), "InvalidArgument", "MD5"),
        ({**c_headers(), "x-amz-server-side-encryption": "AES256"}, "InvalidArgument", "incompatible"),
        ({"x-amz-server-side-encryption": "aes:kms"}, "InvalidArgument", "not supported"),
        ({"x-amz-server-side-encryption": ""}, "InvalidArgument", "not supported"),
        ({"x-amz-server-side-encryption": "AES256", "x-amz-server-side-encryption-aws-kms-key-id": "k1"},
         "InvalidArgument", "requires HTTP header x-amz-server-side-encryption : aws:kms"),
        ({"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": "nope"},
         "KMS.NotFoundException", "Invalid keyId 'nope'"),
        ({"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-context": "not base64!"},
         "InvalidArgument", "string-string map"),
        ({"x-amz-server-side-encryption": "aws:kms:dsse"}, "NotImplemented", "aws:kms:dsse"),
    ],
)  # fmt: skip
def test_put_with_bad_encryption_headers_is_refused_and_stores_nothing(  # type: ignore[no-untyped-def]
    ss3, sbucket: str, endpoint: str, tls_files, headers: dict[str, str], code: str, words: str
) -> None:
    r = signed_request("PUT", f"{endpoint}/{sbucket}/bad", body=b"data", headers=headers, verify=str(tls_files[0]))
    assert r.status_code in (400, 501) and f"<Code>{code}</Code>" in r.text and words in r.text, r.text
    assert ss3.list_objects_v2(Bucket=sbucket).get("KeyCount") == 0


def test_sse_headers_on_a_read_are_refused(ss3, sbucket: str, endpoint: str, tls_files) -> None:  # type: ignore[no-untyped-def]
    ss3.put_object(Bucket=sbucket, Key="s", Body=b"x", ServerSideEncryption="AES256")
    for method in ("GET", "HEAD"):
        r = signed_request(
            method, f"{endpoint}/{sbucket}/s", headers={"x-amz-server-side-encryption": "AES256"},
            verify=str(tls_files[0]),
        )  # fmt: skip
        assert r.status_code == 400, method


# ---- SSE-S3 and SSE-KMS --------------------------------------------------------------------------


def test_sse_s3_and_sse_kms_round_trips(ss3, sbucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(300_000)
    md5 = hashlib.md5(data).hexdigest()
    put = ss3.put_object(Bucket=sbucket, Key="s3", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256" and put["ETag"] == f'"{md5}"'  # SSE-S3 keeps the MD5 ETag
    got = ss3.get_object(Bucket=sbucket, Key="s3")
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in got

    context = base64.b64encode(json.dumps({"project": "nats"}).encode()).decode()
    put = ss3.put_object(
        Bucket=sbucket, Key="kms", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId="k2",
        SSEKMSEncryptionContext=context,
    )  # fmt: skip
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "k2"
    assert put["SSEKMSEncryptionContext"] == context
    assert put["ETag"] != f'"{md5}"'  # S3: SSE-KMS ETags are not the MD5
    head = ss3.head_object(Bucket=sbucket, Key="kms")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "k2"
    assert "SSEKMSEncryptionContext" not in head  # GET and HEAD never return the context
    assert ss3.get_object(Bucket=sbucket, Key="kms", Range="bytes=100-199")["Body"].read() == data[100:200]
    # The key may be named by ARN or alias; without one, the default key seals it.
    arn = "arn:aws:kms:us-east-1:000000000000:key/k2"
    assert (
        ss3.put_object(Bucket=sbucket, Key="arn", Body=b"a", ServerSideEncryption="aws:kms", SSEKMSKeyId=arn)[
            "SSEKMSKeyId"
        ]
        == "k2"
    )
    plain_kms = ss3.put_object(Bucket=sbucket, Key="dflt", Body=b"a", ServerSideEncryption="aws:kms")
    assert plain_kms["SSEKMSKeyId"] == "k1"
    # Checksums are of the plaintext, and verified as for any object.
    put = ss3.put_object(
        Bucket=sbucket, Key="sum", Body=data, ServerSideEncryption="AES256", ChecksumAlgorithm="SHA256"
    )
    got = ss3.get_object(Bucket=sbucket, Key="sum", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode() == put["ChecksumSHA256"]
    bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    assert (
        error_of(
            lambda: ss3.put_object(
                Bucket=sbucket, Key="bad", Body=data, ServerSideEncryption="AES256", ContentMD5=bad_md5
            )
        )[1]
        == "BadDigest"
    )
    # Versions keep their own keys.
    ss3.put_bucket_versioning(Bucket=sbucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = ss3.put_object(Bucket=sbucket, Key="v", Body=b"one", **ssec())["VersionId"]
    v2 = ss3.put_object(Bucket=sbucket, Key="v", Body=b"two", **ssec(KEY_B))["VersionId"]
    v3 = ss3.put_object(Bucket=sbucket, Key="v", Body=b"three", ServerSideEncryption="aws:kms")["VersionId"]
    assert ss3.get_object(Bucket=sbucket, Key="v", VersionId=v1, **ssec())["Body"].read() == b"one"
    assert ss3.get_object(Bucket=sbucket, Key="v", VersionId=v2, **ssec(KEY_B))["Body"].read() == b"two"
    assert error_of(lambda: ss3.get_object(Bucket=sbucket, Key="v", VersionId=v2, **ssec()))[0] == 403
    assert ss3.get_object(Bucket=sbucket, Key="v", VersionId=v3)["Body"].read() == b"three"
    versions = ss3.list_object_versions(Bucket=sbucket, Prefix="v")["Versions"]
    assert sorted(v["Size"] for v in versions) == [3, 3, 5]


# ---- bucket default encryption -----------------------------------------------------------------------

KMS_K2_BLOCKING_SSE_C = {
    "Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k2"},
        "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]},
    }]
}  # fmt: skip


def test_bucket_default_encryption(ss3, sbucket: str, endpoint: str, tls_files) -> None:  # type: ignore[no-untyped-def]
    status, code, _ = error_of(lambda: ss3.get_bucket_encryption(Bucket=sbucket))
    assert (status, code) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    ss3.put_object(Bucket=sbucket, Key="before", Body=b"before")
    ss3.put_bucket_encryption(
        Bucket=sbucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    rules = ss3.get_bucket_encryption(Bucket=sbucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]
    put = ss3.put_object(Bucket=sbucket, Key="after", Body=b"after")
    assert put["ServerSideEncryption"] == "AES256"
    assert ss3.head_object(Bucket=sbucket, Key="after")["ServerSideEncryption"] == "AES256"
    assert "ServerSideEncryption" not in ss3.head_object(Bucket=sbucket, Key="before")  # older ones stay as they were
    # A request's own choice wins over the default; copies and uploads take the default too.
    assert "ServerSideEncryption" not in ss3.put_object(Bucket=sbucket, Key="c", Body=b"c", **ssec())
    assert (
        ss3.copy_object(Bucket=sbucket, Key="copy", CopySource={"Bucket": sbucket, "Key": "before"})[
            "ServerSideEncryption"
        ]
        == "AES256"
    )
    # Copying an object onto itself is allowed where the bucket has a default (it may apply it).
    ss3.copy_object(Bucket=sbucket, Key="before", CopySource={"Bucket": sbucket, "Key": "before"})
    assert ss3.head_object(Bucket=sbucket, Key="before")["ServerSideEncryption"] == "AES256"
    mp = ss3.create_multipart_upload(Bucket=sbucket, Key="mp")
    assert mp["ServerSideEncryption"] == "AES256"
    ss3.abort_multipart_upload(Bucket=sbucket, Key="mp", UploadId=mp["UploadId"])

    ss3.put_bucket_encryption(Bucket=sbucket, ServerSideEncryptionConfiguration=KMS_K2_BLOCKING_SSE_C)
    put = ss3.put_object(Bucket=sbucket, Key="kms", Body=b"kms")
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == "k2"
    status, code, message = error_of(lambda: ss3.put_object(Bucket=sbucket, Key="blocked", Body=b"x", **ssec()))
    assert (status, code) == (403, "AccessDenied") and "SSE-C" in message
    assert ss3.get_object(Bucket=sbucket, Key="c", **ssec())["Body"].read() == b"c"  # still readable
    ss3.delete_bucket_encryption(Bucket=sbucket)
    ss3.delete_bucket_encryption(Bucket=sbucket)  # 204 again
    assert error_of(lambda: ss3.get_bucket_encryption(Bucket=sbucket))[0] == 404
    assert "ServerSideEncryption" not in ss3.put_object(Bucket=sbucket, Key="plain", Body=b"p")

    verify = str(tls_files[0])
    url = f"{endpoint}/{sbucket}?encryption"

    def put_config(xml: str) -> requests.Response:
        body = xml.encode()
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        return signed_request("PUT", url, body=body, headers={"Content-MD5": md5}, verify=verify)

    rule = (
        "<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{}</SSEAlgorithm>{}"
        "</ApplyServerSideEncryptionByDefault></Rule>"
    )
    for xml, code in [
        ("<ServerSideEncryptionConfiguration></ServerSideEncryptionConfiguration>", "MalformedXML"),
        (f"<ServerSideEncryptionConfiguration>{rule.format('AES256', '') * 2}</ServerSideEncryptionConfiguration>",
         "MalformedXML"),
        (f"<ServerSideEncryptionConfiguration>{rule.format('AES256', '<KMSMasterKeyID>k1</KMSMasterKeyID>')}"
         "</ServerSideEncryptionConfiguration>", "InvalidArgument"),
        (f"<ServerSideEncryptionConfiguration>{rule.format('AES512', '')}</ServerSideEncryptionConfiguration>",
         "InvalidArgument"),
        (f"<ServerSideEncryptionConfiguration>{rule.format('aws:kms', '<KMSMasterKeyID>nope</KMSMasterKeyID>')}"
         "</ServerSideEncryptionConfiguration>", "KMS.NotFoundException"),
        ("<ServerSideEncryptionConfiguration><Rule><BlockedEncryptionTypes><EncryptionType>SSE-X</EncryptionType>"
         "</BlockedEncryptionTypes></Rule></ServerSideEncryptionConfiguration>", "InvalidArgument"),
    ]:  # fmt: skip
        r = put_config(xml)
        assert r.status_code == 400 and f"<Code>{code}</Code>" in r.text, (xml, r.text)
    assert error_of(lambda: ss3.get_bucket_encryption(Bucket=sbucket))[0] == 404  # nothing was set
    missing = signed_request("GET", f"{endpoint}/no-such-sse-bucket?encryption", verify=verify)
    assert missing.status_code == 404 and "NoSuchBucket" in missing.text


# ---- multipart --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_on_complete", [True, False])
def test_sse_c_multipart(ss3, sbucket: str, key_on_complete: bool) -> None:  # type: ignore[no-untyped-def]
    parts = [os.urandom(5 * MiB + 1), os.urandom(5 * MiB), b"tail"]
    mp = ss3.create_multipart_upload(Bucket=sbucket, Key="m", **ssec())
    assert mp["SSECustomerAlgorithm"] == "AES256"
    upload_id = mp["UploadId"]

    def upload(number: int, body: bytes, **kw: Any) -> dict[str, Any]:
        return ss3.upload_part(Bucket=sbucket, Key="m", UploadId=upload_id, PartNumber=number, Body=body, **kw)  # type: ignore[no-any-return]

    # Each part repeats the upload's key (S3's answers when it does not).
    assert error_of(lambda: upload(1, parts[0]))[:2] == (400, "InvalidRequest")
    status, code, message = error_of(lambda: upload(1, parts[0], **ssec(KEY_B)))
    assert (status, code) == (400, "InvalidRequest") and "did not match" in message
    listed = []
    for number, body in enumerate(parts, 1):
        done = upload(number, body, **ssec())
        assert done["SSECustomerKeyMD5"] and done["ETag"].strip('"') != hashlib.md5(body).hexdigest()
        listed.append({"PartNumber": number, "ETag": done["ETag"]})
    lp = ss3.list_parts(Bucket=sbucket, Key="m", UploadId=upload_id)
    assert [p["Size"] for p in lp["Parts"]] == [len(p) for p in parts]
    assert lp["ResponseMetadata"]["HTTPHeaders"]["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    complete_kw = ssec() if key_on_complete else {}
    ss3.complete_multipart_upload(
        Bucket=sbucket, Key="m", UploadId=upload_id, MultipartUpload={"Parts": listed}, **complete_kw
    )
    whole = b"".join(parts)
    got = ss3.get_object(Bucket=sbucket, Key="m", **ssec())
    assert got["Body"].read() == whole and got["ETag"].endswith('-3"')
    across = (5 * MiB - 10, 5 * MiB + 20)
    ranged = ss3.get_object(Bucket=sbucket, Key="m", Range=f"bytes={across[0]}-{across[1]}", **ssec())
    assert ranged["Body"].read() == whole[across[0] : across[1] + 1]
    assert ss3.get_object(Bucket=sbucket, Key="m", PartNumber=3, **ssec())["Body"].read() == b"tail"
    assert error_of(lambda: ss3.get_object(Bucket=sbucket, Key="m", **ssec(KEY_B)))[0] == 403
    assert ss3.list_objects_v2(Bucket=sbucket)["Contents"][0]["Size"] == len(whole)
    # GetObjectAttributes: the key holder's only, and it reports the encryption.
    assert (
        error_of(lambda: ss3.get_object_attributes(Bucket=sbucket, Key="m", ObjectAttributes=["ObjectSize"]))[0] == 400
    )
    # (botocore does not base64 the key of this call for us, as it does for the others)
    encoded = {
        "SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(KEY_A).decode(),
        "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(KEY_A).digest()).decode(),
    }  # fmt: skip
    attrs = ss3.get_object_attributes(Bucket=sbucket, Key="m", ObjectAttributes=["ObjectSize", "ETag"], **encoded)
    assert attrs["ObjectSize"] == len(whole)
    assert attrs["ResponseMetadata"]["HTTPHeaders"]["x-amz-server-side-encryption-customer-algorithm"] == "AES256"


def test_sse_kms_multipart_and_part_copy(ss3, sbucket: str) -> None:  # type: ignore[no-untyped-def]
    source = os.urandom(6 * MiB)
    ss3.put_object(Bucket=sbucket, Key="src", Body=source, **ssec())
    mp = ss3.create_multipart_upload(Bucket=sbucket, Key="k", ServerSideEncryption="aws:kms", SSEKMSKeyId="k2")
    assert mp["ServerSideEncryption"] == "aws:kms" and mp["SSEKMSKeyId"] == "k2"
    upload_id = mp["UploadId"]
    # An SSE-C key on a part of an upload that did not start with one: refused.
    status, _, message = error_of(
        lambda: ss3.upload_part(Bucket=sbucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x", **ssec())
    )
    assert status == 400 and "encryption parameters" in message
    # Part 1 copied out of the SSE-C source (its key needed), part 2 uploaded.
    assert error_of(
        lambda: ss3.upload_part_copy(
            Bucket=sbucket, Key="k", UploadId=upload_id, PartNumber=1, CopySource={"Bucket": sbucket, "Key": "src"}
        )
    )[:2] == (400, "InvalidRequest")
    copied = ss3.upload_part_copy(
        Bucket=sbucket, Key="k", UploadId=upload_id, PartNumber=1, CopySource={"Bucket": sbucket, "Key": "src"},
        CopySourceRange=f"bytes=0-{5 * MiB - 1}", **copy_ssec(),
    )  # fmt: skip
    assert copied["ServerSideEncryption"] == "aws:kms"
    second = ss3.upload_part(Bucket=sbucket, Key="k", UploadId=upload_id, PartNumber=2, Body=b"end")
    parts = [{"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": second["ETag"]}]
    done = ss3.complete_multipart_upload(Bucket=sbucket, Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert done["ServerSideEncryption"] == "aws:kms" and done["SSEKMSKeyId"] == "k2"
    got = ss3.get_object(Bucket=sbucket, Key="k")
    assert got["Body"].read() == source[: 5 * MiB] + b"end" and got["SSEKMSKeyId"] == "k2"


# ---- copy between modes ------------------------------------------------------------------------------

MODES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # mode -> (what a write sends, what a read of it sends, what a copy out of it sends)
    "plain": ({}, {}, {}),
    "sse-c": (ssec(), ssec(), copy_ssec()),
    "sse-c-b": (ssec(KEY_B), ssec(KEY_B), copy_ssec(KEY_B)),
    "sse-s3": ({"ServerSideEncryption": "AES256"}, {}, {}),
    "sse-kms": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k2"}, {}, {}),
}


def test_copy_between_every_pair_of_modes(ss3, sbucket: str) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(400_000)
    for source_mode, (write, _, _) in MODES.items():
        ss3.put_object(Bucket=sbucket, Key=f"src-{source_mode}", Body=data, **write)
    for source_mode, (_, _, copy_from) in MODES.items():
        for target_mode, (write, read, _) in MODES.items():
            target = f"{source_mode}-to-{target_mode}"
            result = ss3.copy_object(
                Bucket=sbucket, Key=target, CopySource={"Bucket": sbucket, "Key": f"src-{source_mode}"},
                **copy_from, **write,
            )  # fmt: skip
            assert result.get("ServerSideEncryption") == write.get("ServerSideEncryption"), target
            got = ss3.get_object(Bucket=sbucket, Key=target, **read)
            assert got["Body"].read() == data, target
    # A copy out of an SSE-C source needs its key: without it 400, with another 403.
    src = {"Bucket": sbucket, "Key": "src-sse-c"}
    assert error_of(lambda: ss3.copy_object(Bucket=sbucket, Key="x", CopySource=src))[:2] == (400, "InvalidRequest")
    assert error_of(lambda: ss3.copy_object(Bucket=sbucket, Key="x", CopySource=src, **copy_ssec(KEY_B)))[0] == 403
    # A copy onto itself that changes only the encryption is allowed (and re-keys it).
    ss3.copy_object(Bucket=sbucket, Key="src-sse-c", CopySource=src, **copy_ssec(), **ssec(KEY_B))
    assert ss3.get_object(Bucket=sbucket, Key="src-sse-c", **ssec(KEY_B))["Body"].read() == data
    plain = {"Bucket": sbucket, "Key": "src-plain"}
    assert error_of(lambda: ss3.copy_object(Bucket=sbucket, Key="src-plain", CopySource=plain))[1] == "InvalidRequest"


# ---- what NATS holds -------------------------------------------------------------------------------


def stream_messages(nats_url: str, bucket: str) -> list[tuple[str, bytes]]:
    """Every message of the bucket's stream: (subject, data)."""
    import nats

    async def read() -> list[tuple[str, bytes]]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            stream = naming.stream_name(naming.nats_bucket(bucket))
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                try:
                    msg = await js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:
                    continue
                out.append((msg.subject or "", msg.data or b""))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def marked_body(size: int) -> bytes:
    line = b"PLAINTEXT-MARK-%07d|"
    return b"".join(line % i for i in range(size // 23 + 1))[:size]


def test_nats_holds_no_plaintext_of_encrypted_objects(ss3, sbucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    body = marked_body(600_000)
    md5_hex = hashlib.md5(body).hexdigest().encode()
    sha_b64 = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=")
    for mode, (write, _, _) in MODES.items():
        if mode != "plain":
            ss3.put_object(Bucket=sbucket, Key=f"obj-{mode}", Body=body, **write)
    mp = ss3.create_multipart_upload(Bucket=sbucket, Key="mp", **ssec())
    part = ss3.upload_part(Bucket=sbucket, Key="mp", UploadId=mp["UploadId"], PartNumber=1, Body=body, **ssec())
    ss3.complete_multipart_upload(
        Bucket=sbucket, Key="mp", UploadId=mp["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    messages = stream_messages(nats_url, sbucket)
    assert len(messages) > 10
    for subject, data in messages:
        assert b"PLAINTEXT-MARK" not in data, subject
        assert sha_b64 not in data, subject  # no plaintext digest either
        if b"AES256" not in data:  # only SSE-S3 metas may show the MD5, as S3's ETag for them does
            assert md5_hex not in data, subject
    # The control: a plaintext object's bytes are plainly there, so the search above could see them.
    ss3.put_object(Bucket=sbucket, Key="obj-plain", Body=body)
    assert any(b"PLAINTEXT-MARK" in data for _, data in stream_messages(nats_url, sbucket))
    # Every encrypted object still reads back.
    for mode, (_, read, _) in MODES.items():
        assert ss3.get_object(Bucket=sbucket, Key=f"obj-{mode}", **read)["Body"].read() == body, mode
    assert ss3.get_object(Bucket=sbucket, Key="mp", **ssec())["Body"].read() == body


class _Meta:
    """Rewrites an object's meta in NATS by hand, as someone with access to the stream could."""

    def __init__(self, nats_url: str, bucket: str, key: str) -> None:
        self.nats_url = nats_url
        self.nb = naming.nats_bucket(bucket)
        self.stream = naming.stream_name(self.nb)
        self.subject = naming.meta_subject(self.nb, key)

    def run(self, work: Callable[[Any], Any]) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect(self.nats_url)
            try:
                return await work(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    def read(self) -> dict[str, Any]:
        async def work(js: Any) -> dict[str, Any]:
            msg = await js.get_last_msg(self.stream, self.subject)
            return json.loads(msg.data)  # type: ignore[no-any-return]

        return self.run(work)  # type: ignore[no-any-return]

    def write(self, doc: dict[str, Any]) -> None:
        async def work(js: Any) -> None:
            await js.publish(self.subject, json.dumps(doc).encode(), headers={"Nats-Rollup": "sub"})

        self.run(work)

    def delete_message(self, seq: int) -> None:
        async def work(js: Any) -> None:
            await js.delete_msg(self.stream, seq)

        self.run(work)

    def forge_chunk(self, nuid: str, data: bytes) -> int:
        async def work(js: Any) -> int:
            return int((await js.publish(naming.chunk_subject(self.nb, nuid), data)).seq)

        return self.run(work)  # type: ignore[no-any-return]


def test_bytes_changed_in_nats_are_detected_not_served(  # type: ignore[no-untyped-def]
    ss3, sbucket: str, nats_url: str, endpoint: str, tls_files, sse_gateway: GatewayProcess
) -> None:
    data = os.urandom(700_000)  # chunks 0, 1, 2
    ss3.put_object(Bucket=sbucket, Key="t", Body=data, ServerSideEncryption="AES256")
    ss3.put_object(Bucket=sbucket, Key="other", Body=os.urandom(700_000), ServerSideEncryption="AES256")
    meta = _Meta(nats_url, sbucket, "t")
    original = meta.read()
    other = _Meta(nats_url, sbucket, "other").read()
    first_seq = int(original["metadata"]["s3-seqs"].split("+")[0])
    chunk = 262_144
    in_chunk_1 = f"bytes={chunk + 10}-{chunk + 100}"

    def with_seqs(runs: str, **changes: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(original))
        doc["metadata"]["s3-seqs"] = runs
        doc.update(changes)
        return doc

    def get(range_: str | None = None) -> requests.Response:
        headers = {"Range": range_} if range_ else {}
        return signed_request("GET", f"{endpoint}/{sbucket}/t", headers=headers, verify=str(tls_files[0]), stream=True)

    # 1. Chunk 1 replaced by forged bytes of the same length, on the object's own subject.
    forged = meta.forge_chunk(original["nuid"], os.urandom(chunk + 16))
    meta.write(with_seqs(f"{first_seq}+1,{forged}+1,{first_seq + 2}+1"))
    r = get(in_chunk_1)
    assert r.status_code == 500 and "InternalError" in r.text
    # 2. Chunk 1 taken from another object (the same mode, another data key).
    other_seq = int(other["metadata"]["s3-seqs"].split("+")[0]) + 1
    meta.write(with_seqs(f"{first_seq}+1,{other_seq}+1,{first_seq + 2}+1"))
    assert get(in_chunk_1).status_code == 500
    # 3. Truncated: the meta says two chunks and fewer bytes; the layout no longer matches its MAC.
    meta.write(with_seqs(f"{first_seq}+2", size=2 * chunk, chunks=2))
    assert get("bytes=0-10").status_code == 500
    assert error_of(lambda: ss3.get_object(Bucket=sbucket, Key="t"))[0] == 500
    # 4. The wrapped data key changed.
    doc = json.loads(json.dumps(original))
    envelope = json.loads(doc["metadata"]["s3-sse"])
    wrapped = bytearray(base64.b64decode(envelope["wrapped"]))
    wrapped[-1] ^= 1
    envelope["wrapped"] = base64.b64encode(bytes(wrapped)).decode()
    doc["metadata"]["s3-sse"] = json.dumps(envelope)
    meta.write(doc)
    assert get().status_code == 500
    # Put back as it was: it reads whole again (nothing is remembered from the tampering).
    meta.write(original)
    assert ss3.get_object(Bucket=sbucket, Key="t")["Body"].read() == data
    # 5. Chunk 1 deleted from the stream: a whole read gets chunk 2 where chunk 1 should be. Chunk 0 may be
    # on its way by then, so the answer is a 500, or a 200 cut short: a prefix of the truth, never more.
    meta.delete_message(first_seq + 1)
    r = get()
    if r.status_code == 200:
        received = b""
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
            for piece in r.iter_content(65536):
                received += piece
        assert data.startswith(received) and len(received) < len(data)
    else:
        assert r.status_code == 500
    log = sse_gateway.log_text()
    assert "does not open under its key" in log and "layout does not match its MAC" in log


# ---- without TLS, without keys ----------------------------------------------------------------------------


def test_without_tls_or_key_file_encryption_is_refused_clearly(s3, bucket: str, gateway: GatewayProcess) -> None:  # type: ignore[no-untyped-def]
    status, code, message = error_of(lambda: s3.put_object(Bucket=bucket, Key="c", Body=b"x", **ssec()))
    assert (status, code) == (400, "InvalidRequest") and "secure connection" in message
    for kw in ({"ServerSideEncryption": "AES256"}, {"ServerSideEncryption": "aws:kms"}):
        status, code, message = error_of(lambda kw=kw: s3.put_object(Bucket=bucket, Key="s", Body=b"x", **kw))  # type: ignore[misc]
        assert (status, code) == (501, "NotImplemented") and "--sse.keys" in message
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    assert error_of(lambda: s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=config))[0] == 501
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # nothing stored in plaintext instead


def test_sse_c_over_http_where_allowed(nats_url: str, credentials_file: Path, tmp_path: Path) -> None:
    gw = GatewayProcess(credentials_file, nats_url, extra=["--sse.allow-http", "true"]).start()
    try:
        client = boto3.client(
            "s3", endpoint_url=gw.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )  # fmt: skip
        name = f"sse-http-{uuid.uuid4().hex[:8]}"
        client.create_bucket(Bucket=name)
        client.put_object(Bucket=name, Key="c", Body=b"over a proxy's TLS", **ssec())
        assert client.get_object(Bucket=name, Key="c", **ssec())["Body"].read() == b"over a proxy's TLS"
        client.delete_object(Bucket=name, Key="c")
        client.delete_bucket(Bucket=name)
    finally:
        gw.stop()


def test_master_keys_removed_rotated_and_restored(nats_url: str, credentials_file: Path, tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.json", [("k1", MASTER_K1), ("k2", MASTER_K2)], "k1")
    args = ["--sse.allow-http", "true"]

    def start(with_keys: bool) -> GatewayProcess:
        return GatewayProcess(
            credentials_file, nats_url, extra=args + (["--sse.keys", str(keys)] if with_keys else [])
        ).start()

    def client(gw: GatewayProcess):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3", endpoint_url=gw.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )  # fmt: skip

    name = f"sse-keys-{uuid.uuid4().hex[:8]}"
    gw = start(True)
    try:
        c = client(gw)
        c.create_bucket(Bucket=name)
        c.put_object(Bucket=name, Key="s3", Body=b"sse-s3 body", ServerSideEncryption="AES256")
        c.put_object(Bucket=name, Key="kms", Body=b"kms body", ServerSideEncryption="aws:kms", SSEKMSKeyId="k2")
        c.put_object(Bucket=name, Key="plain", Body=b"plain body")
    finally:
        gw.stop()
    gw = start(False)  # the key file is gone
    try:
        c = client(gw)
        for key in ("s3", "kms"):
            status, code, message = error_of(lambda key=key: c.get_object(Bucket=name, Key=key))  # type: ignore[misc]
            assert (status, code) == (400, "KMS.NotFoundException") and "--sse.keys" in message, message
        assert c.get_object(Bucket=name, Key="plain")["Body"].read() == b"plain body"
    finally:
        gw.stop()
    gw = start(True)  # and back
    try:
        c = client(gw)
        assert c.get_object(Bucket=name, Key="s3")["Body"].read() == b"sse-s3 body"
        assert c.get_object(Bucket=name, Key="kms")["Body"].read() == b"kms body"
        # Rotation: a new default key, read again on SIGHUP; what the old ones sealed stays readable.
        write_keys(keys, [("k1", MASTER_K1), ("k2", MASTER_K2), ("k3", MASTER_K3)], "k3")
        assert gw.proc is not None
        gw.proc.send_signal(1)  # SIGHUP

        def sealed_with() -> str:
            return c.put_object(Bucket=name, Key="new", Body=b"new", ServerSideEncryption="aws:kms")["SSEKMSKeyId"]  # type: ignore[no-any-return]

        from .support import eventually

        assert eventually(sealed_with, lambda key_id: key_id == "k3", timeout=10) == "k3"
        assert c.get_object(Bucket=name, Key="kms")["Body"].read() == b"kms body"
        # A key taken out of the file: its objects unreadable, with the reason; put back: readable.
        write_keys(keys, [("k1", MASTER_K1), ("k3", MASTER_K3)], "k3")
        gw.proc.send_signal(1)
        status, _, message = eventually(
            lambda: error_of(lambda: c.get_object(Bucket=name, Key="kms")) if _fails(c, name) else (200, "", ""),
            lambda got: got[0] == 400,
            timeout=10,
        )
        assert status == 400 and "'k2'" in message
        write_keys(keys, [("k1", MASTER_K1), ("k2", MASTER_K2), ("k3", MASTER_K3)], "k3")
        gw.proc.send_signal(1)
        assert eventually(lambda: not _fails(c, name), bool, timeout=10)
        for key in ("s3", "kms", "new", "plain"):
            c.delete_object(Bucket=name, Key=key)
        c.delete_bucket(Bucket=name)
    finally:
        gw.stop()


def _fails(c, name: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        c.get_object(Bucket=name, Key="kms")["Body"].read()
    except ClientError:
        return True
    return False


# ---- seeded fuzz of the encryption headers ---------------------------------------------------------------

FUZZ_SEED = 20261208
FUZZ_REQUESTS = 250
_B64_A, _B64_B = base64.b64encode(KEY_A).decode(), base64.b64encode(KEY_B).decode()
_MD5_A = base64.b64encode(hashlib.md5(KEY_A).digest()).decode()
FUZZ_HEADERS: dict[str, list[str]] = {
    "x-amz-server-side-encryption": ["AES256", "aws:kms", "aws:kms:dsse", "", "AES512", "aws:fsx"],
    "x-amz-server-side-encryption-aws-kms-key-id": ["k1", "k2", "alias/k2", "arn:aws:kms:x:1:key/k9", "", "%"],
    "x-amz-server-side-encryption-context": ["eyJhIjoiYiJ9", "e30=", "W10=", "!!", ""],
    "x-amz-server-side-encryption-bucket-key-enabled": ["true", "false", "maybe"],
    "x-amz-server-side-encryption-customer-algorithm": ["AES256", "AES128", ""],
    "x-amz-server-side-encryption-customer-key": [_B64_A, _B64_B, "!!", "", "AAAA", _B64_A + "=="],
    "x-amz-server-side-encryption-customer-key-MD5": [_MD5_A, "AAAAAAAAAAAAAAAAAAAAAA==", "", "x"],
    "x-amz-copy-source-server-side-encryption-customer-algorithm": ["AES256", "x"],
    "x-amz-copy-source-server-side-encryption-customer-key": [_B64_A, _B64_B, "!!"],
    "x-amz-copy-source-server-side-encryption-customer-key-MD5": [_MD5_A, "x"],
    "x-amz-copy-source": ["/{canary}/c", "/{canary}/s3", "/{canary}/kms", "/{play}/p"],
    "range": ["bytes=0-10", "bytes=262140-262150", "bytes=-5", "bytes=9-1"],
}
FUZZ_QUERIES = ["", "", "", "?encryption", "?uploads", "?partNumber=1", "?attributes", "?versionId=null"]
CANARY_OBJECTS: dict[str, dict[str, Any]] = {
    "c": ssec(),
    "s3": {"ServerSideEncryption": "AES256"},
    "kms": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "k2"},
}


def _canary_state(ss3, canary: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        key: hashlib.sha256(
            ss3.get_object(Bucket=canary, Key=key, **(ssec() if key == "c" else {}))["Body"].read()
        ).hexdigest()
        for key in CANARY_OBJECTS
    }


def test_seeded_fuzz_of_encryption_headers(ss3, endpoint: str, tls_files, sse_gateway: GatewayProcess) -> None:  # type: ignore[no-untyped-def]
    import random

    from lxml import etree

    from .signing import sign

    rng = random.Random(FUZZ_SEED)
    verify = str(tls_files[0])
    canary, play = f"sse-canary-{FUZZ_SEED}", f"sse-play-{FUZZ_SEED}"
    for name in (canary, play):
        ss3.create_bucket(Bucket=name)
    for key, kw in CANARY_OBJECTS.items():
        ss3.put_object(Bucket=canary, Key=key, Body=os.urandom(300_000), **kw)
    ss3.put_object(Bucket=play, Key="p", Body=b"play", **ssec())
    before = _canary_state(ss3, canary)
    statuses: dict[int, int] = {}
    try:
        for n in range(FUZZ_REQUESTS):
            method = rng.choice(["GET", "HEAD", "PUT", "PUT", "POST", "DELETE"])
            signed = rng.random() < 0.85
            bucket = play if signed else canary
            key = rng.choice(["p", "c", "s3", "kms", "new"])
            url = f"{endpoint}/{bucket}/{key}{rng.choice(FUZZ_QUERIES)}"
            headers = {
                name: rng.choice(values).format(canary=canary, play=play)
                for name, values in FUZZ_HEADERS.items()
                if rng.random() < 0.3
            }
            body = os.urandom(rng.choice([0, 10, 300_000])) if method in ("PUT", "POST") else b""
            hdrs = sign(method, url, body=body, headers=headers) if signed else headers
            r = requests.request(method, url, data=body, headers=hdrs, timeout=30, verify=verify)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            context = f"request {n}: {method} {url} {headers} -> {r.status_code} {r.text[:300]}"
            assert r.status_code < 500 or r.status_code == 501, context
            if r.status_code >= 400 and method != "HEAD":
                root = etree.fromstring(r.content)
                assert root.tag == "Error" and root.findtext("Code"), context
            if not signed:
                assert r.status_code >= 400, context
        print(f"sse fuzz statuses (seed {FUZZ_SEED}): {dict(sorted(statuses.items()))}")
        assert requests.get(f"{endpoint}/healthz", verify=verify, timeout=5).status_code == 200
        assert _canary_state(ss3, canary) == before
        assert statuses.get(200, 0) + statuses.get(204, 0) > 10, statuses  # it reached real work too
        assert "Traceback" not in sse_gateway.log_text()
    finally:
        for name in (canary, play):
            for upload in ss3.list_multipart_uploads(Bucket=name).get("Uploads", []):
                ss3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
            empty_bucket(ss3, name)
            ss3.delete_bucket(Bucket=name)


# ---- other clients ------------------------------------------------------------------------------------


def test_aws_cli_sse_c_multipart_and_sse_s3(endpoint: str, tls_files, ss3, sbucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from .support import aws_cli

    aws = aws_cli(endpoint, tmp_path)
    ca = ["--ca-bundle", str(tls_files[0])]
    key_file = tmp_path / "key.bin"
    key_file.write_bytes(KEY_A)
    source = tmp_path / "big.bin"
    data = os.urandom(12 * MiB)  # over the CLI's 8 MiB threshold: a multipart upload, SSE-C on every part
    source.write_bytes(data)
    sse_c = ["--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}"]
    aws("s3", "cp", str(source), f"s3://{sbucket}/big", *sse_c, *ca)
    back = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{sbucket}/big", str(back), *sse_c, *ca)
    assert back.read_bytes() == data
    assert aws("s3", "cp", f"s3://{sbucket}/big", str(back), *ca, check=False).returncode != 0  # no key: refused
    head = json.loads(
        aws("s3api", "head-object", "--bucket", sbucket, "--key", "big", "--sse-customer-algorithm", "AES256",
            "--sse-customer-key", f"fileb://{key_file}", *ca).stdout
    )  # fmt: skip
    assert head["SSECustomerAlgorithm"] == "AES256" and head["ContentLength"] == len(data)
    aws("s3", "cp", str(source), f"s3://{sbucket}/s3", "--sse", "AES256", *ca)
    head = json.loads(aws("s3api", "head-object", "--bucket", sbucket, "--key", "s3", *ca).stdout)
    assert head["ServerSideEncryption"] == "AES256"
    aws("s3", "cp", str(source), f"s3://{sbucket}/kms", "--sse", "aws:kms", "--sse-kms-key-id", "k2", *ca)
    head = json.loads(aws("s3api", "head-object", "--bucket", sbucket, "--key", "kms", *ca).stdout)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "k2"
    config = json.dumps({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    aws("s3api", "put-bucket-encryption", "--bucket", sbucket, "--server-side-encryption-configuration", config, *ca)
    got = json.loads(aws("s3api", "get-bucket-encryption", "--bucket", sbucket, *ca).stdout)
    assert got["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }


def test_minio_py_sse_c_and_sse_s3(endpoint: str, tls_files, ss3, sbucket: str) -> None:  # type: ignore[no-untyped-def]
    import io

    import urllib3
    from minio import Minio
    from minio.sse import SseCustomerKey, SseS3

    mc = Minio(
        endpoint.removeprefix("https://"), access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=True,
        region="us-east-1", http_client=urllib3.PoolManager(ca_certs=str(tls_files[0])),
    )  # fmt: skip
    data = os.urandom(11 * MiB)
    key = SseCustomerKey(KEY_A)
    mc.put_object(sbucket, "m", io.BytesIO(data), len(data), part_size=5 * MiB, sse=key)  # multipart
    resp = mc.get_object(sbucket, "m", ssec=key)
    try:
        assert resp.read() == data
    finally:
        resp.close()
        resp.release_conn()
    assert mc.stat_object(sbucket, "m", ssec=key).size == len(data)
    mc.put_object(sbucket, "s", io.BytesIO(b"sse-s3 by minio"), 15, sse=SseS3())
    assert ss3.head_object(Bucket=sbucket, Key="s")["ServerSideEncryption"] == "AES256"
    resp = mc.get_object(sbucket, "s")
    try:
        assert resp.read() == b"sse-s3 by minio"
    finally:
        resp.close()
        resp.release_conn()


# ---- configuration ------------------------------------------------------------------------------------


def test_admin_bucket_info_shows_default_encryption(ss3, sbucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    from .test_admin import admin

    ss3.put_bucket_encryption(Bucket=sbucket, ServerSideEncryptionConfiguration=KMS_K2_BLOCKING_SSE_C)
    found = json.loads(admin("--natsServers", nats_url, "--json", "bucket", "info", sbucket).stdout)
    assert found["encryption"] == {
        "algorithm": "aws:kms",
        "kms_key_id": "k2",
        "bucket_key": False,
        "blocked": ["SSE-C"],
    }
    table = admin("--natsServers", nats_url, "bucket", "info", sbucket).stdout
    assert "aws:kms (key k2), SSE-C blocked" in table


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", "key file"),
        ('{"keys": []}', "keys"),
        ('{"keys": [{"id": "a", "key": "AAAA"}]}', "not 32"),
        ('{"keys": [{"id": "a", "key": "!!"}]}', "not base64"),
        (json.dumps({"keys": [{"id": "a", "key": MASTER_K1}, {"id": "b", "key": MASTER_K2}]}), "default"),
        (
            json.dumps({"keys": [{"id": "a", "key": MASTER_K1, "default": True}, {"id": "a", "key": MASTER_K2}]}),
            "twice",
        ),
    ],
)
def test_a_bad_key_file_stops_the_gateway_with_one_line(
    tmp_path: Path, credentials_file: Path, content: str, words: str
) -> None:
    import subprocess
    import sys

    keys = tmp_path / "keys.json"
    keys.write_text(content)
    args = ["--listen", "127.0.0.1:0", "--s3.credentials", str(credentials_file), "--sse.keys", str(keys)]
    proc = subprocess.run([sys.executable, "-m", "nats_s3", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert words in proc.stderr and str(keys) in proc.stderr
