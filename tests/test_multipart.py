"""Multipart uploads through boto3, the AWS CLI and rclone: zero-copy completion, listings, errors, cleanup."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from pathlib import Path

import boto3.s3.transfer
import pytest
from botocore.exceptions import ClientError

from .conftest import make_client
from .signing import signed_request
from .support import GatewayProcess, aws_cli, eventually, rclone_cli, stream_state, write_credentials

MiB = 1024 * 1024


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def etag_of(parts: list[bytes]) -> str:
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"


def upload(s3, bucket: str, key: str, parts: list[bytes], **create: object) -> dict:  # type: ignore[no-untyped-def]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
        done.append({"PartNumber": number, "ETag": etag})
    return s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,  # type: ignore[no-any-return]
        MultipartUpload={"Parts": done},
    )


def stream_bytes(nats_url: str, bucket: str) -> int:
    return stream_state(nats_url, bucket)[1]


def test_multipart_roundtrip_metadata_and_etag(s3, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), os.urandom(1234)]
    result = upload(
        s3, bucket, "mp/obj", parts, ContentType="video/mp4", Metadata={"camera": "one"}, CacheControl="no-store"
    )
    whole = b"".join(parts)
    assert result["ETag"] == f'"{etag_of(parts)}"'
    head = s3.head_object(Bucket=bucket, Key="mp/obj")
    assert head["ETag"] == result["ETag"] and head["ContentLength"] == len(whole)
    assert head["ContentType"] == "video/mp4" and head["Metadata"] == {"camera": "one"}
    assert head["CacheControl"] == "no-store"
    got = s3.get_object(Bucket=bucket, Key="mp/obj")
    assert got["Body"].read() == whole and got["ETag"] == result["ETag"]
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == result["ETag"]
    # Ranges across part boundaries.
    for start, end in [
        (5 * MiB - 10, 5 * MiB + 10),
        (0, len(whole) - 1),
        (10 * MiB, 10 * MiB + 2000),
        (len(whole) - 5, len(whole) - 1),
    ]:
        ranged = s3.get_object(Bucket=bucket, Key="mp/obj", Range=f"bytes={start}-{end}")
        assert ranged["Body"].read() == whole[start : end + 1]
    # partNumber reads.
    offset = 0
    for number, data in enumerate(parts, start=1):
        got = s3.get_object(Bucket=bucket, Key="mp/obj", PartNumber=number)
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{len(whole)}"
        assert got["Body"].read() == data
        assert s3.head_object(Bucket=bucket, Key="mp/obj", PartNumber=number)["ContentLength"] == len(data)
        offset += len(data)
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="mp/obj", PartNumber=4)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_reupload_part_replaces_and_frees(s3, bucket: str, nats_url: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="re")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=os.urandom(3 * MiB))
    final = os.urandom(MiB)
    etag = s3.upload_part(Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=final)["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key="re", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [(1, etag, MiB)]
    assert eventually(lambda: stream_bytes(nats_url, bucket), lambda b: b < 1.2 * MiB) < 1.2 * MiB
    s3.complete_multipart_upload(
        Bucket=bucket, Key="re", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
    )
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == final


def test_complete_errors(s3, bucket: str, gateway) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="e")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="e", UploadId=upload_id, PartNumber=1, Body=b"tiny")["ETag"]
    other = s3.upload_part(Bucket=bucket, Key="e", UploadId=upload_id, PartNumber=2, Body=b"tail")["ETag"]
    cases = [
        ([{"PartNumber": 2, "ETag": other}, {"PartNumber": 1, "ETag": small}], "InvalidPartOrder"),
        ([{"PartNumber": 1, "ETag": '"00000000000000000000000000000000"'}], "InvalidPart"),
        ([{"PartNumber": 3, "ETag": small}], "InvalidPart"),
        ([{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": other}], "EntityTooSmall"),
    ]
    for parts, expected in cases:
        with pytest.raises(ClientError) as err:
            s3.complete_multipart_upload(Bucket=bucket, Key="e", UploadId=upload_id, MultipartUpload={"Parts": parts})
        assert code(err.value) == expected
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="e",
            UploadId="NoSuchUploadId0000000",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small}]},
        )
    assert code(err.value) == "NoSuchUpload"
    url = f"{gateway.endpoint}/{bucket}/e?uploadId={upload_id}"
    for body in (b"<CompleteMultipartUpload>", b"<CompleteMultipartUpload></CompleteMultipartUpload>", b"junk"):
        resp = signed_request("POST", url, body=body)
        assert resp.status_code == 400 and "<Code>MalformedXML</Code>" in resp.text
    # Unquoted ETags are accepted; a single small part is fine as the last part.
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="e",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small.strip('"')}]},
    )
    assert s3.get_object(Bucket=bucket, Key="e")["Body"].read() == b"tiny"
    # A retried Complete answers as the first did.
    again = s3.complete_multipart_upload(
        Bucket=bucket, Key="e", UploadId=upload_id, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small}]}
    )
    assert again["ETag"] == done["ETag"]
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket=bucket, Key="e", UploadId=upload_id, PartNumber=3, Body=b"late")
    assert code(err.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as err:
        s3.upload_part(Bucket=bucket, Key="e", UploadId=upload_id, PartNumber=0, Body=b"x")
    assert code(err.value) == "InvalidArgument"


def test_abort_frees_bytes_and_overwrite_reclaims(s3, bucket: str, nats_url: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="a")["UploadId"]
    for number in (1, 2):
        s3.upload_part(Bucket=bucket, Key="a", UploadId=upload_id, PartNumber=number, Body=os.urandom(2 * MiB))
    assert stream_bytes(nats_url, bucket) > 4 * MiB
    s3.abort_multipart_upload(Bucket=bucket, Key="a", UploadId=upload_id)
    assert eventually(lambda: stream_bytes(nats_url, bucket), lambda b: b < 64 * 1024) < 64 * 1024
    with pytest.raises(ClientError) as err:
        s3.list_parts(Bucket=bucket, Key="a", UploadId=upload_id)
    assert code(err.value) == "NoSuchUpload"
    upload(s3, bucket, "big", [os.urandom(5 * MiB), os.urandom(3 * MiB)])
    assert stream_bytes(nats_url, bucket) > 8 * MiB
    s3.put_object(Bucket=bucket, Key="big", Body=b"small now")
    assert eventually(lambda: stream_bytes(nats_url, bucket), lambda b: b < 64 * 1024) < 64 * 1024
    upload(s3, bucket, "big", [os.urandom(5 * MiB), os.urandom(1 * MiB)])
    s3.delete_object(Bucket=bucket, Key="big")
    assert eventually(lambda: stream_bytes(nats_url, bucket), lambda b: b < 64 * 1024) < 64 * 1024


def test_list_parts_paging(s3, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="lp")["UploadId"]
    for number in range(1, 8):
        s3.upload_part(Bucket=bucket, Key="lp", UploadId=upload_id, PartNumber=number, Body=bytes([number]) * 10)
    seen = []
    marker = 0
    while True:
        resp = s3.list_parts(Bucket=bucket, Key="lp", UploadId=upload_id, MaxParts=3, PartNumberMarker=marker)
        seen += [p["PartNumber"] for p in resp["Parts"]]
        if not resp["IsTruncated"]:
            break
        marker = resp["NextPartNumberMarker"]
    assert seen == list(range(1, 8))
    s3.abort_multipart_upload(Bucket=bucket, Key="lp", UploadId=upload_id)


def test_list_multipart_uploads(s3, bucket: str) -> None:
    ids = {}
    for key in ["b/2", "a/1", "b/1", "c", "b/1"]:
        ids.setdefault(key, []).append(s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
        time.sleep(0.002)
    resp = s3.list_multipart_uploads(Bucket=bucket)
    listed = [(u["Key"], u["UploadId"]) for u in resp["Uploads"]]
    want = [(k, i) for k in sorted(ids) for i in ids[k]]
    assert listed == want
    resp = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/", "b/"]
    assert [u["Key"] for u in resp["Uploads"]] == ["c"]
    resp = s3.list_multipart_uploads(Bucket=bucket, Prefix="b/")
    assert [u["Key"] for u in resp["Uploads"]] == ["b/1", "b/1", "b/2"]
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])] == want
    for key, uploads in ids.items():
        for upload_id in uploads:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_upload_part_copy(s3, bucket: str) -> None:
    source = os.urandom(7 * MiB)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    p1 = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "src"},
        CopySourceRange=f"bytes=0-{5 * MiB - 1}",
    )
    p2 = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=2, CopySource={"Bucket": bucket, "Key": "src"}
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dst",
        UploadId=upload_id,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]},
            ]
        },
    )
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == source[: 5 * MiB] + source
    other = s3.create_multipart_upload(Bucket=bucket, Key="dst2")["UploadId"]
    with pytest.raises(ClientError) as err:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="dst2",
            UploadId=other,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceRange="bytes=0-99999999",
        )
    assert code(err.value) == "InvalidRange" and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    "algorithm,checksum_type",
    [("CRC32", "FULL_OBJECT"), ("CRC32C", "COMPOSITE"), ("SHA256", "COMPOSITE"), ("CRC64NVME", "FULL_OBJECT")],
)
def test_multipart_checksums(s3, bucket: str, algorithm: str, checksum_type: str) -> None:
    from nats_s3.protocol import checksums

    parts = [os.urandom(5 * MiB), os.urandom(100)]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="ck", ChecksumAlgorithm=algorithm, ChecksumType=checksum_type
    )["UploadId"]
    done = []
    values = []
    for number, data in enumerate(parts, start=1):
        resp = s3.upload_part(
            Bucket=bucket, Key="ck", UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm=algorithm
        )
        values.append(resp[f"Checksum{algorithm}"])
        done.append({"PartNumber": number, "ETag": resp["ETag"], f"Checksum{algorithm}": values[-1]})
    result = s3.complete_multipart_upload(Bucket=bucket, Key="ck", UploadId=upload_id, MultipartUpload={"Parts": done})
    hasher = checksums.new_hasher(algorithm)
    hasher.update(b"".join(parts))
    if checksum_type == "FULL_OBJECT":
        expected = hasher.b64digest()
    else:
        outer = checksums.new_hasher(algorithm)
        for value in values:
            outer.update(base64.b64decode(value))
        expected = f"{outer.b64digest()}-2"
    assert result[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected


def test_transfer_manager_defaults(s3, bucket: str, tmp_path: Path) -> None:
    """boto3's own multipart path (default checksums, concurrent parts), download with ranged gets."""
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(21 * MiB + 7))
    config = boto3.s3.transfer.TransferConfig(
        multipart_threshold=8 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4
    )
    s3.upload_file(str(src), bucket, "tm.bin", Config=config)
    dst = tmp_path / "dst.bin"
    s3.download_file(bucket, "tm.bin", str(dst), Config=config)
    assert dst.read_bytes() == src.read_bytes()
    assert s3.head_object(Bucket=bucket, Key="tm.bin")["ETag"].endswith('-5"')


def test_restart_mid_upload_completes_through_another_gateway(nats_url: str, tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    first = GatewayProcess(creds, nats_url).start()
    name = f"mid-{uuid.uuid4().hex[:8]}"
    parts = [os.urandom(5 * MiB), os.urandom(MiB)]
    try:
        a = make_client(first.endpoint)
        a.create_bucket(Bucket=name)
        upload_id = a.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
        e1 = a.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=1, Body=parts[0])["ETag"]
    finally:
        first.stop()
    second = GatewayProcess(creds, nats_url).start()
    try:
        b = make_client(second.endpoint)
        e2 = b.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=2, Body=parts[1])["ETag"]
        b.complete_multipart_upload(
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
        )
        assert b.get_object(Bucket=name, Key="k")["Body"].read() == b"".join(parts)
        b.delete_object(Bucket=name, Key="k")
        b.delete_bucket(Bucket=name)
    finally:
        second.stop()


def test_abandoned_uploads_expire(nats_url: str, tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    gw = GatewayProcess(creds, nats_url, extra=["--multipart.expiry", "2s"]).start()
    name = f"exp-{uuid.uuid4().hex[:8]}"
    try:
        c = make_client(gw.endpoint)
        c.create_bucket(Bucket=name)
        upload_id = c.create_multipart_upload(Bucket=name, Key="old")["UploadId"]
        c.upload_part(Bucket=name, Key="old", UploadId=upload_id, PartNumber=1, Body=os.urandom(MiB))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and c.list_multipart_uploads(Bucket=name).get("Uploads"):
            time.sleep(0.5)
        assert not c.list_multipart_uploads(Bucket=name).get("Uploads")
        assert eventually(lambda: stream_bytes(nats_url, name), lambda b: b < 64 * 1024) < 64 * 1024
        c.delete_bucket(Bucket=name)
    finally:
        gw.stop()


def test_aws_cli_multipart_cp(gateway, tmp_path: Path) -> None:
    aws = aws_cli(gateway.endpoint, tmp_path, timeout=600)
    size = int(os.environ.get("NATS_S3_TEST_CLI_MIB", "1024")) * MiB
    src = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with src.open("wb") as out:
        for _ in range(size // MiB):
            out.write(block[:-1] + os.urandom(1))
    name = f"cli-mp-{uuid.uuid4().hex[:8]}"

    aws("s3", "mb", f"s3://{name}")
    aws("s3", "cp", str(src), f"s3://{name}/big.bin")
    dst = tmp_path / "back.bin"
    aws("s3", "cp", f"s3://{name}/big.bin", str(dst))
    assert dst.stat().st_size == size
    h1, h2 = hashlib.sha256(), hashlib.sha256()
    with src.open("rb") as a, dst.open("rb") as b:
        for chunk in iter(lambda: a.read(8 * MiB), b""):
            h1.update(chunk)
        for chunk in iter(lambda: b.read(8 * MiB), b""):
            h2.update(chunk)
    assert h1.digest() == h2.digest()
    aws("s3", "rb", f"s3://{name}", "--force")


def test_rclone_copy_large_file(gateway, s3, bucket: str, tmp_path: Path) -> None:
    rclone = rclone_cli(
        gateway.endpoint, tmp_path, "chunk_size = 16Mi\nupload_cutoff = 16Mi\nupload_concurrency = 4\n", timeout=600
    )
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = src_dir / "video.bin"
    size = 200 * MiB
    with src.open("wb") as out:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            out.write(block[:-4] + i.to_bytes(4, "big"))

    rclone("copy", str(src_dir), f"gw:{bucket}/up")
    head = s3.head_object(Bucket=bucket, Key="up/video.bin")
    assert head["ContentLength"] == size and head["ETag"].endswith('-13"')
    rclone("check", str(src_dir), f"gw:{bucket}/up", "--download")
    out_dir = tmp_path / "out"
    rclone("copy", f"gw:{bucket}/up", str(out_dir))
    assert (out_dir / "video.bin").read_bytes() == src.read_bytes()


def test_multipart_keeps_tagging(s3, bucket: str) -> None:
    upload(s3, bucket, "tagged", [os.urandom(100)], Tagging="stage=raw")
    assert s3.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == [{"Key": "stage", "Value": "raw"}]


def test_a_parts_signed_payload_hash_is_checked(gateway, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """A part is hashed with SHA-256 only where something checks it: a signed payload here."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="signed")["UploadId"]
    url = f"{gateway.endpoint}/{bucket}/signed?partNumber=1&uploadId={upload_id}"
    resp = signed_request("PUT", url, body=b"claimed part", send_body=b"another one!")
    assert resp.status_code == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in resp.text
    assert s3.list_parts(Bucket=bucket, Key="signed", UploadId=upload_id).get("Parts", []) == []
    resp = signed_request("PUT", url, body=b"the real part")
    assert resp.status_code == 200
    assert resp.headers["ETag"] == f'"{hashlib.md5(b"the real part").hexdigest()}"'
    s3.abort_multipart_upload(Bucket=bucket, Key="signed", UploadId=upload_id)
