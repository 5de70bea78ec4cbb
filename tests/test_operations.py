"""Running it: Prometheus metrics, readiness, request logs, graceful shutdown, TLS, virtual-host addressing."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import make_client
from .signing import sign, start_put
from .support import SECRET_KEY, GatewayProcess, eventually, self_signed_cert, stream_state, write_credentials


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


def test_metrics_on_the_s3_port(nats_url: str, tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    bucket = f"metrics-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)  # through the session gateway: known to the new one's first usage read
    s3.put_object(Bucket=bucket, Key="seed", Body=b"x" * 5000)
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url).start()
    try:
        client = make_client(gw.endpoint)
        client.put_object(Bucket=bucket, Key="k", Body=b"y" * 12345)
        for _ in range(3):  # 12345 bytes: under the default cache's 128 KiB per object
            assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"y" * 12345
        with pytest.raises(client.exceptions.ClientError):
            client.get_object(Bucket=bucket, Key="missing")
        upload_id = client.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        text = requests.get(f"{gw.endpoint}/metrics", timeout=10).text
        assert metric_value(text, "nats_s3_requests_total", operation="PutObject", status="200") == 1
        assert metric_value(text, "nats_s3_requests_total", operation="GetObject", status="404") == 1
        assert metric_value(text, "nats_s3_request_duration_seconds_count", operation="GetObject") == 4
        assert metric_value(text, "nats_s3_read_cache_misses_total") == 1
        assert metric_value(text, "nats_s3_read_cache_hits_total") == 2
        assert (metric_value(text, "nats_s3_read_cache_bytes") or 0) >= 12345
        assert (metric_value(text, "nats_s3_received_bytes_total", operation="PutObject") or 0) >= 12345
        assert (metric_value(text, "nats_s3_sent_bytes_total", operation="GetObject") or 0) >= 12345
        assert metric_value(text, "nats_s3_requests_in_flight") == 0
        assert metric_value(text, "nats_s3_nats_connected") == 1
        assert metric_value(text, "nats_s3_nats_reconnects_total") == 0
        assert (metric_value(text, "nats_s3_bucket_bytes", bucket=bucket) or 0) >= 5000
        assert metric_value(text, "nats_s3_multipart_uploads_in_progress") is not None
        assert "# TYPE nats_s3_request_duration_seconds histogram" in text
        client.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)
        for key in ("k", "seed"):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
    finally:
        gw.stop()


def test_metrics_on_their_own_port_with_a_token(nats_url: str, tmp_path: Path) -> None:
    from nats_s3.embedded import free_port

    port = free_port()
    gw = GatewayProcess(
        write_credentials(tmp_path / "c.json"),
        nats_url,
        extra=["--metrics.listen", f"127.0.0.1:{port}", "--metrics.token", "t0ken"],
    ).start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        resp = requests.get(url, headers={"Authorization": "Bearer t0ken"}, timeout=10)
        assert resp.status_code == 200 and "nats_s3_nats_connected 1.0" in resp.text
        # On the S3 port, /metrics is just a bucket name now (one that does not exist).
        resp = requests.get(f"{gw.endpoint}/metrics", timeout=10)
        assert resp.status_code == 404 and "<Code>NoSuchBucket</Code>" in resp.text
    finally:
        gw.stop()


def test_readyz(gateway) -> None:  # type: ignore[no-untyped-def]
    resp = requests.get(f"{gateway.endpoint}/readyz", timeout=10)
    assert resp.status_code == 200 and resp.json() == {"status": "ready"}
    assert requests.get(f"{gateway.endpoint}/healthz", timeout=10).json() == {"status": "ok"}


def test_request_log_lines_and_no_secrets(nats_url: str, tmp_path: Path) -> None:
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url, extra=["--log.format", "json"]).start()
    try:
        client = make_client(gw.endpoint)
        client.create_bucket(Bucket="logged.bucket")
        client.put_object(Bucket="logged.bucket", Key="dir/file.txt", Body=b"z" * 1000)
        url = client.generate_presigned_url("get_object", Params={"Bucket": "logged.bucket", "Key": "dir/file.txt"})
        assert requests.get(url, timeout=10).status_code == 200
        bad = make_client(gw.endpoint, secret="another-secret-value")
        with pytest.raises(bad.exceptions.ClientError):
            bad.list_buckets()
        client.delete_object(Bucket="logged.bucket", Key="dir/file.txt")
        client.delete_bucket(Bucket="logged.bucket")
    finally:
        gw.stop()
    text = gw.log_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    reqs = [entry for entry in lines if entry.get("message") == "request"]
    assert [e["operation"] for e in reqs] == [
        "CreateBucket",
        "PutObject",
        "GetObject",
        "-",
        "DeleteObject",
        "DeleteBucket",
    ]
    put = reqs[1]
    assert put["bucket"] == "logged.bucket" and put["key"] == "dir/file.txt" and put["status"] == 200
    assert put["bytes_in"] == 1000 and put["access_key"] and put["request_id"] and put["duration_ms"] >= 0
    assert reqs[2]["bytes_out"] == 1000
    assert reqs[3]["status"] == 403
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", url)
    assert signature
    for secret in (SECRET_KEY, "another-secret-value", signature.group(1), "X-Amz-Signature", "Signature="):
        assert secret not in text


def test_debug_log_shows_canonical_request_on_mismatch(nats_url: str, tmp_path: Path) -> None:
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url, extra=["--log.level", "debug"]).start()
    try:
        bad = make_client(gw.endpoint, secret="another-secret-value")
        with pytest.raises(bad.exceptions.ClientError):
            bad.list_buckets()
    finally:
        gw.stop()
    text = gw.log_text()
    assert "canonical_request" in text and "another-secret-value" not in text and SECRET_KEY not in text


def test_sigterm_lets_an_inflight_put_finish(nats_url: str, tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    bucket = f"drain-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url, extra=["--shutdown-timeout", "20s"]).start()
    body = os.urandom(3_000_000)
    try:
        sock = start_put(gw.endpoint, f"/{bucket}/finishing", len(body), body[:1_000_000])
        time.sleep(0.5)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # New connections are refused while the upload in flight still finishes.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", gw.port), timeout=2).close()
        sock.sendall(body[1_000_000:])
        answer = sock.recv(65536)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert gw.proc.wait(30) == 0
    finally:
        gw.stop()
    assert s3.get_object(Bucket=bucket, Key="finishing")["Body"].read() == body
    s3.delete_object(Bucket=bucket, Key="finishing")
    s3.delete_bucket(Bucket=bucket)


def test_sigterm_past_the_grace_leaves_nothing_behind(nats_url: str, tmp_path: Path, s3) -> None:  # type: ignore[no-untyped-def]
    bucket = f"cut-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url, extra=["--shutdown-timeout", "1s"]).start()
    try:
        sock = start_put(gw.endpoint, f"/{bucket}/abandoned", 5_000_000, os.urandom(2_000_000))
        time.sleep(0.5)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
        sock.close()
    finally:
        gw.stop()
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="abandoned")
    # No chunk of the cut upload is left once the collector's grace has passed.
    assert eventually(lambda: stream_state(nats_url, bucket), lambda state: state == (0, 0)) == (0, 0)
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_tls_with_boto3_aws_chunked_trailers(nats_url: str, tmp_path: Path, tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    gw = GatewayProcess(
        write_credentials(tmp_path / "c.json"), nats_url, extra=["--tls.cert", str(cert), "--tls.key", str(key)]
    )
    endpoint = f"https://localhost:{gw.port}"
    gw.start(health_url=f"{endpoint}/readyz", verify=str(cert))
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test-access-key",
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            verify=str(cert),
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        sent: list[dict[str, str]] = []
        client.meta.events.register(
            "before-send.s3.PutObject", lambda request, **_: sent.append(dict(request.headers.items()))
        )
        client.create_bucket(Bucket="tls.bucket")
        data = os.urandom(3_000_000)
        put = client.put_object(Bucket="tls.bucket", Key="secure", Body=data)
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in sent[0].items()}
        assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
        assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
        got = client.get_object(Bucket="tls.bucket", Key="secure", ChecksumMode="ENABLED")
        assert got["Body"].read() == data
        assert got["ChecksumCRC32"] == put["ChecksumCRC32"]
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{endpoint}/healthz", timeout=10)  # not trusted without the cert
        assert requests.get(f"{endpoint}/healthz", verify=str(cert), timeout=10).status_code == 200
        # The image's HEALTHCHECK follows TLS: the same flags make it ask https://.
        check = [sys.executable, "-m", "nats_s3.healthcheck", *gw.args[gw.args.index("--listen") :]]
        assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
        client.delete_object(Bucket="tls.bucket", Key="secure")
        client.delete_bucket(Bucket="tls.bucket")
    finally:
        gw.stop()


def test_bad_tls_files_exit_with_one_line(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nats_s3",
            "--s3.credentials",
            str(write_credentials(tmp_path / "c.json")),
            "--tls.cert",
            str(cert),
            "--tls.key",
            str(cert),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "tls" in proc.stderr.lower()


def test_virtual_host_addressing(nats_url: str, tmp_path: Path) -> None:
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), nats_url, extra=["--domain", "s3.example.test"]).start()
    try:
        path_style = make_client(gw.endpoint)
        path_style.create_bucket(Bucket="vhost.bucket")
        host = f"vhost.bucket.s3.example.test:{gw.port}"

        def vreq(method: str, path: str, body: bytes = b"") -> requests.Response:
            headers = sign(method, f"http://{host}{path}", body=body)
            headers["Host"] = host
            return requests.request(method, f"{gw.endpoint}{path}", data=body, headers=headers, timeout=10)

        assert vreq("PUT", "/a%20b/c.txt", b"virtual").status_code == 200
        assert vreq("GET", "/a%20b/c.txt").content == b"virtual"
        listing = vreq("GET", "/?list-type=2")
        assert listing.status_code == 200 and "<Key>a b/c.txt</Key>" in listing.text
        assert path_style.get_object(Bucket="vhost.bucket", Key="a b/c.txt")["Body"].read() == b"virtual"
        assert vreq("DELETE", "/a%20b/c.txt").status_code == 204
        path_style.delete_bucket(Bucket="vhost.bucket")
    finally:
        gw.stop()


def test_read_header_timeout_closes_slow_clients(nats_url: str, tmp_path: Path) -> None:
    gw = GatewayProcess(
        write_credentials(tmp_path / "c.json"), nats_url, extra=["--http.read-header-timeout", "1s"]
    ).start()
    try:
        silent = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        trickle = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        trickle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert silent.recv(1024) == b""  # closed by the gateway
        assert trickle.recv(1024) == b""
        assert time.monotonic() - started < 5
        silent.close()
        trickle.close()
        # A client that sends its head in time is served as usual, also on a kept-alive connection.
        session = requests.Session()
        for _ in range(2):
            assert session.get(f"{gw.endpoint}/healthz", timeout=10).status_code == 200
            time.sleep(1.5)
        assert session.get(f"{gw.endpoint}/healthz", timeout=10).status_code == 200
    finally:
        gw.stop()
