"""The command line: Go-compatible flags and environment, credential file rules, embedded NATS, reconnects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from nats_s3.cli import settings_from

from .conftest import make_client
from .support import GatewayProcess, NatsServerProcess, write_credentials


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nats_s3", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--listen", "nonsense"], "--listen"),
        (["--natsReplicas", "x"], "--natsReplicas"),
        (["--natsReplicas", "9"], "--natsReplicas"),
        (["--http.idle-timeout", "soon"], "--http.idle-timeout"),
        (["--log.format", "xml"], "--log.format"),
        (["--cache.size", "lots"], "--cache.size"),
        (["--cache.size", "-1"], "--cache.size"),
        (["--natsServers", "localhost:4222"], "--natsServers"),
        (["--no-such-flag"], "unrecognized"),
        ([], "--s3.credentials"),
    ],
)
def test_bad_flags_exit_with_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    proc = run_cli(*args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "content,fragment",
    [
        ('{"credentials": []}', "empty"),
        ('{"credentials": [{"accessKey": "ab", "secretKey": "12345678"}]}', "at least 3"),
        ('{"credentials": [{"accessKey": "a=b", "secretKey": "12345678"}]}', "'='"),
        ('{"credentials": [{"accessKey": "a,bc", "secretKey": "12345678"}]}', "','"),
        ('{"credentials": [{"accessKey": "abc", "secretKey": "1234567"}]}', "at least 8"),
        (
            '{"credentials": [{"accessKey": "abc", "secretKey": "12345678"},'
            ' {"accessKey": "abc", "secretKey": "87654321"}]}',
            "duplicate",
        ),
        ("{not json", "not JSON"),
        ('{"creds": []}', "credentials"),
    ],
)
def test_bad_credentials_files(content: str, fragment: str, tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(content)
    proc = run_cli("--s3.credentials", str(path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]


def test_missing_credentials_file(tmp_path: Path) -> None:
    proc = run_cli("--s3.credentials", str(tmp_path / "absent.json"))
    assert proc.returncode != 0
    assert "cannot read credentials file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_flags_and_environment() -> None:
    env = {
        "NATS_S3_LISTEN": "127.0.0.1:7000",
        "NATS_S3_NATS_SERVERS": "nats://a:4222, nats://b:4222",
        "NATS_S3_NATS_REPLICAS": "3",
        "NATS_S3_HTTP_IDLE_TIMEOUT": "1m30s",
        "NATS_S3_LOG_FORMAT": "json",
    }
    settings = settings_from([], env)
    assert settings.listen == "127.0.0.1:7000"
    assert settings.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert settings.nats_replicas == 3
    assert settings.http_idle_timeout == 90
    assert settings.log_format == "json"
    settings = settings_from(
        [
            "--listen",
            "0.0.0.0:9000",
            "--s3.credentials",
            "c.json",
            "--data-dir",
            "/tmp/x",
            "--natsUser",
            "u",
            "--natsPassword",
            "p",
            "--log.level",
            "debug",
        ],
        env,
    )
    assert settings.listen == "0.0.0.0:9000"
    assert str(settings.credentials_file) == "c.json"
    assert str(settings.data_dir) == "/tmp/x"
    assert (settings.nats_user, settings.nats_password, settings.log_level) == ("u", "p", "debug")
    assert settings_from(["--cache.size", "64MiB"], {}).read_cache_size == 64 * 1024 * 1024
    assert settings_from([], {"NATS_S3_CACHE_SIZE": "0"}).read_cache_size == 0
    assert settings_from([], {"NATS_S3_CACHE_SIZE": "1.5GB"}).read_cache_size == 1_500_000_000
    defaults = settings_from([], {})
    assert defaults.read_cache_size == 32 * 1024 * 1024
    assert defaults.listen == "0.0.0.0:5222"
    assert defaults.nats_servers == []


def test_embedded_nats_keeps_data_across_restarts(tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    data_dir = tmp_path / "data"
    gw = GatewayProcess(creds, None, data_dir=data_dir).start()
    try:
        client = make_client(gw.endpoint)
        client.create_bucket(Bucket="embedded.data")
        client.put_object(Bucket="embedded.data", Key="persist", Body=b"survives restarts")
    finally:
        assert gw.stop() == 0
    assert (data_dir / "jetstream").is_dir()
    gw = GatewayProcess(creds, None, data_dir=data_dir).start()
    try:
        client = make_client(gw.endpoint)
        assert client.get_object(Bucket="embedded.data", Key="persist")["Body"].read() == b"survives restarts"
    finally:
        gw.stop()
    # The embedded nats-server went away with the gateway: no nats-server holds the data dir.
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(data_dir.resolve()) not in out


def _probe(endpoint: str, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"{endpoint}{path}", timeout=3) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def test_reconnects_after_nats_loss(tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    server = NatsServerProcess(store_dir=tmp_path / "js").start()
    gw = GatewayProcess(creds, server.url).start()
    try:
        client = make_client(gw.endpoint)
        client.create_bucket(Bucket="reconnect")
        client.put_object(Bucket="reconnect", Key="k", Body=b"before")
        assert _probe(gw.endpoint, "/readyz") == (200, {"status": "ready"})
        server.stop()
        deadline = time.monotonic() + 15
        while _probe(gw.endpoint, "/readyz")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = _probe(gw.endpoint, "/readyz")
        assert status == 503 and body["reason"] == "not connected to NATS"
        assert _probe(gw.endpoint, "/healthz")[0] == 200  # alive all the same
        assert "nats_s3_nats_connected 0.0" in _metrics(gw.endpoint)
        started = time.monotonic()
        with pytest.raises(client.exceptions.ClientError) as err:
            client.get_object(Bucket="reconnect", Key="k")
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert time.monotonic() - started < 2  # refused at once, not after a NATS timeout
        server.start()
        deadline = time.monotonic() + 20
        while _probe(gw.endpoint, "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _probe(gw.endpoint, "/readyz")[0] == 200
        assert client.get_object(Bucket="reconnect", Key="k")["Body"].read() == b"before"
        text = _metrics(gw.endpoint)
        assert "nats_s3_nats_connected 1.0" in text and "nats_s3_nats_reconnects_total 1.0" in text
    finally:
        gw.stop()
        server.cleanup()


def _metrics(endpoint: str) -> str:
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=3) as resp:
        return str(resp.read().decode())


def test_json_logs(tmp_path: Path, nats_url: str) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    gw = GatewayProcess(creds, nats_url, extra=["--log.format", "json"]).start()
    try:
        make_client(gw.endpoint).list_buckets()
    finally:
        gw.stop()
    lines = [json.loads(line) for line in gw.log_text().splitlines() if line.startswith("{")]
    requests_logged = [entry for entry in lines if entry.get("operation") == "ListBuckets"]
    assert requests_logged and requests_logged[0]["status"] == 200
    assert all("secret" not in json.dumps(entry).lower() for entry in lines)


def test_sigterm_exits_promptly_while_nats_is_down(tmp_path: Path) -> None:
    creds = write_credentials(tmp_path / "creds.json")
    server = NatsServerProcess(store_dir=tmp_path / "js").start()
    gw = GatewayProcess(creds, server.url).start()
    try:
        server.stop()
        time.sleep(1.5)
        started = time.monotonic()
        code = gw.stop()
        assert code == 0
        assert time.monotonic() - started < 10
    finally:
        gw.stop()
        server.cleanup()


def test_the_gateway_runs_on_uvloop_unless_told_to_use_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import uvloop

    from nats_s3.cli import event_loop_factory

    monkeypatch.delenv("NATS_S3_EVENT_LOOP", raising=False)
    factory = event_loop_factory()
    assert factory is uvloop.new_event_loop
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv("NATS_S3_EVENT_LOOP", "asyncio")
    assert event_loop_factory() is None
    with asyncio.Runner(loop_factory=None) as runner:
        assert not isinstance(runner.get_loop(), uvloop.Loop)
