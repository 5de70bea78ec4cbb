"""rclone's S3 backend (copy, sync, ls, cat, delete, link) against the endpoint, one test per matrix cell."""

from __future__ import annotations

import json
import time
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
    change_sync_tree,
    expected_listing,
    make_sync_tree,
    md5_etag,
    not_supported,
    rclone,
    sha256,
    tampered,
)

CLIENT = "rclone"


def cell(operation: str) -> pytest.MarkDecorator:
    return pytest.mark.cell(CLIENT, operation)


@pytest.fixture(scope="module")
def rc(endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return rclone(endpoint, tmp_path_factory.mktemp("rclone"))


def stat(rc: Cli, path: str, *extra: str) -> Any:
    return json.loads(rc("lsjson", "--stat", *extra, path).stdout)


@cell("buckets")
def test_buckets(rc: Cli, new_bucket: Any, probe: Any, wire: Wire) -> None:
    name = new_bucket(create=False)
    watch = wire.watch(name)
    rc("mkdir", f"gw:{name}")
    watch.expect("CreateBucket", status=200)
    assert f" {name}" in rc("lsd", "gw:").stdout
    assert name in rc("lsf", "gw:", "--dirs-only").stdout.split("/\n")
    rc("rmdir", f"gw:{name}")
    watch.expect("DeleteBucket", status=204)
    assert f" {name}" not in rc("lsd", "gw:").stdout
    assert name not in [b["Name"] for b in probe.list_buckets()["Buckets"]]


@cell("objects")
def test_objects(rc: Cli, bucket: str, tmp_path: Path, wire: Wire) -> None:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from rclone\n" * 40)
    watch = wire.watch(bucket)
    rc("copyto", src, f"gw:{bucket}/dir/hello.txt")
    watch.expect("PutObject", status=200)
    info = stat(rc, f"gw:{bucket}/dir/hello.txt", "--hash")
    assert info["Size"] == src.stat().st_size and info["Hashes"]["md5"] == md5_etag(src.read_bytes())
    assert rc("cat", f"gw:{bucket}/dir/hello.txt").stdout.encode() == src.read_bytes()
    rc("copyto", f"gw:{bucket}/dir/hello.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()
    rc("deletefile", f"gw:{bucket}/dir/hello.txt")
    watch.expect("DeleteObject", status=204)
    # rclone reads a missing file's path as an empty directory (no error), so ask the listing instead.
    assert rc("lsf", "-R", f"gw:{bucket}").stdout == ""


@cell("metadata")
def test_metadata(rc: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    src = tmp_path / "m.txt"
    src.write_text("metadata")
    rc("copyto", "-M", "--metadata-set", "color=blue", "--metadata-set", "owner-id=42",
       "--metadata-set", "content-type=text/x-conformance", "--metadata-set", "cache-control=max-age=60",
       src, f"gw:{bucket}/m.txt")  # fmt: skip
    meta = stat(rc, f"gw:{bucket}/m.txt", "-M")["Metadata"]
    assert meta["color"] == "blue" and meta["owner-id"] == "42"
    assert meta["content-type"] == "text/x-conformance" and meta["cache-control"] == "max-age=60"
    head = probe.head_object(Bucket=bucket, Key="m.txt")
    assert head["ContentType"] == "text/x-conformance"
    assert {"color": "blue", "owner-id": "42"}.items() <= head["Metadata"].items()


@cell("copy")
def test_copy(rc: Cli, bucket: str, tmp_path: Path, wire: Wire) -> None:
    src = tmp_path / "c.txt"
    src.write_text("copy me")
    rc("copyto", src, f"gw:{bucket}/src.txt")
    watch = wire.watch(bucket)
    rc("copyto", f"gw:{bucket}/src.txt", f"gw:{bucket}/copied.txt")  # same remote: server-side
    rc("moveto", f"gw:{bucket}/copied.txt", f"gw:{bucket}/moved.txt")  # server-side copy, then delete
    assert rc("cat", f"gw:{bucket}/moved.txt").stdout == "copy me"
    assert sorted(rc("lsf", f"gw:{bucket}").stdout.split()) == ["moved.txt", "src.txt"]
    watch.expect("CopyObject", status=200, at_least=2)
    assert "PutObject" not in [op for op, _ in watch.requests()]


@cell("range")
def test_range(rc: Cli, bucket: str, tmp_path: Path, wire: Wire) -> None:
    body = bytes(range(48, 112)) * 16
    (tmp_path / "r.bin").write_bytes(body)
    rc("copyto", tmp_path / "r.bin", f"gw:{bucket}/r.bin")
    watch = wire.watch(bucket)
    assert rc("cat", "--offset", "100", "--count", "50", f"gw:{bucket}/r.bin").stdout.encode() == body[100:150]
    assert rc("cat", "--tail", "7", f"gw:{bucket}/r.bin").stdout.encode() == body[-7:]
    watch.expect("GetObject", status=206, at_least=2)


@cell("list_delimiter")
def test_list_delimiter(rc: Cli, listing_bucket: str) -> None:
    # A non-recursive listing is a delimiter "/" listing: files, and "directories" from the common prefixes.
    for prefix in ("", "photos/", "docs/"):
        keys, prefixes = expected_listing(prefix, "/")
        out = rc("lsf", f"gw:{listing_bucket}/{prefix}").stdout.splitlines()
        assert sorted(out) == sorted([k[len(prefix) :] for k in keys] + [p[len(prefix) :] for p in prefixes])
    dirs = rc("lsd", f"gw:{listing_bucket}/photos").stdout
    assert " 2024" in dirs and " 2025" in dirs


@cell("list_paging")
def test_list_paging(rc: Cli, listing_bucket: str, wire: Wire) -> None:
    watch = wire.watch(listing_bucket)
    for version in ("1", "2"):
        out = rc("lsf", "-R", "--files-only", "--s3-list-chunk", "3", "--s3-list-version", version,
                 f"gw:{listing_bucket}").stdout.splitlines()  # fmt: skip
        assert sorted(out) == sorted(LISTING_KEYS)
    watch.expect(LIST, status=200, at_least=8)


@cell("batch_delete")
def test_batch_delete() -> None:
    not_supported("`rclone delete` and `rclone purge` send one DeleteObject per key, never DeleteObjects")


@cell("versions")
def test_versions(rc: Cli, bucket: str, tmp_path: Path, wire: Wire, probe: Any) -> None:
    # rclone has no command that enables versioning; it lists and reads the versions of a bucket that has it.
    probe.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    watch = wire.watch(bucket)
    src = tmp_path / "doc.txt"
    for generation in range(3):
        src.write_bytes(f"generation {generation}".encode())
        rc("copyto", src, f"gw:{bucket}/doc.txt")
        time.sleep(1.1)  # rclone names an older version by its time, to the second
    names = rc("lsf", "--s3-versions", f"gw:{bucket}").stdout.split()
    assert "doc.txt" in names and len([n for n in names if n.startswith("doc-v")]) == 2, names
    oldest = sorted(n for n in names if n.startswith("doc-v"))[0]
    assert rc("cat", "--s3-versions", f"gw:{bucket}/{oldest}").stdout == "generation 0"
    assert rc("cat", f"gw:{bucket}/doc.txt").stdout == "generation 2"
    watch.expect("ListObjectVersions", status=200)


@cell("multipart")
def test_multipart(rc: Cli, bucket: str, big_file: Path, tmp_path: Path, wire: Wire, probe: Any) -> None:
    watch = wire.watch(bucket)
    rc("copyto", "--s3-upload-cutoff", "5Mi", "--s3-chunk-size", "5Mi", "-M", "--metadata-set", "kind=big",
       big_file, f"gw:{bucket}/big.bin")  # fmt: skip
    watch.expect("UploadPart", status=200, at_least=3)
    watch.expect("CompleteMultipartUpload", status=200)
    head = probe.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == big_file.stat().st_size and head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["kind"] == "big"
    # And back in three concurrent ranged streams, as rclone fetches big files.
    rc("copyto", "--multi-thread-cutoff", "5Mi", "--multi-thread-streams", "3", "--multi-thread-chunk-size", "4Mi",
       f"gw:{bucket}/big.bin", tmp_path / "down.bin")  # fmt: skip
    assert sha256((tmp_path / "down.bin").read_bytes()) == sha256(big_file.read_bytes())
    watch.expect("GetObject", status=206, at_least=3)
    rc("check", "--download", big_file.parent, f"gw:{bucket}", "--include", "big.bin")


@cell("presigned_get")
def test_presigned_get(rc: Cli, bucket: str, probe: Any) -> None:
    probe.put_object(Bucket=bucket, Key=PRESIGNED_KEY, Body=b"linked by rclone")
    # For S3, `rclone link` signs a GetObject URL (SigV4 query string) that expires.
    url = rc("link", "--expire", "5m", f"gw:{bucket}/{PRESIGNED_KEY}").stdout.strip()
    assert "X-Amz-Signature=" in url
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == b"linked by rclone"
    assert requests.get(tampered(url), timeout=30).status_code == 403


@cell("presigned_put")
def test_presigned_put() -> None:
    not_supported("`rclone link` makes download (GET) links only")


@cell("sync")
def test_sync(rc: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    local = make_sync_tree(tmp_path / "tree")
    rc("sync", local, f"gw:{bucket}/tree")
    change_sync_tree(local)
    rc("sync", local, f"gw:{bucket}/tree")
    rc("check", local, f"gw:{bucket}/tree")
    assert_synced(probe, bucket)
    back = tmp_path / "back"
    rc("sync", f"gw:{bucket}/tree", back)
    assert (back / "a.txt").read_text() == "a2 is longer"
    assert sorted(p.name for p in back.iterdir()) == ["a.txt", "c.txt"]


@cell("tagging")
def test_tagging() -> None:
    not_supported("rclone has no command that sets or reads S3 object or bucket tags")
