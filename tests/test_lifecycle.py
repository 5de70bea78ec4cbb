"""Starting and stopping as a new user does it: embedded nats-server tied to the gateway's life, one gateway
per data directory, process-group signals, NATS that is unreachable or comes late, and what start says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import requests

from nats_s3.embedded import PID_FILE, free_port

from .signing import sign, signed_request, start_put
from .support import GatewayProcess, NatsServerProcess, eventually, write_credentials


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nats_s3", *args], capture_output=True, text=True, timeout=timeout)


def embedded_gateway(tmp_path: Path, **kw: object) -> GatewayProcess:
    creds = tmp_path / "creds.json"
    if not creds.exists():
        write_credentials(creds)
    return GatewayProcess(creds, None, data_dir=tmp_path / "data", **kw)  # type: ignore[arg-type]


def child_pid(tmp_path: Path) -> int:
    return int((tmp_path / "data" / PID_FILE).read_text().split()[0])


def test_help_version_and_no_abbreviations() -> None:
    shown = run_cli("--help").stdout
    for placeholder in ("HOST:PORT", "FILE", "DURATION", "DIR", "examples:", "--natsServers nats://"):
        assert placeholder in shown, placeholder
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("nats-s3 ") and version.stdout.endswith("\n")
    mistyped = run_cli("--natsServer", "nats://127.0.0.1:4222", "--s3.credentials", "x.json")
    assert mistyped.returncode == 2 and "unrecognized arguments: --natsServer" in mistyped.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:4222", "127.0.0.1:4222", "nats://127.0.0.1:port", "nats://"])
def test_nats_urls_are_checked_at_start(url: str, tmp_path: Path) -> None:
    proc = run_cli("--natsServers", url, "--s3.credentials", str(write_credentials(tmp_path / "c.json")))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--natsServers" in proc.stderr, proc.stderr


def test_unreachable_nats_listens_at_once_and_gives_up_after_the_connect_timeout(tmp_path: Path) -> None:
    dead = f"nats://127.0.0.1:{free_port()}"
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), dead, extra=["--nats.connect-timeout", "4s"])
    started = time.monotonic()
    gw.start(health_url=f"{gw.endpoint}/healthz")
    try:
        ready = requests.get(f"{gw.endpoint}/readyz", timeout=5)
        assert ready.status_code == 503 and dead in ready.json()["reason"]
        r = signed_request("GET", f"{gw.endpoint}/")
        assert r.status_code == 503 and "<Code>ServiceUnavailable</Code>" in r.text
        assert gw.proc is not None
        code = gw.proc.wait(20)
        assert code != 0 and time.monotonic() - started < 15
    finally:
        gw.stop()
    log = gw.log_text()
    assert f"connecting to {dead} (attempt 2)" in log and "ConnectionRefusedError" in log
    assert "--nats.connect-timeout" in log


def test_nats_that_comes_later_is_waited_for(tmp_path: Path) -> None:
    port = free_port()
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), f"nats://127.0.0.1:{port}")
    gw.start(health_url=f"{gw.endpoint}/healthz")
    server = None
    try:
        time.sleep(1.5)
        assert requests.get(f"{gw.endpoint}/readyz", timeout=5).status_code == 503
        server = NatsServerProcess(store_dir=tmp_path / "js", port=port).start()
        ready = eventually(lambda: requests.get(f"{gw.endpoint}/readyz", timeout=5).status_code, lambda c: c == 200)
        assert ready == 200
        assert signed_request("PUT", f"{gw.endpoint}/late-nats").status_code == 200
        assert signed_request("PUT", f"{gw.endpoint}/late-nats/k", body=b"x").status_code == 200
    finally:
        gw.stop()
        if server is not None:
            server.cleanup()


def test_embedded_nats_does_not_outlive_a_killed_gateway(tmp_path: Path) -> None:
    gw = embedded_gateway(tmp_path).start()
    assert signed_request("PUT", f"{gw.endpoint}/kept").status_code == 200
    assert signed_request("PUT", f"{gw.endpoint}/kept/k", body=b"survives").status_code == 200
    nats_pid = child_pid(tmp_path)
    assert gw.proc is not None and alive(nats_pid)
    gw.proc.kill()
    gw.proc.wait(10)
    assert not eventually(lambda p=nats_pid: alive(p), lambda up: not up, timeout=10)
    again = embedded_gateway(tmp_path).start()
    try:
        assert child_pid(tmp_path) != nats_pid
        assert signed_request("GET", f"{again.endpoint}/kept/k").content == b"survives"
    finally:
        again.stop()


def test_an_orphaned_embedded_nats_is_stopped_before_a_new_one_starts(tmp_path: Path) -> None:
    """Where the death signal cannot work (it is Linux's), the next gateway finds the orphan by its pid
    file and stops it, so two servers never share the store."""
    gw = embedded_gateway(tmp_path).start()
    nats_pid = child_pid(tmp_path)
    gw.stop()
    # Stand in for an orphan: a nats-server on the same store, started by nobody's gateway.
    store = tmp_path / "data" / "jetstream"
    from nats_s3.embedded import find_nats_server

    orphan = subprocess.Popen(
        [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(free_port()), "-sd", str(store)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    (tmp_path / "data" / PID_FILE).write_text(f"{orphan.pid}\n")
    assert nats_pid != orphan.pid
    again = embedded_gateway(tmp_path).start()
    try:
        orphan.wait(15)
        assert "left running by an earlier gateway" in again.log_text()
    finally:
        again.stop()
        if orphan.poll() is None:
            orphan.kill()


def test_a_second_gateway_on_the_same_data_dir_refuses(tmp_path: Path) -> None:
    first = embedded_gateway(tmp_path).start()
    try:
        second = embedded_gateway(tmp_path)
        assert second.proc is None
        second.proc = subprocess.Popen(second.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = second.proc.communicate(timeout=30)
        assert second.proc.returncode == 1
        assert err.count("\n") == 1 and "is in use by another nats-s3" in err and str(tmp_path / "data") in err
        second.proc = None
        assert requests.get(f"{first.endpoint}/readyz", timeout=5).status_code == 200
    finally:
        first.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_whole_process_group_always_exits(tmp_path: Path, sig: signal.Signals) -> None:
    """What Ctrl-C in a terminal, `timeout`, systemd and supervisors do: signal every process of the group.
    The embedded nats-server is in its own group, so it is the gateway that stops it, last."""
    for _ in range(3):
        gw = embedded_gateway(tmp_path)
        gw.start()
        assert gw.proc is not None
        nats_pid = child_pid(tmp_path)
        # GatewayProcess starts the gateway as the leader of its own group, as a shell job would be.
        os.killpg(os.getpgid(gw.proc.pid), sig)
        assert gw.proc.wait(20) == 0, gw.log_text()[-2000:]
        gw.proc = None
        assert not eventually(lambda p=nats_pid: alive(p), lambda up: not up, timeout=10)
        assert "ConnectionRefusedError" not in gw.log_text()


def test_an_upload_in_flight_at_a_group_signal_completes(tmp_path: Path) -> None:
    gw = embedded_gateway(tmp_path, extra=["--shutdown-timeout", "20s"]).start()
    assert signed_request("PUT", f"{gw.endpoint}/inflight").status_code == 200
    body = os.urandom(2_000_000)
    sock = start_put(gw.endpoint, "/inflight/k", len(body), body[:500_000])
    time.sleep(0.3)
    assert gw.proc is not None
    os.killpg(os.getpgid(gw.proc.pid), signal.SIGTERM)
    time.sleep(0.5)
    sock.sendall(body[500_000:])
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert gw.proc.wait(30) == 0
    gw.proc = None
    again = embedded_gateway(tmp_path).start()
    try:
        assert signed_request("GET", f"{again.endpoint}/inflight/k").content == body
    finally:
        again.stop()


def test_a_second_signal_exits_at_once(tmp_path: Path) -> None:
    gw = embedded_gateway(tmp_path, extra=["--shutdown-timeout", "60s"]).start()
    assert signed_request("PUT", f"{gw.endpoint}/stuck").status_code == 200
    sock = start_put(gw.endpoint, "/stuck/k", 1_000_000, b"x" * 1000)  # never finished
    try:
        time.sleep(0.3)
        assert gw.proc is not None
        nats_pid = child_pid(tmp_path)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert gw.proc.poll() is None  # waiting for the upload, as the first signal asks
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(10) == 128 + signal.SIGTERM and time.monotonic() - started < 5
        gw.proc = None
        assert not eventually(lambda p=nats_pid: alive(p), lambda up: not up, timeout=10)
    finally:
        sock.close()
        gw.stop()


def test_start_line_example_credentials_warning_iso_json_time_and_refusal_reasons(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "credentials.example.json"
    gw = GatewayProcess(example, None, data_dir=tmp_path / "data", extra=["--log.format", "json"]).start()
    try:
        r = requests.get(f"{gw.endpoint}/", headers=sign("GET", f"{gw.endpoint}/", access="nope"), timeout=5)
        assert r.status_code == 403
    finally:
        gw.stop()
    entries = [json.loads(line) for line in gw.log_text().splitlines() if line.startswith("{")]
    start = next(e for e in entries if "listening on" in e["message"])
    assert start["version"] and start["endpoint"] == gw.endpoint and start["nats"] == "embedded"
    assert start["data_dir"] == str((tmp_path / "data").resolve()) and start["nats_url"].startswith("nats://")
    assert start["region"] == "us-east-1" and start["access_keys"] == 1
    assert start["credentials_file"].endswith("credentials.example.json")
    assert any("example credentials are in use" in e["message"] for e in entries)
    refused = next(e for e in entries if e.get("status") == 403)
    assert refused["error"] == "InvalidAccessKeyId"
    for entry in entries:
        assert time.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ"), entry["time"]


def test_healthz_is_up_before_readyz(tmp_path: Path) -> None:
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), f"nats://127.0.0.1:{free_port()}")
    gw.start(health_url=f"{gw.endpoint}/healthz")
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{gw.endpoint}/readyz", timeout=5)
        assert err.value.code == 503
    finally:
        gw.stop()


def test_a_nats_client_closed_for_good_is_replaced(nats_url: str, tmp_path: Path) -> None:
    """nats-py closes its client for good on any -ERR from the server (a subject over the control-line
    limit is one); the gateway then builds a new connection and store by itself."""
    import asyncio
    import threading

    from nats_s3.cli import settings_from
    from nats_s3.server import serve

    port = free_port()
    settings = settings_from(["--listen", f"127.0.0.1:{port}", "--natsServers", nats_url, "--gc.interval", "1s"])
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready: list[object] = []
    runner = threading.Thread(
        target=lambda: loop.run_until_complete(serve(settings, {"test-access-key": "s"}, stop, on_ready=ready.append)),
        daemon=True,
    )
    runner.start()
    try:
        assert eventually(lambda: len(ready), lambda n: n >= 1) == 1
        gateway = ready[0]
        nc = gateway.services.store.nc  # type: ignore[attr-defined]

        async def break_it() -> None:
            await nc.publish("x" * 5000, b"")

        asyncio.run_coroutine_threadsafe(break_it(), loop)
        assert eventually(lambda: nc.is_closed, bool, timeout=10)
        assert eventually(lambda: len(ready), lambda n: n >= 2, timeout=20) == 2
        assert gateway.services.store.nc is not nc  # type: ignore[attr-defined]
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    finally:
        loop.call_soon_threadsafe(stop.set)
        runner.join(30)


def test_an_embedded_nats_server_that_dies_is_started_again(tmp_path: Path) -> None:
    gw = embedded_gateway(tmp_path).start()
    try:
        assert signed_request("PUT", f"{gw.endpoint}/phoenix").status_code == 200
        assert signed_request("PUT", f"{gw.endpoint}/phoenix/k", body=b"kept").status_code == 200
        first = child_pid(tmp_path)
        os.kill(first, signal.SIGKILL)
        # Started again on the same port and store; nats-py reconnects by itself.
        assert eventually(lambda: child_pid(tmp_path), lambda pid: pid != first, timeout=20) != first
        got = eventually(
            lambda: signed_request("GET", f"{gw.endpoint}/phoenix/k"), lambda r: r.status_code == 200, timeout=30
        )
        assert got.content == b"kept"
        assert "the embedded nats-server exited; starting it again" in gw.log_text()
    finally:
        gw.stop()


def test_jetstream_that_comes_later_is_waited_for(tmp_path: Path) -> None:
    """Connected to a NATS without JetStream (or without quorum yet): the gateway keeps trying to start
    its store instead of exiting, and serves once JetStream answers."""
    from nats_s3.embedded import find_nats_server

    port = free_port()
    plain = subprocess.Popen([find_nats_server(), "-a", "127.0.0.1", "-p", str(port)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    gw = GatewayProcess(write_credentials(tmp_path / "c.json"), f"nats://127.0.0.1:{port}")
    server = None
    try:
        time.sleep(0.5)
        gw.start(health_url=f"{gw.endpoint}/healthz")
        reason = eventually(
            lambda: requests.get(f"{gw.endpoint}/readyz", timeout=5).json().get("reason", ""),
            lambda text: "JetStream" in text,
            timeout=30,
        )
        assert "JetStream" in reason
        plain.terminate()
        plain.wait(10)
        server = NatsServerProcess(store_dir=tmp_path / "js", port=port).start()
        ready = eventually(lambda: requests.get(f"{gw.endpoint}/readyz", timeout=5).status_code, lambda c: c == 200)
        assert ready == 200 and gw.proc is not None and gw.proc.poll() is None
    finally:
        gw.stop()
        if plain.poll() is None:
            plain.kill()
        if server is not None:
            server.cleanup()
