"""`nats-s3 admin`, run as an operator runs it, against the NATS of a running gateway."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import make_client
from .support import REPO, GatewayProcess, eventually, free_port, write_credentials


def admin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nats_s3", "admin", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_bucket_info_list_and_usage(s3, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x" * (1000 + i))
    s3.delete_object(Bucket=bucket, Key="k4")  # a delete marker: 4 objects left
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
    try:
        got = admin("--natsServers", nats_url, "--json", "bucket", "info", bucket)
        assert got.returncode == 0, got.stderr
        info = json.loads(got.stdout)
        assert info["bucket"] == bucket and info["versioning"] == "Enabled" and info["replicas"] == 1
        assert info["owner"]
        assert info["usage"]["objects"] == 4 and info["usage"]["delete_markers"] == 1
        assert info["usage"]["uploads_in_progress"] == 1
        assert info["usage"]["bytes"] >= sum(1000 + i for i in range(5))

        human = admin("--natsServers", nats_url, "bucket", "info", bucket)
        assert human.returncode == 0 and "versioning" in human.stdout and "Enabled" in human.stdout

        listed = json.loads(admin("--natsServers", nats_url, "--json", "bucket", "list").stdout)
        mine = [row for row in listed if row["bucket"] == bucket]
        assert len(mine) == 1 and mine[0]["objects"] == 4 and mine[0]["created"]

        usage = json.loads(admin("--natsServers", nats_url, "--json", "usage").stdout)
        assert any(row["bucket"] == bucket for row in usage["buckets"])
        assert usage["total"]["objects"] == sum(row["objects"] for row in usage["buckets"])
        assert usage["total"]["bytes"] == sum(row["bytes"] for row in usage["buckets"])
        table = admin("--natsServers", nats_url, "usage")
        assert table.returncode == 0 and table.stdout.splitlines()[-1].startswith("TOTAL")
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="big", UploadId=upload)


def test_exit_codes(nats_url: str, tmp_path: Path) -> None:
    missing = admin("--natsServers", nats_url, "bucket", "info", "no-such-bucket-here")
    assert missing.returncode == 3 and "no such bucket" in missing.stderr
    down = admin("--natsServers", f"nats://127.0.0.1:{free_port()}", "bucket", "list")
    assert down.returncode == 1 and "not reached" in down.stderr
    nowhere = admin("--data-dir", str(tmp_path), "bucket", "list")
    assert nowhere.returncode == 2 and "no --natsServers" in nowhere.stderr
    assert admin("bucket").returncode == 2  # no action


def test_credentials_check(tmp_path: Path) -> None:
    good = write_credentials(tmp_path / "good.json")
    ok = admin("--json", "credentials", "check", str(good))
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True
    assert "secret" not in ok.stdout.lower() or "secretKey" not in ok.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"credentials":[{"accessKey":"ab","secretKey":"x"}]}')
    refused = admin("credentials", "check", str(bad))
    assert refused.returncode == 4 and "access key" in refused.stderr


def test_the_embedded_server_found_by_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    gw = GatewayProcess(write_credentials(tmp_path / "creds.json"), None, data_dir=data).start(60)
    try:
        make_client(gw.endpoint).create_bucket(Bucket="embedded-one")
        got = admin("--data-dir", str(data), "--json", "bucket", "list")
        assert got.returncode == 0, got.stderr
        assert [row["bucket"] for row in json.loads(got.stdout)] == ["embedded-one"]
    finally:
        gw.stop()
    assert not (data / "nats.url").exists()


def test_gc_status_shows_the_collectors_last_pass(s3, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    """The suite's gateway collects every second or two (GC_ARGS): its leader records each pass."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_object(Bucket=bucket, Key="k", Body=b"y")  # the first version's chunks are the collector's now

    def status() -> dict:  # type: ignore[type-arg]
        got = admin("--natsServers", nats_url, "--json", "gc", "status")
        return json.loads(got.stdout) if got.returncode == 0 else {}

    # A pass that listed the buckets before this one was made counts none: wait for one after.
    first = eventually(status, lambda s: s.get("buckets", 0) >= 1)
    assert first["holder"] and first["finished_at"] and first["seconds"] >= 0, first
    later = eventually(
        status, lambda s: s.get("finished_at", "") > first["finished_at"] or s["passes"] > first["passes"]
    )
    assert later["passes"] >= first["passes"]
    human = admin("--natsServers", nats_url, "gc", "status")
    assert human.returncode == 0 and "last pass" in human.stdout
