"""s3cmd against the endpoint, one test per feature-matrix cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from .clients import (
    LIST,
    PRESIGNED_KEY,
    THOUSAND_KEYS,
    Cli,
    Endpoint,
    Wire,
    assert_synced,
    change_sync_tree,
    expected_listing,
    make_sync_tree,
    not_supported,
    s3cmd,
    sha256,
    tampered,
)

CLIENT = "s3cmd"


def cell(operation: str) -> pytest.MarkDecorator:
    return pytest.mark.cell(CLIENT, operation)


@pytest.fixture(scope="module")
def sc(endpoint: Endpoint, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return s3cmd(endpoint, tmp_path_factory.mktemp("s3cmd"))


def listed(output: str) -> list[str]:
    """The s3:// names of an `s3cmd ls` listing, files and DIR lines alike."""
    return [line[line.index("s3://") :] for line in output.splitlines() if "s3://" in line]


@cell("buckets")
def test_buckets(sc: Cli, new_bucket: Any, probe: Any) -> None:
    name = new_bucket(create=False)
    sc("mb", f"s3://{name}")
    assert f"s3://{name}" in listed(sc("ls").stdout)
    info = sc("info", f"s3://{name}").stdout
    assert "Location:" in info and "us-east-1" in info
    sc("rb", f"s3://{name}")
    assert f"s3://{name}" not in listed(sc("ls").stdout)
    assert name not in [b["Name"] for b in probe.list_buckets()["Buckets"]]


@cell("objects")
def test_objects(sc: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello from s3cmd\n" * 30)
    sc("put", src, f"s3://{bucket}/dir/hello.txt")
    info = sc("info", f"s3://{bucket}/dir/hello.txt").stdout  # a HEAD
    assert f"File size: {src.stat().st_size}" in info
    sc("get", f"s3://{bucket}/dir/hello.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()
    sc("del", f"s3://{bucket}/dir/hello.txt")
    missing = sc("get", f"s3://{bucket}/dir/hello.txt", tmp_path / "gone.txt", check=False)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert "Contents" not in probe.list_objects_v2(Bucket=bucket)


@cell("metadata")
def test_metadata(sc: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    src = tmp_path / "m.txt"
    src.write_text("metadata")
    sc("put", "--mime-type=text/x-conformance", "--add-header=x-amz-meta-color:blue",
       "--add-header=Cache-Control:max-age=60", src, f"s3://{bucket}/m.txt")  # fmt: skip
    info = sc("info", f"s3://{bucket}/m.txt").stdout
    assert "MIME type: text/x-conformance" in info and "x-amz-meta-color: blue" in info
    head = probe.head_object(Bucket=bucket, Key="m.txt")
    assert head["ContentType"] == "text/x-conformance" and head["CacheControl"] == "max-age=60"
    assert head["Metadata"]["color"] == "blue"


@cell("copy")
def test_copy(sc: Cli, bucket: str, tmp_path: Path, wire: Wire, probe: Any) -> None:
    src = tmp_path / "c.txt"
    src.write_text("copy me")
    sc("put", "--add-header=x-amz-meta-a:1", src, f"s3://{bucket}/src.txt")
    watch = wire.watch(bucket)
    sc("cp", f"s3://{bucket}/src.txt", f"s3://{bucket}/dst.txt")
    sc("modify", "--add-header=x-amz-meta-b:2", f"s3://{bucket}/dst.txt")  # a copy onto itself, REPLACE
    head = probe.head_object(Bucket=bucket, Key="dst.txt")
    assert head["Metadata"]["a"] == "1" and head["Metadata"]["b"] == "2"
    sc("mv", f"s3://{bucket}/dst.txt", f"s3://{bucket}/moved.txt")
    assert probe.get_object(Bucket=bucket, Key="moved.txt")["Body"].read() == b"copy me"
    watch.expect("CopyObject", status=200, at_least=3)


@cell("range")
def test_range(sc: Cli, bucket: str, tmp_path: Path, wire: Wire, probe: Any) -> None:
    body = bytes(range(256)) * 8
    probe.put_object(Bucket=bucket, Key="r.bin", Body=body)
    partial = tmp_path / "r.bin"
    partial.write_bytes(body[:700])
    watch = wire.watch(bucket)
    # `get --continue` resumes a partial download with a Range request for the rest.
    sc("get", "--continue", f"s3://{bucket}/r.bin", partial)
    assert partial.read_bytes() == body
    watch.expect("GetObject", status=206)


@cell("list_delimiter")
def test_list_delimiter(sc: Cli, listing_bucket: str) -> None:
    for prefix in ("", "photos/", "docs/"):
        keys, prefixes = expected_listing(prefix, "/")
        names = listed(sc("ls", f"s3://{listing_bucket}/{prefix}").stdout)
        assert sorted(names) == sorted(f"s3://{listing_bucket}/{name}" for name in prefixes + keys)


@cell("list_paging")
def test_list_paging(sc: Cli, thousand_bucket: str, wire: Wire) -> None:
    watch = wire.watch(thousand_bucket)
    # s3cmd cannot ask for small pages: 1003 keys make the gateway answer in two (1000 is the page maximum).
    names = listed(sc("ls", "--recursive", f"s3://{thousand_bucket}").stdout)
    assert names == [f"s3://{thousand_bucket}/{k}" for k in THOUSAND_KEYS]
    watch.expect(LIST, status=200, at_least=2)
    assert listed(sc("ls", "--limit", "5", f"s3://{thousand_bucket}/k/").stdout) == [
        f"s3://{thousand_bucket}/{k}" for k in THOUSAND_KEYS[:5]
    ]


@cell("batch_delete")
def test_batch_delete(sc: Cli, bucket: str, wire: Wire, probe: Any) -> None:
    for key in ["del/1", "del/2", "del/sub/3", "keep"]:
        probe.put_object(Bucket=bucket, Key=key, Body=key.encode())
    watch = wire.watch(bucket)
    out = sc("del", "--recursive", "--force", f"s3://{bucket}/del/").stdout
    assert out.count("delete:") == 3
    assert [o["Key"] for o in probe.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]
    watch.expect("DeleteObjects", status=200)


@cell("versions")
def test_versions() -> None:
    not_supported("s3cmd has no commands for object versions")


@cell("multipart")
def test_multipart(sc: Cli, bucket: str, big_file: Path, tmp_path: Path, wire: Wire, probe: Any) -> None:
    watch = wire.watch(bucket)
    sc("put", "--multipart-chunk-size-mb=5", "--add-header=x-amz-meta-kind:big", big_file, f"s3://{bucket}/big.bin")
    watch.expect("UploadPart", status=200, at_least=3)
    watch.expect("CompleteMultipartUpload", status=200)
    head = probe.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == big_file.stat().st_size and head["ETag"].strip('"').endswith("-3")
    assert head["Metadata"]["kind"] == "big"
    sc("get", f"s3://{bucket}/big.bin", tmp_path / "down.bin")
    assert sha256((tmp_path / "down.bin").read_bytes()) == sha256(big_file.read_bytes())
    # s3cmd's own views of an open upload: `multipart` lists uploads, `listmp` its parts, `abortmp` ends it.
    upload = probe.create_multipart_upload(Bucket=bucket, Key="open.bin")["UploadId"]
    probe.upload_part(Bucket=bucket, Key="open.bin", UploadId=upload, PartNumber=1, Body=b"part one")
    assert upload in sc("multipart", f"s3://{bucket}").stdout
    assert "8" in sc("listmp", f"s3://{bucket}/open.bin", upload).stdout
    sc("abortmp", f"s3://{bucket}/open.bin", upload)
    assert not probe.list_multipart_uploads(Bucket=bucket).get("Uploads")


@cell("presigned_get")
def test_presigned_get(sc: Cli, bucket: str, probe: Any) -> None:
    probe.put_object(Bucket=bucket, Key=PRESIGNED_KEY, Body=b"signed by s3cmd")
    url = sc("signurl", f"s3://{bucket}/{PRESIGNED_KEY}", "+300").stdout.strip()
    assert "Signature=" in url and "Expires=" in url  # s3cmd signs these URLs with SigV2
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == b"signed by s3cmd"
    assert requests.get(tampered(url), timeout=30).status_code == 403


@cell("presigned_put")
def test_presigned_put() -> None:
    not_supported("`s3cmd signurl` makes GET URLs only")


@cell("sync")
def test_sync(sc: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    local = make_sync_tree(tmp_path / "tree")
    sc("sync", f"{local}/", f"s3://{bucket}/tree/")
    change_sync_tree(local)
    sc("sync", "--delete-removed", f"{local}/", f"s3://{bucket}/tree/")
    assert_synced(probe, bucket)
    back = tmp_path / "back"
    back.mkdir()
    sc("sync", f"s3://{bucket}/tree/", f"{back}/")
    assert (back / "a.txt").read_text() == "a2 is longer" and (back / "c.txt").read_text() == "c1"
    assert not (back / "sub").exists()


@cell("tagging")
def test_tagging(sc: Cli, bucket: str, tmp_path: Path, probe: Any) -> None:
    src = tmp_path / "tagged"
    src.write_bytes(b"tagged")
    sc("put", src, f"s3://{bucket}/tagged")
    sc("settagging", f"s3://{bucket}/tagged", "team=storage&tier=hot")
    shown = sc("gettagging", f"s3://{bucket}/tagged").stdout
    assert "team" in shown and "storage" in shown and "tier" in shown
    got = probe.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == {"team": "storage", "tier": "hot"}
    sc("deltagging", f"s3://{bucket}/tagged")
    assert probe.get_object_tagging(Bucket=bucket, Key="tagged")["TagSet"] == []
    sc("settagging", f"s3://{bucket}", "owner=ops")
    assert probe.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "owner", "Value": "ops"}]
    sc("deltagging", f"s3://{bucket}")
    assert "ops" not in sc("gettagging", f"s3://{bucket}", check=False).stdout
