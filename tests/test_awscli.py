"""The AWS CLI (from PyPI) against the gateway: the Go nats-s3 README flow, odd keys, and presigned URLs."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import requests

from .support import Runner, aws_cli


@pytest.fixture
def aws(gateway, tmp_path: Path) -> Runner:  # type: ignore[no-untyped-def]
    return aws_cli(gateway.endpoint, tmp_path)


def test_readme_flow(aws, tmp_path: Path) -> None:
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "upload.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    aws("s3", "mb", f"s3://{bucket}")
    assert bucket in aws("s3", "ls").stdout
    aws("s3", "cp", str(src), f"s3://{bucket}/dir/upload.bin")
    listing = aws("s3", "ls", f"s3://{bucket}/dir/").stdout
    assert "upload.bin" in listing and str(src.stat().st_size) in listing
    assert "PRE dir/" in aws("s3", "ls", f"s3://{bucket}").stdout
    dst = tmp_path / "download.bin"
    aws("s3", "cp", f"s3://{bucket}/dir/upload.bin", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    aws("s3", "rm", f"s3://{bucket}/dir/upload.bin")
    assert "upload.bin" not in aws("s3", "ls", f"s3://{bucket}", "--recursive").stdout
    aws("s3", "rb", f"s3://{bucket}")
    assert bucket not in aws("s3", "ls").stdout


def test_odd_keys_and_recursive(aws, tmp_path: Path) -> None:
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    aws("s3", "mb", f"s3://{bucket}")
    keys = ["with space.txt", "ünï/cødé.txt", "plus+sign.txt", "per%cent.txt"]
    for key in keys:
        path = tmp_path / "f"
        path.write_text(key)
        aws("s3", "cp", str(path), f"s3://{bucket}/{key}")
    out = aws("s3", "ls", f"s3://{bucket}", "--recursive").stdout
    for key in keys:
        assert key in out
    aws("s3", "cp", f"s3://{bucket}/", str(tmp_path / "down"), "--recursive")
    for key in keys:
        assert (tmp_path / "down" / key).read_text() == key
    aws("s3", "rb", f"s3://{bucket}", "--force")


def test_s3api_and_presign(aws, tmp_path: Path) -> None:
    bucket = f"cli-{uuid.uuid4().hex[:8]}"
    aws("s3api", "create-bucket", "--bucket", bucket)
    path = tmp_path / "f.txt"
    path.write_bytes(b"presigned content")
    aws(
        "s3api", "put-object", "--bucket", bucket, "--key", "f.txt", "--body", str(path), "--content-type", "text/plain"
    )
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "f.txt").stdout
    assert '"ContentType": "text/plain"' in head
    url = aws("s3", "presign", f"s3://{bucket}/f.txt", "--expires-in", "300").stdout.strip()
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.content == b"presigned content"
    missing = aws("s3api", "get-object", "--bucket", bucket, "--key", "absent", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0 and "NoSuchKey" in missing.stderr
    aws("s3api", "delete-object", "--bucket", bucket, "--key", "f.txt")
    aws("s3api", "delete-bucket", "--bucket", bucket)
