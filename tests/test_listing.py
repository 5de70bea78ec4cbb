"""ListObjects v1/v2 through real clients: paging, delimiters, encoding, errors, two gateways, AWS CLI, rclone."""

from __future__ import annotations

import concurrent.futures
import uuid
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError

from .conftest import make_client
from .signing import signed_request
from .support import ACCESS_KEY, GatewayProcess, aws_cli, rclone_cli

KEYS = sorted(
    {
        *(f"photos/{year}/{month:02d}/img-{i}.jpg" for year in (2024, 2025) for month in (1, 2, 12) for i in range(3)),
        *(f"docs/report {i}.pdf" for i in range(5)),
        "docs/", "docs/sub/", "docs/sub/x.txt", "top-level.txt", "ünïcödé/ключ.txt", "plus+sign", "per%cent",
        "a-b", "a/b", "a.b", "zz", "~tilde",
    },
    key=lambda k: k.encode(),
)  # fmt: skip


@pytest.fixture(scope="module")
def listed_bucket(s3):  # type: ignore[no-untyped-def]
    name = f"list-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=k.encode()), KEYS))
    yield name
    for key in KEYS:
        s3.delete_object(Bucket=name, Key=key)
    s3.delete_bucket(Bucket=name)


def model(prefix: str = "", delimiter: str = "") -> tuple[list[str], list[str]]:
    keys, prefixes = [], []
    for key in KEYS:
        if not key.startswith(prefix):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = key[: cut + len(delimiter)]
            if common not in prefixes:
                prefixes.append(common)
        else:
            keys.append(key)
    return keys, prefixes


@pytest.mark.parametrize("version", ["list_objects", "list_objects_v2"])
@pytest.mark.parametrize(
    "prefix,delimiter",
    [
        ("", ""),
        ("", "/"),
        ("photos/", "/"),
        ("photos/2025/", "/"),
        ("docs/", "/"),
        ("", "-"),
        ("a", "."),
        ("photos/", "/0"),
        ("none/", "/"),
    ],
)
@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_paginators(s3, listed_bucket: str, version: str, prefix: str, delimiter: str, page_size: int) -> None:
    pages = s3.get_paginator(version).paginate(
        Bucket=listed_bucket, Prefix=prefix, Delimiter=delimiter, PaginationConfig={"PageSize": page_size}
    )
    keys, prefixes, count = [], [], 0
    for page in pages:
        count += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        entries = len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))
        assert entries <= page_size
        if version == "list_objects_v2":
            assert page["KeyCount"] == entries
    want_keys, want_prefixes = model(prefix, delimiter)
    assert keys == want_keys
    assert prefixes == want_prefixes
    total = len(want_keys) + len(want_prefixes)
    assert count == max(1, -(-total // page_size))


def test_v2_start_after_and_tokens(s3, listed_bucket: str) -> None:
    resp = s3.list_objects_v2(Bucket=listed_bucket, StartAfter="docs/sub/x.txt", MaxKeys=2)
    after = [k for k in KEYS if k.encode() > b"docs/sub/x.txt"]
    assert [o["Key"] for o in resp["Contents"]] == after[:2]
    assert resp["StartAfter"] == "docs/sub/x.txt"
    assert resp["IsTruncated"] is True
    token = resp["NextContinuationToken"]
    resp = s3.list_objects_v2(Bucket=listed_bucket, ContinuationToken=token, StartAfter="docs/sub/x.txt", MaxKeys=1000)
    assert [o["Key"] for o in resp["Contents"]] == after[2:]
    assert resp["ContinuationToken"] == token
    assert resp["IsTruncated"] is False and "NextContinuationToken" not in resp
    with pytest.raises(ClientError) as err:
        s3.list_objects_v2(Bucket=listed_bucket, ContinuationToken="not-a-token")
    assert err.value.response["Error"]["Code"] == "InvalidArgument"


def test_v1_marker_and_next_marker(s3, listed_bucket: str) -> None:
    resp = s3.list_objects(Bucket=listed_bucket, Marker="photos/2024/", MaxKeys=2)
    after = [k for k in KEYS if k.encode() > b"photos/2024/"]
    assert [o["Key"] for o in resp["Contents"]] == after[:2]
    assert resp["Marker"] == "photos/2024/"
    assert "NextMarker" not in resp  # only given with a delimiter
    resp = s3.list_objects(Bucket=listed_bucket, Delimiter="/", MaxKeys=2)
    assert resp["IsTruncated"] is True
    assert [o["Key"] for o in resp["Contents"]] == ["a-b", "a.b"]
    assert resp["NextMarker"] == "a.b"
    resp = s3.list_objects(Bucket=listed_bucket, Delimiter="/", Marker=resp["NextMarker"], MaxKeys=1)
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["a/"] and "Contents" not in resp
    assert resp["NextMarker"] == "a/"  # the last entry, here a common prefix
    resp = s3.list_objects(Bucket=listed_bucket, Delimiter="/", Marker="a/", MaxKeys=1)
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["docs/"]


def test_max_keys_limits_and_errors(s3, listed_bucket: str, gateway) -> None:
    resp = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=0)
    assert resp["KeyCount"] == 0 and resp["IsTruncated"] is False and "Contents" not in resp  # as S3 answers
    empty = s3.list_objects_v2(Bucket=listed_bucket, ContinuationToken="")  # an empty token: the start
    assert empty["KeyCount"] == len(KEYS) and empty["ContinuationToken"] == ""
    resp = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=5000)
    assert resp["MaxKeys"] == 1000 and resp["KeyCount"] == len(KEYS)
    for query in ("max-keys=-1", "max-keys=abc"):
        r = signed_request("GET", f"{gateway.endpoint}/{listed_bucket}?list-type=2&{query}")
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    r = signed_request("GET", f"{gateway.endpoint}/{listed_bucket}?list-type=2&encoding-type=base64")
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text
    r = signed_request("GET", f"{gateway.endpoint}/{listed_bucket}?list-type=3")
    assert r.status_code == 400
    r = signed_request("GET", f"{gateway.endpoint}/no-such-bucket-9?list-type=2")
    assert r.status_code == 404 and "<Code>NoSuchBucket</Code>" in r.text


def test_encoding_type_url(s3, listed_bucket: str, gateway) -> None:
    r = signed_request(
        "GET",
        f"{gateway.endpoint}/{listed_bucket}?list-type=2&encoding-type=url&prefix=docs%2F"
        "&delimiter=%2F&start-after=docs%2Freport%200.pdf",
    )
    text = r.text
    assert "<Key>docs/report%201.pdf</Key>" in text
    assert "<Prefix>docs/</Prefix>" in text
    assert "<Delimiter>/</Delimiter>" in text
    assert "<StartAfter>docs/report%200.pdf</StartAfter>" in text
    assert "<EncodingType>url</EncodingType>" in text
    # botocore asks for encoding-type=url itself and decodes what comes back.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=listed_bucket)["Contents"]]
    assert "ünïcödé/ключ.txt" in keys and "plus+sign" in keys and "per%cent" in keys
    resp = s3.list_objects_v2(Bucket=listed_bucket, EncodingType="url", Prefix="ü")
    assert [unquote_plus(o["Key"]) for o in resp["Contents"]] == ["ünïcödé/ключ.txt"]


def test_fetch_owner(s3, listed_bucket: str) -> None:
    resp = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=1)
    assert "Owner" not in resp["Contents"][0]
    resp = s3.list_objects_v2(Bucket=listed_bucket, MaxKeys=1, FetchOwner=True)
    assert resp["Contents"][0]["Owner"]["DisplayName"] == ACCESS_KEY
    assert "Owner" in s3.list_objects(Bucket=listed_bucket, MaxKeys=1)["Contents"][0]


def test_listing_reflects_metadata(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="m", Body=b"12345", ChecksumAlgorithm="CRC32")
    entry = s3.list_objects_v2(Bucket=bucket)["Contents"][0]
    head = s3.head_object(Bucket=bucket, Key="m")
    assert entry["ETag"] == head["ETag"] and entry["Size"] == 5
    assert entry["LastModified"] == head["LastModified"]
    assert entry["ChecksumAlgorithm"] == ["CRC32"]
    s3.put_object(Bucket=bucket, Key="m", Body=b"123")
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["Size"] == 3


@pytest.fixture
def two_gateways(nats_url: str, credentials_file: Path):  # type: ignore[no-untyped-def]
    """Clients of two gateways on the same NATS."""
    one = GatewayProcess(credentials_file, nats_url).start()
    two = GatewayProcess(credentials_file, nats_url).start()
    try:
        yield make_client(one.endpoint), make_client(two.endpoint)
    finally:
        one.stop()
        two.stop()


def test_read_your_writes_across_two_gateways(two_gateways) -> None:  # type: ignore[no-untyped-def]
    a, b = two_gateways
    name = f"ryw-{uuid.uuid4().hex[:8]}"
    a.create_bucket(Bucket=name)
    assert b.list_objects_v2(Bucket=name)["KeyCount"] == 0  # b's index exists before the writes
    for i in range(30):
        key = f"k/{i:03d}"
        a.put_object(Bucket=name, Key=key, Body=b"x")
        listed = [o["Key"] for o in b.list_objects_v2(Bucket=name, Prefix="k/").get("Contents", [])]
        assert listed[-1] == key and len(listed) == i + 1
    for i in range(30):
        b.delete_object(Bucket=name, Key=f"k/{i:03d}")
        listed = [o["Key"] for o in a.list_objects(Bucket=name).get("Contents", [])]
        assert f"k/{i:03d}" not in listed and len(listed) == 29 - i
    a.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as err:
        b.list_objects_v2(Bucket=name)
    assert err.value.response["Error"]["Code"] == "NoSuchBucket"


def test_a_bucket_deleted_and_created_again_elsewhere_lists_as_the_new_one(two_gateways) -> None:  # type: ignore[no-untyped-def]
    """A gateway holding the listing indexes of a bucket that another gateway deletes and creates again
    (before any housekeeping pass here notices) lists the new bucket's stream, not the old one's."""
    a, b = two_gateways
    name = f"again-{uuid.uuid4().hex[:8]}"
    a.create_bucket(Bucket=name)
    a.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for i in range(20):
        for body in (b"one", b"two"):
            a.put_object(Bucket=name, Key=f"old/{i:02d}", Body=body)
    assert b.list_objects_v2(Bucket=name)["KeyCount"] == 20  # b holds both indexes of the old stream
    assert len(b.list_object_versions(Bucket=name)["Versions"]) == 40
    for v in a.list_object_versions(Bucket=name)["Versions"]:
        a.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    a.delete_bucket(Bucket=name)
    a.create_bucket(Bucket=name)  # a new stream, far shorter than the old one
    a.put_object(Bucket=name, Key="new", Body=b"new")

    assert [o["Key"] for o in b.list_objects_v2(Bucket=name)["Contents"]] == ["new"]
    versions = b.list_object_versions(Bucket=name)
    assert [(v["Key"], v["VersionId"]) for v in versions["Versions"]] == [("new", "null")]
    assert "DeleteMarkers" not in versions
    b.delete_object(Bucket=name, Key="new")
    b.delete_bucket(Bucket=name)  # its emptiness check reads the new stream's indexes too


def test_aws_cli_listing(gateway, listed_bucket: str, tmp_path: Path) -> None:
    run = aws_cli(gateway.endpoint, tmp_path)

    def aws(*args: str) -> str:
        return str(run(*args).stdout)

    out = aws("s3", "ls", f"s3://{listed_bucket}", "--recursive")
    assert [line.split(None, 3)[3] for line in out.splitlines()] == KEYS
    out = aws("s3", "ls", f"s3://{listed_bucket}/photos/")
    assert "PRE 2024/" in out and "PRE 2025/" in out
    import json

    out = aws("s3api", "list-objects", "--bucket", listed_bucket, "--max-items", "7", "--page-size", "2")
    data = json.loads(out)
    assert [o["Key"] for o in data["Contents"]] == KEYS[:7]
    token = data["NextToken"]
    out = aws("s3api", "list-objects", "--bucket", listed_bucket, "--starting-token", token, "--page-size", "3")
    assert [o["Key"] for o in json.loads(out)["Contents"]] == KEYS[7:]
    out = aws(
        "s3api",
        "list-objects-v2",
        "--bucket",
        listed_bucket,
        "--prefix",
        "docs/",
        "--delimiter",
        "/",
        "--page-size",
        "2",
    )
    data = json.loads(out)
    assert [p["Prefix"] for p in data["CommonPrefixes"]] == ["docs/sub/"]
    assert [o["Key"] for o in data["Contents"]] == model("docs/", "/")[0]


def test_rclone_lsf(gateway, listed_bucket: str, tmp_path: Path) -> None:
    run = rclone_cli(gateway.endpoint, tmp_path, "list_chunk = 3\n")

    def rclone(*args: str) -> str:
        return str(run(*args).stdout)

    # rclone pages with v1 markers (list_chunk = 3 forces many pages) and rebuilds directories itself.
    files = rclone("lsf", "-R", "--files-only", f"gw:{listed_bucket}").splitlines()
    # Folder markers ("docs/") are shown by rclone as it sees fit; every real object must be there, once.
    assert len(files) == len(set(files))
    assert {k for k in KEYS if not k.endswith("/")} <= set(files) <= set(KEYS)
    top = rclone("lsf", f"gw:{listed_bucket}").splitlines()
    assert "photos/" in top and "top-level.txt" in top and "docs/" in top
    v2 = rclone("lsf", "-R", "--files-only", "--s3-list-version", "2", f"gw:{listed_bucket}").splitlines()
    assert sorted(v2) == sorted(files)


def test_encoding_type_url_gives_back_exactly_the_prefix_sent(s3, bucket: str, gateway) -> None:
    """Control characters in keys and prefixes: with encoding-type=url every echoed field is encoded (so
    an SDK decodes back what it sent); without it nothing is, and XML carries them as references."""
    keys = ["ctl\x01a/one", "ctl\x01a/two", "ctl\x01b", "tab\tkey"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    v2 = s3.list_objects_v2(Bucket=bucket, Prefix="ctl\x01", Delimiter="/", StartAfter="ctl\x01")
    assert v2["Prefix"] == "ctl\x01" and v2["StartAfter"] == "ctl\x01" and v2["EncodingType"] == "url"
    assert [p["Prefix"] for p in v2["CommonPrefixes"]] == ["ctl\x01a/"]
    assert [o["Key"] for o in v2["Contents"]] == ["ctl\x01b"]
    v1 = s3.list_objects(Bucket=bucket, Prefix="ctl\x01", Marker="ctl\x01a/one", MaxKeys=1)
    # S3 encodes v1's Prefix too (ListObjects docs); botocore decodes Marker but not v1's top-level Prefix.
    assert v1["Marker"] == "ctl\x01a/one" and v1["Prefix"] == "ctl%01"
    assert [o["Key"] for o in v1["Contents"]] == ["ctl\x01a/two"] and v1["IsTruncated"] is True
    raw = signed_request("GET", f"{gateway.endpoint}/{bucket}?list-type=2&prefix=ctl%01&encoding-type=url").text
    assert "<Prefix>ctl%01</Prefix>" in raw and "<Key>ctl%01a/one</Key>" in raw
    plain = signed_request("GET", f"{gateway.endpoint}/{bucket}?list-type=2&prefix=tab%09").text
    assert "<Key>tab&#x9;key</Key>" in plain or "<Key>tab\tkey</Key>" in plain
    assert "EncodingType" not in plain and "%09" not in plain


def test_a_key_that_is_not_utf8_is_invalid_uri(gateway, bucket: str) -> None:
    for path in (f"/{bucket}/a%FFb", f"/{bucket}/%C3", f"/{bucket}/ok%E2%82"):
        for method in ("GET", "PUT", "HEAD", "DELETE"):
            r = signed_request(method, gateway.endpoint + path)
            assert r.status_code == 400, (method, path)
            if method != "HEAD":
                assert "<Code>InvalidURI</Code>" in r.text and "Couldn't parse the specified URI." in r.text
