"""The AWS CLI (`s3` and `s3api` commands) against the endpoint, one test per feature-matrix cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from .clients import (
    LIST,
    LISTING_KEYS,
    PRESIGNED_KEY,
    Cli,
    Endpoint,
    Wire,
    assert_synced,
    aws_cli,
    change_sync_tree,
    expected_listing,
    make_sync_tree,
    md5_etag,
    not_supported,
    sha256,
    tampered,
)

CLIENT = "aws-cli"


def cell(operation: str) -> pytest.MarkDecorator:
    return pytest.mark.cell(CLIENT, operation)


@pytest.fixture(scope="module")
def aws(endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return aws_cli(endpoint, tmp_path_factory.mktemp("aws"))


def api(aws: Cli, *args: str | Path) -> Any:
    """An `s3api` call's JSON answer (None when it prints nothing)."""
    out = aws("s3api", *args).stdout
    return json.loads(out) if out.strip() else None


@cell("buckets")
def test_buckets(aws: Cli, new_bucket: Any) -> None:
    one, two = new_bucket(create=False), new_bucket(create=False)
    aws("s3", "mb", f"s3://{one}")
    api(aws, "create-bucket", "--bucket", two)
    listed = aws("s3", "ls").stdout
    assert one in listed and two in listed
    assert {one, two} <= {b["Name"] for b in api(aws, "list-buckets")["Buckets"]}
    api(aws, "head-bucket", "--bucket", one)
    aws("s3", "rb", f"s3://{one}")
    api(aws, "delete-bucket", "--bucket", two)
    missing = aws("s3api", "head-bucket", "--bucket", one, check=False)
    assert missing.returncode != 0 and "404" in missing.stderr
    assert one not in aws("s3", "ls").stdout


@cell("objects")
def test_objects(aws: Cli, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from the aws cli\n" * 50)
    aws("s3", "cp", src, f"s3://{bucket}/cp/hello.txt")
    put = api(aws, "put-object", "--bucket", bucket, "--key", "api/hello.txt", "--body", src)
    assert put["ETag"].strip('"') == md5_etag(src.read_bytes())
    head = api(aws, "head-object", "--bucket", bucket, "--key", "cp/hello.txt")
    assert head["ContentLength"] == src.stat().st_size and head["ETag"] == put["ETag"]
    aws("s3", "cp", f"s3://{bucket}/cp/hello.txt", tmp_path / "via-s3.txt")
    api(aws, "get-object", "--bucket", bucket, "--key", "api/hello.txt", tmp_path / "via-api.txt")
    assert (tmp_path / "via-s3.txt").read_bytes() == (tmp_path / "via-api.txt").read_bytes() == src.read_bytes()
    aws("s3", "rm", f"s3://{bucket}/cp/hello.txt")
    api(aws, "delete-object", "--bucket", bucket, "--key", "api/hello.txt")
    gone = aws("s3api", "get-object", "--bucket", bucket, "--key", "api/hello.txt", tmp_path / "x", check=False)
    assert gone.returncode != 0 and "NoSuchKey" in gone.stderr
    assert aws("s3", "ls", f"s3://{bucket}", "--recursive", check=False).stdout == ""


@cell("metadata")
def test_metadata(aws: Cli, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "m.txt"
    src.write_text("metadata")
    aws("s3", "cp", src, f"s3://{bucket}/m.txt", "--content-type", "text/x-conformance",
        "--metadata", "color=blue,owner-id=42", "--cache-control", "max-age=60")  # fmt: skip
    head = api(aws, "head-object", "--bucket", bucket, "--key", "m.txt")
    assert head["ContentType"] == "text/x-conformance" and head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"color": "blue", "owner-id": "42"}
    api(aws, "put-object", "--bucket", bucket, "--key", "n.txt", "--body", src,
        "--content-type", "text/plain", "--metadata", "shade=dark")  # fmt: skip
    head = api(aws, "head-object", "--bucket", bucket, "--key", "n.txt")
    assert head["ContentType"] == "text/plain" and head["Metadata"] == {"shade": "dark"}


@cell("copy")
def test_copy(aws: Cli, bucket: str, tmp_path: Path, wire: Wire) -> None:
    src = tmp_path / "c.txt"
    src.write_text("copy me")
    aws("s3", "cp", src, f"s3://{bucket}/src.txt", "--metadata", "a=1", "--content-type", "text/plain")
    watch = wire.watch(bucket)
    aws("s3", "cp", f"s3://{bucket}/src.txt", f"s3://{bucket}/dst.txt")
    head = api(aws, "head-object", "--bucket", bucket, "--key", "dst.txt")
    assert head["Metadata"] == {"a": "1"} and head["ContentType"] == "text/plain"
    api(aws, "copy-object", "--bucket", bucket, "--key", "replaced.txt", "--copy-source", f"{bucket}/src.txt",
        "--metadata-directive", "REPLACE", "--metadata", "b=2", "--content-type", "text/x-new")  # fmt: skip
    head = api(aws, "head-object", "--bucket", bucket, "--key", "replaced.txt")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/x-new"
    aws("s3", "cp", f"s3://{bucket}/replaced.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "copy me"
    watch.expect("CopyObject", status=200, at_least=2)


@cell("range")
def test_range(aws: Cli, bucket: str, tmp_path: Path, wire: Wire) -> None:
    body = bytes(range(256)) * 4
    (tmp_path / "r.bin").write_bytes(body)
    api(aws, "put-object", "--bucket", bucket, "--key", "r.bin", "--body", tmp_path / "r.bin")
    watch = wire.watch(bucket)
    got = api(aws, "get-object", "--bucket", bucket, "--key", "r.bin", "--range", "bytes=100-199", tmp_path / "p")
    assert got["ContentRange"] == f"bytes 100-199/{len(body)}" and got["ContentLength"] == 100
    assert (tmp_path / "p").read_bytes() == body[100:200]
    api(aws, "get-object", "--bucket", bucket, "--key", "r.bin", "--range", "bytes=-10", tmp_path / "s")
    assert (tmp_path / "s").read_bytes() == body[-10:]
    watch.expect("GetObject", status=206, at_least=2)


@cell("list_delimiter")
def test_list_delimiter(aws: Cli, listing_bucket: str) -> None:
    keys, prefixes = expected_listing("photos/", "/")
    out = api(aws, "list-objects-v2", "--bucket", listing_bucket, "--prefix", "photos/", "--delimiter", "/")
    assert [o["Key"] for o in out["Contents"]] == keys
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == prefixes
    keys, prefixes = expected_listing("", "/")
    out = api(aws, "list-objects", "--bucket", listing_bucket, "--delimiter", "/")
    assert [o["Key"] for o in out["Contents"]] == keys
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == prefixes
    lines = aws("s3", "ls", f"s3://{listing_bucket}/").stdout.splitlines()
    assert sorted(line.split()[-1] for line in lines if "PRE" in line) == sorted(prefixes)
    assert any(line.endswith(" top.txt") for line in lines)


@cell("list_paging")
def test_list_paging(aws: Cli, listing_bucket: str, wire: Wire) -> None:
    watch = wire.watch(listing_bucket)
    # --page-size makes the CLI fetch 3 keys per request and follow the continuation itself.
    out = api(aws, "list-objects-v2", "--bucket", listing_bucket, "--page-size", "3")
    assert [o["Key"] for o in out["Contents"]] == LISTING_KEYS
    first = api(aws, "list-objects", "--bucket", listing_bucket, "--page-size", "2", "--max-items", "5")
    assert [o["Key"] for o in first["Contents"]] == LISTING_KEYS[:5]
    rest = api(aws, "list-objects", "--bucket", listing_bucket, "--page-size", "2",
               "--starting-token", first["NextToken"])  # fmt: skip
    assert [o["Key"] for o in rest["Contents"]] == LISTING_KEYS[5:]
    recursive = aws("s3", "ls", f"s3://{listing_bucket}", "--recursive", "--page-size", "4").stdout
    assert [line.split(None, 3)[3] for line in recursive.splitlines()] == LISTING_KEYS
    watch.expect(LIST, status=200, at_least=4 + 3 + 3 + 3)


@cell("batch_delete")
def test_batch_delete(aws: Cli, bucket: str, tmp_path: Path, wire: Wire, probe: Any) -> None:
    for key in ["del/1", "del/2", "del/3", "keep"]:
        probe.put_object(Bucket=bucket, Key=key, Body=key.encode())
    watch = wire.watch(bucket)
    request = {"Objects": [{"Key": "del/1"}, {"Key": "del/2"}, {"Key": "del/3"}, {"Key": "absent"}], "Quiet": False}
    out = api(aws, "delete-objects", "--bucket", bucket, "--delete", json.dumps(request))
    assert sorted(d["Key"] for d in out["Deleted"]) == ["absent", "del/1", "del/2", "del/3"]
    assert not out.get("Errors")
    assert [o["Key"] for o in api(aws, "list-objects-v2", "--bucket", bucket)["Contents"]] == ["keep"]
    watch.expect("DeleteObjects", status=200)


@cell("versions")
def test_versions(aws: Cli, bucket: str, tmp_path: Path, wire: Wire) -> None:
    watch = wire.watch(bucket)
    api(aws, "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration", "Status=Enabled")
    assert api(aws, "get-bucket-versioning", "--bucket", bucket)["Status"] == "Enabled"
    body, ids = tmp_path / "doc.txt", []
    for generation in range(2):
        body.write_bytes(f"generation {generation}".encode())
        ids.append(api(aws, "put-object", "--bucket", bucket, "--key", "doc.txt", "--body", body)["VersionId"])
    marker = api(aws, "delete-object", "--bucket", bucket, "--key", "doc.txt")
    assert marker["DeleteMarker"] is True
    listed = api(aws, "list-object-versions", "--bucket", bucket)
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker["VersionId"], True)]
    old = tmp_path / "old.txt"
    api(aws, "get-object", "--bucket", bucket, "--key", "doc.txt", "--version-id", ids[0], old)
    assert old.read_bytes() == b"generation 0"
    for vid in [*ids, marker["VersionId"]]:
        api(aws, "delete-object", "--bucket", bucket, "--key", "doc.txt", "--version-id", vid)
    assert not api(aws, "list-object-versions", "--bucket", bucket).get("Versions")
    watch.expect("PutBucketVersioning", status=200)
    watch.expect("ListObjectVersions", status=200, at_least=2)


@cell("multipart")
def test_multipart(aws: Cli, bucket: str, big_file: Path, tmp_path: Path, wire: Wire) -> None:
    watch = wire.watch(bucket)
    # 12 MiB over the 8 MiB threshold: two parts; the metadata rides on CreateMultipartUpload.
    aws("s3", "cp", big_file, f"s3://{bucket}/big.bin", "--metadata", "kind=big", "--content-type", "application/x-big")
    head = api(aws, "head-object", "--bucket", bucket, "--key", "big.bin")
    assert head["ContentLength"] == big_file.stat().st_size and head["ETag"].strip('"').endswith("-2")
    assert head["Metadata"] == {"kind": "big"} and head["ContentType"] == "application/x-big"
    aws("s3", "cp", f"s3://{bucket}/big.bin", tmp_path / "down.bin")
    assert sha256((tmp_path / "down.bin").read_bytes()) == sha256(big_file.read_bytes())
    watch.expect("CompleteMultipartUpload", status=200)
    # s3api's own multipart commands: one small (last) part is allowed.
    (tmp_path / "part").write_bytes(b"one small part")
    upload = api(aws, "create-multipart-upload", "--bucket", bucket, "--key", "manual.txt")["UploadId"]
    part = api(aws, "upload-part", "--bucket", bucket, "--key", "manual.txt", "--upload-id", upload,
               "--part-number", "1", "--body", tmp_path / "part")  # fmt: skip
    uploads = api(aws, "list-multipart-uploads", "--bucket", bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload]
    parts = api(aws, "list-parts", "--bucket", bucket, "--key", "manual.txt", "--upload-id", upload)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, part["ETag"])]
    done = json.dumps({"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    api(aws, "complete-multipart-upload", "--bucket", bucket, "--key", "manual.txt", "--upload-id", upload,
        "--multipart-upload", done)  # fmt: skip
    api(aws, "get-object", "--bucket", bucket, "--key", "manual.txt", tmp_path / "manual")
    assert (tmp_path / "manual").read_bytes() == b"one small part"


@cell("presigned_get")
def test_presigned_get(aws: Cli, bucket: str, probe: Any) -> None:
    probe.put_object(Bucket=bucket, Key=PRESIGNED_KEY, Body=b"presigned by the aws cli")
    url = aws("s3", "presign", f"s3://{bucket}/{PRESIGNED_KEY}", "--expires-in", "300").stdout.strip()
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == b"presigned by the aws cli"
    assert requests.get(tampered(url), timeout=30).status_code == 403


@cell("presigned_put")
def test_presigned_put() -> None:
    not_supported("`aws s3 presign` makes GET URLs only; no AWS CLI command presigns a PUT")


@cell("sync")
def test_sync(aws: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    local = make_sync_tree(tmp_path / "tree")
    aws("s3", "sync", local, f"s3://{bucket}/tree/")
    change_sync_tree(local)
    out = aws("s3", "sync", local, f"s3://{bucket}/tree/", "--delete").stdout
    assert "delete: s3://" in out
    assert_synced(probe, bucket)
    back = tmp_path / "back"
    aws("s3", "sync", f"s3://{bucket}/tree/", back)
    assert (back / "a.txt").read_text() == "a2 is longer" and (back / "c.txt").read_text() == "c1"
    assert not (back / "sub").exists()


@cell("tagging")
def test_tagging(aws: Cli, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "tagged"
    src.write_bytes(b"tagged")
    api(aws, "put-object", "--bucket", bucket, "--key", "tagged", "--body", src, "--tagging", "team=storage")
    api(aws, "put-object-tagging", "--bucket", bucket, "--key", "tagged",
        "--tagging", "TagSet=[{Key=team,Value=storage},{Key=tier,Value=hot}]")  # fmt: skip
    got = api(aws, "get-object-tagging", "--bucket", bucket, "--key", "tagged")["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == {"team": "storage", "tier": "hot"}
    api(aws, "delete-object-tagging", "--bucket", bucket, "--key", "tagged")
    assert api(aws, "get-object-tagging", "--bucket", bucket, "--key", "tagged")["TagSet"] == []
    api(aws, "put-bucket-tagging", "--bucket", bucket, "--tagging", "TagSet=[{Key=owner,Value=ops}]")
    assert api(aws, "get-bucket-tagging", "--bucket", bucket)["TagSet"] == [{"Key": "owner", "Value": "ops"}]
    api(aws, "delete-bucket-tagging", "--bucket", bucket)
    missing = aws("s3api", "get-bucket-tagging", "--bucket", bucket, check=False)
    assert missing.returncode != 0 and "NoSuchTagSet" in missing.stderr
