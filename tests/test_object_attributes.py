"""GetObjectAttributes, and checksum answers as S3 gives them: types on every multipart answer, BadDigest
for a mismatch, InvalidRequest for a malformed value, and Complete's whole-object checksum verified."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from nats_s3.protocol import checksums

from .signing import signed_request

MiB = 1024 * 1024
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]


def code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def crc(algorithm: str, data: bytes) -> str:
    hasher = checksums.new_hasher(algorithm)
    hasher.update(data)
    return hasher.b64digest()


def test_attributes_of_a_single_put_object(s3, bucket: str) -> None:
    data = os.urandom(1024)
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
    s3.put_object(Bucket=bucket, Key="one", Body=data, ChecksumSHA256=sha)
    got = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=ALL)
    assert got["ETag"] == hashlib.md5(data).hexdigest()
    assert got["ObjectSize"] == 1024 and got["StorageClass"] == "STANDARD"
    assert got["Checksum"] == {"ChecksumSHA256": sha, "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in got and got["LastModified"]
    only = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == 1024 and "ETag" not in only and "Checksum" not in only
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    plain = s3.get_object_attributes(Bucket=bucket, Key="plain", ObjectAttributes=ALL)
    assert "Checksum" not in plain or plain["Checksum"].get("ChecksumType") == "FULL_OBJECT"
    with pytest.raises(ClientError) as err:
        s3.get_object_attributes(Bucket=bucket, Key="missing", ObjectAttributes=ALL)
    assert code(err.value) == "NoSuchKey"


def test_attributes_errors(gateway, bucket: str, s3) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = f"{gateway.endpoint}/{bucket}/k?attributes"
    for headers in ({}, {"x-amz-object-attributes": ""}, {"x-amz-object-attributes": "ETag,Colour"}):
        r = signed_request("GET", url, headers=headers)
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, headers
    for bad in ("-1", "x", "1.5", "9" * 30):
        r = signed_request("GET", url, headers={"x-amz-object-attributes": "ObjectParts", "x-amz-max-parts": bad})
        assert r.status_code == 400, bad


def test_attributes_of_a_multipart_object_page_by_page(s3, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(10)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256")["UploadId"]
    done = []
    numbers = [1, 3, 4, 9]  # not contiguous: the numbers are the ones uploaded
    for number, data in zip(numbers, parts, strict=True):
        resp = s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm="SHA256"
        )
        assert resp["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        done.append({"PartNumber": number, "ETag": resp["ETag"], "ChecksumSHA256": resp["ChecksumSHA256"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": done})
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert got["Checksum"] == {"ChecksumSHA256": base64.b64encode(composite).decode(), "ChecksumType": "COMPOSITE"}
    assert got["ObjectSize"] == sum(map(len, parts)) and got["ETag"].endswith("-4")
    object_parts = got["ObjectParts"]
    assert object_parts["TotalPartsCount"] == 4 and object_parts["IsTruncated"] is False
    sizes = list(zip(numbers, map(len, parts), strict=True))
    assert [(p["PartNumber"], p["Size"]) for p in object_parts["Parts"]] == sizes
    assert [p["ChecksumSHA256"] for p in object_parts["Parts"]] == [d["ChecksumSHA256"] for d in done]
    first = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2)
    assert first["ObjectParts"]["IsTruncated"] is True and first["ObjectParts"]["MaxParts"] == 2
    assert [p["PartNumber"] for p in first["ObjectParts"]["Parts"]] == [1, 3]
    marker = first["ObjectParts"]["NextPartNumberMarker"]
    rest = s3.get_object_attributes(
        Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"], MaxParts=2, PartNumberMarker=int(marker)
    )["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [4, 9] and rest["IsTruncated"] is False
    assert int(rest["PartNumberMarker"]) == 3


def test_attributes_by_version(s3, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"second!")
    old = s3.get_object_attributes(Bucket=bucket, Key="v", VersionId=first, ObjectAttributes=["ObjectSize"])
    assert old["ObjectSize"] == 5 and old["VersionId"] == first
    assert s3.get_object_attributes(Bucket=bucket, Key="v", ObjectAttributes=["ObjectSize"])["ObjectSize"] == 7
    s3.delete_object(Bucket=bucket, Key="v")
    with pytest.raises(ClientError) as err:
        s3.get_object_attributes(Bucket=bucket, Key="v", ObjectAttributes=["ObjectSize"])
    assert code(err.value) == "NoSuchKey"


def test_a_checksum_mismatch_is_bad_digest_and_a_malformed_one_invalid_request(gateway, bucket: str) -> None:
    url = f"{gateway.endpoint}/{bucket}/ck"
    r = signed_request("PUT", url, body=b"data", headers={"x-amz-checksum-crc32": crc("CRC32", b"other")})
    assert r.status_code == 400 and "<Code>BadDigest</Code>" in r.text
    for value in ("AAAA", "not base64!", ""):
        r = signed_request("PUT", url, body=b"data", headers={"x-amz-checksum-crc32": value})
        assert r.status_code == 400 and "<Code>InvalidRequest</Code>" in r.text, value
    assert signed_request("HEAD", url).status_code == 404  # nothing stored either way
    r = signed_request("PUT", url, body=b"data", headers={"x-amz-checksum-crc32": crc("CRC32", b"data")})
    assert r.status_code == 200 and r.headers["x-amz-checksum-type"] == "FULL_OBJECT"


@pytest.mark.parametrize(("algorithm", "checksum_type"), [("CRC32", "FULL_OBJECT"), ("SHA1", "COMPOSITE")])
def test_checksum_type_on_every_multipart_answer(s3, bucket: str, algorithm: str, checksum_type: str) -> None:
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="t", ChecksumAlgorithm=algorithm, ChecksumType=checksum_type
    )
    assert created["ChecksumAlgorithm"] == algorithm and created["ChecksumType"] == checksum_type
    upload_id = created["UploadId"]
    parts = [os.urandom(5 * MiB), os.urandom(77)]
    done = []
    for number, data in enumerate(parts, start=1):
        resp = s3.upload_part(
            Bucket=bucket, Key="t", UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm=algorithm
        )
        assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-checksum-type"] == checksum_type
        done.append({"PartNumber": number, "ETag": resp["ETag"], f"Checksum{algorithm}": resp[f"Checksum{algorithm}"]})
    listed = s3.list_parts(Bucket=bucket, Key="t", UploadId=upload_id)
    assert listed["ChecksumAlgorithm"] == algorithm and listed["ChecksumType"] == checksum_type
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["ChecksumAlgorithm"], u["ChecksumType"]) for u in uploads] == [(algorithm, checksum_type)]
    result = s3.complete_multipart_upload(Bucket=bucket, Key="t", UploadId=upload_id, MultipartUpload={"Parts": done})
    assert result["ChecksumType"] == checksum_type
    head = s3.head_object(Bucket=bucket, Key="t", ChecksumMode="ENABLED")
    assert head["ChecksumType"] == checksum_type and head[f"Checksum{algorithm}"] == result[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key="t", ChecksumMode="ENABLED")
    assert got["ChecksumType"] == checksum_type
    got["Body"].read()
    attrs = s3.get_object_attributes(Bucket=bucket, Key="t", ObjectAttributes=["Checksum"])
    assert attrs["Checksum"]["ChecksumType"] == checksum_type


def test_complete_verifies_the_whole_object_checksum_it_is_given(s3, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    done = []
    for number, data in enumerate(parts, start=1):
        resp = s3.upload_part(
            Bucket=bucket, Key="full", UploadId=upload_id, PartNumber=number, Body=data, ChecksumAlgorithm="CRC32"
        )
        done.append({"PartNumber": number, "ETag": resp["ETag"]})
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="full", UploadId=upload_id, MultipartUpload={"Parts": done},
            ChecksumCRC32=crc("CRC32", b"something else"), ChecksumType="FULL_OBJECT",
        )  # fmt: skip
    assert code(err.value) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="full")
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="full", UploadId=upload_id, MultipartUpload={"Parts": done}, ChecksumType="COMPOSITE"
        )
    assert code(err.value) == "InvalidRequest"
    whole = crc("CRC32", b"".join(parts))
    result = s3.complete_multipart_upload(
        Bucket=bucket, Key="full", UploadId=upload_id, MultipartUpload={"Parts": done}, ChecksumCRC32=whole,
        ChecksumType="FULL_OBJECT",
    )  # fmt: skip
    assert result["ChecksumCRC32"] == whole


def test_complete_uses_the_latest_upload_of_a_part(s3, bucket: str) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="re", ChecksumAlgorithm="CRC32C")["UploadId"]
    first = s3.upload_part(
        Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=b"first body", ChecksumAlgorithm="CRC32C"
    )
    second = s3.upload_part(
        Bucket=bucket, Key="re", UploadId=upload_id, PartNumber=1, Body=b"second body", ChecksumAlgorithm="CRC32C"
    )
    assert first["ETag"] != second["ETag"]
    with pytest.raises(ClientError) as err:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="re", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": first["ETag"]}]},
        )  # fmt: skip
    assert code(err.value) == "InvalidPart"
    s3.complete_multipart_upload(
        Bucket=bucket, Key="re", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": second["ETag"],
                                    "ChecksumCRC32C": second["ChecksumCRC32C"]}]},
    )  # fmt: skip
    assert s3.get_object(Bucket=bucket, Key="re")["Body"].read() == b"second body"
    attrs = s3.get_object_attributes(Bucket=bucket, Key="re", ObjectAttributes=["ObjectParts"])
    assert attrs["ObjectParts"]["Parts"] == [{"PartNumber": 1, "Size": 11, "ChecksumCRC32C": second["ChecksumCRC32C"]}]


def test_create_multipart_upload_checksum_rules(gateway, bucket: str, s3) -> None:
    url = f"{gateway.endpoint}/{bucket}/rules?uploads"
    refused = [
        {"x-amz-checksum-algorithm": "SHA256", "x-amz-checksum-type": "FULL_OBJECT"},  # FULL_OBJECT: CRCs only
        {"x-amz-checksum-algorithm": "SHA1", "x-amz-checksum-type": "FULL_OBJECT"},
        {"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "COMPOSITE"},  # CRC64NVME: FULL_OBJECT
        {"x-amz-checksum-type": "COMPOSITE"},  # a type without an algorithm
        {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "PARTIAL"},
    ]
    for headers in refused:
        r = signed_request("POST", url, headers=headers)
        assert r.status_code == 400 and "<Code>InvalidRequest</Code>" in r.text, headers
    defaults = {"CRC32": "COMPOSITE", "CRC32C": "COMPOSITE", "SHA1": "COMPOSITE", "SHA256": "COMPOSITE",
                "CRC64NVME": "FULL_OBJECT"}  # fmt: skip
    for algorithm, default in defaults.items():
        created = s3.create_multipart_upload(Bucket=bucket, Key="rules", ChecksumAlgorithm=algorithm)
        assert created["ChecksumType"] == default, algorithm
        s3.abort_multipart_upload(Bucket=bucket, Key="rules", UploadId=created["UploadId"])
