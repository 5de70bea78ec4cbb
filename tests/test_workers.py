"""`--workers N`: N gateway processes on one port under a supervisor, with one embedded nats-server, one
/metrics view, logs that say which worker wrote them, one collector, a drain of all on SIGTERM, and a
worker that dies started again."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from nats_s3.cli import settings_from
from nats_s3.embedded import free_port
from nats_s3.observability.metrics import Metrics
from nats_s3.workers.cores import usable_cores
from nats_s3.workers.metrics_view import merge

from .signing import signed_request, start_put
from .support import GatewayProcess, eventually, write_credentials
from .test_lifecycle import alive, child_pid, run_cli


class Group(GatewayProcess):
    def start(self, timeout: float = 30.0, **kw: object) -> Group:
        """Until every worker is ready (one answering /readyz says only that it is)."""
        super().start(timeout, **kw)  # type: ignore[arg-type]
        assert eventually(lambda: " workers ready" in self.log_text(), bool, timeout=timeout)
        return self


def group(tmp_path: Path, workers: int = 2, extra: list[str] | None = None) -> Group:
    creds = tmp_path / "creds.json"
    if not creds.exists():
        write_credentials(creds)
    return Group(creds, None, data_dir=tmp_path / "data", extra=["--workers", str(workers), *(extra or [])])


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def worker_pids(pid: int) -> list[int]:
    return [c for c in children(pid) if "nats_s3.workers.child" in Path(f"/proc/{c}/cmdline").read_text()]


def samples(endpoint: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The /metrics samples called `name`, by their labels (sorted)."""
    text = requests.get(f"{endpoint}/metrics", timeout=10).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def per_worker(endpoint: str, name: str, **match: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, value in samples(endpoint, name).items():
        given = dict(labels)
        if all(given.get(k) == v for k, v in match.items()):
            totals[given["worker"]] = totals.get(given["worker"], 0.0) + value
    return totals


def test_workers_flag_env_twin_auto_and_bad_values(tmp_path: Path) -> None:
    assert settings_from([]).workers == 1
    assert settings_from(["--workers", "3"]).workers == 3
    assert settings_from([], {"NATS_S3_WORKERS": "4"}).workers == 4
    assert settings_from(["--workers", "2"], {"NATS_S3_WORKERS": "4"}).workers == 2
    assert settings_from(["--workers", "auto"]).workers == usable_cores() == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "many", "1000"):
        with pytest.raises(ValueError, match="--workers"):
            settings_from(["--workers", bad])
    # A container's CPU quota (cgroup v2 cpu.max) caps `auto` below the cores the host shows.
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert usable_cores(quota) == min(2, len(os.sched_getaffinity(0)))
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == len(os.sched_getaffinity(0))
    assert "--workers N|auto" in run_cli("--help").stdout


def test_merged_metrics_label_each_worker_and_give_nats_figures_once() -> None:
    first, second = Metrics(), Metrics()
    first.observe("GetObject", 200, 0.002, 0, 10)
    second.observe("GetObject", 200, 0.004, 0, 10)
    second.observe("PutObject", 200, 0.004, 10, 0)
    for m in (first, second):
        m.storage.bucket_bytes = {"b1": 1000}
    merged = merge({0: first.render().decode(), 1: second.render().decode(), 2: None}, answering=1).decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(merged)
        for s in family.samples
    }
    get = (("operation", "GetObject"), ("status", "200"))
    assert got[("nats_s3_requests_total", (*get, ("worker", "0")))] == 1
    assert got[("nats_s3_requests_total", (*get, ("worker", "1")))] == 1
    assert got[("nats_s3_requests_total", (("operation", "PutObject"), ("status", "200"), ("worker", "1")))] == 1
    count = ("nats_s3_request_duration_seconds_count", (("operation", "GetObject"), ("worker", "0")))
    assert got[count] == 1
    assert got[("nats_s3_bucket_bytes", (("bucket", "b1"),))] == 1000  # once, not per worker
    assert not any(name == "nats_s3_bucket_bytes" and ("worker", "0") in labels for name, labels in got)
    up = {dict(labels)["worker"]: v for (name, labels), v in got.items() if name == "nats_s3_worker_up"}
    assert up == {"0": 1, "1": 1, "2": 0}
    assert merged.count("# TYPE nats_s3_requests_total counter") == 1


def test_two_workers_share_the_port_one_nats_one_collector_and_one_view(tmp_path: Path) -> None:
    gw = group(tmp_path).start()
    try:
        assert gw.proc is not None
        kids = children(gw.proc.pid)
        workers = worker_pids(gw.proc.pid)
        assert len(workers) == 2 and len(kids) == 3 and child_pid(tmp_path) in kids  # and one nats-server
        assert signed_request("PUT", f"{gw.endpoint}/shared").status_code == 200
        keys = [f"k{i:02d}" for i in range(30)]
        for key in keys:  # each on a connection of its own: the kernel spreads them over the workers
            assert signed_request("PUT", f"{gw.endpoint}/shared/{key}", body=key.encode()).status_code == 200
        for _ in range(8):  # whichever worker answers lists every key another one wrote
            listing = signed_request("GET", f"{gw.endpoint}/shared?list-type=2").text
            assert re.findall(r"<Key>(.*?)</Key>", listing) == keys
        for key in keys:
            assert signed_request("GET", f"{gw.endpoint}/shared/{key}").content == key.encode()
        served = eventually(
            lambda: per_worker(gw.endpoint, "nats_s3_requests_total", operation="PutObject"),
            lambda by: len(by) == 2,
            timeout=5,
        )
        assert set(served) == {"0", "1"} and sum(served.values()) == len(keys), served
        assert sum(per_worker(gw.endpoint, "nats_s3_requests_total").values()) >= 2 * len(keys) + 9
        # One housekeeping leader among the workers, whichever worker the scrape reaches.
        held = eventually(lambda: per_worker(gw.endpoint, "nats_s3_gc_lease_held"), lambda h: sum(h.values()) == 1)
        assert sorted(held) == ["0", "1"] and sum(held.values()) == 1, held
        for _ in range(6):
            up = per_worker(gw.endpoint, "nats_s3_worker_up")
            assert up == {"0": 1.0, "1": 1.0}
        bucket_bytes = eventually(lambda: samples(gw.endpoint, "nats_s3_bucket_bytes"), lambda b: bool(b))
        assert list(bucket_bytes) == [(("bucket", "shared"),)]  # a NATS figure, given once
    finally:
        assert gw.stop() == 0
    lines = gw.log_text().splitlines()
    served_lines = [line for line in lines if "logger=nats_s3.access" in line or "logger=nats_s3.server" in line]
    assert served_lines and all(re.search(r" worker=[01]( |$)", line) for line in served_lines)
    assert {m for line in served_lines for m in re.findall(r" worker=([01])", line)} == {"0", "1"}
    assert any("logger=nats_s3.supervisor" in line and "all 2 workers ready" in line for line in lines)


def in_flight(endpoint: str) -> dict[str, float]:
    return per_worker(endpoint, "nats_s3_requests_in_flight")


def test_sigterm_drains_uploads_in_flight_on_every_worker_then_stops_nats(tmp_path: Path) -> None:
    gw = group(tmp_path, extra=["--shutdown-timeout", "20s"]).start()
    assert gw.proc is not None
    assert signed_request("PUT", f"{gw.endpoint}/drain").status_code == 200
    body = os.urandom(300_000)
    uploads: list[socket.socket] = []
    # Open uploads until both workers hold one: the drain is then shown on each, not hoped for.
    while len(uploads) < 40 and not all(v >= 1 for v in in_flight(gw.endpoint).values()):
        uploads.append(start_put(gw.endpoint, f"/drain/k{len(uploads)}", len(body), body[:1000]))
        time.sleep(0.05)
    assert len(in_flight(gw.endpoint)) == 2 and all(v >= 1 for v in in_flight(gw.endpoint).values())
    nats_pid = child_pid(tmp_path)
    workers = worker_pids(gw.proc.pid)
    os.killpg(os.getpgid(gw.proc.pid), signal.SIGTERM)  # Ctrl-C / systemd: the supervisor's group
    time.sleep(0.5)
    assert gw.proc.poll() is None
    with pytest.raises(OSError):  # no worker takes a new connection while draining
        requests.get(f"{gw.endpoint}/healthz", timeout=2)
    for sock in uploads:
        sock.sendall(body[1000:])
    for sock in uploads:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200"), "an upload in flight at SIGTERM was cut"
        sock.close()
    assert gw.proc.wait(30) == 0, gw.log_text()[-2000:]
    gw.proc = None
    assert not any(alive(p) for p in [nats_pid, *workers])
    again = group(tmp_path).start()
    try:
        for i in range(len(uploads)):
            assert signed_request("GET", f"{again.endpoint}/drain/k{i}").content == body
    finally:
        again.stop()


def test_a_dead_worker_is_started_again_and_a_dead_supervisor_takes_its_workers(tmp_path: Path) -> None:
    gw = group(tmp_path).start()
    assert gw.proc is not None
    try:
        assert signed_request("PUT", f"{gw.endpoint}/phoenix").status_code == 200
        victim, survivor = worker_pids(gw.proc.pid)
        os.kill(victim, signal.SIGKILL)
        # Connections already queued on the victim's listener die with it (any client retries those);
        # once it is gone, the survivor takes every new connection while the victim is started again.
        # Gone means reaped by the supervisor: a killed process's main thread can show as a zombie while
        # its other threads still hold its sockets.
        assert eventually(lambda: "exited with -9" in gw.log_text(), bool, timeout=10)
        for i in range(20):
            assert signed_request("PUT", f"{gw.endpoint}/phoenix/k{i}", body=b"x").status_code == 200
        restarted = eventually(lambda: worker_pids(gw.proc.pid), lambda pids: len(pids) == 2 and victim not in pids)
        assert survivor in restarted and len(restarted) == 2
        assert eventually(lambda: per_worker(gw.endpoint, "nats_s3_worker_up"), lambda up: up == {"0": 1, "1": 1})
        assert re.search(r"worker \d exited with -9; starting it again", gw.log_text())
        nats_pid = child_pid(tmp_path)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        gw.proc = None
        # Nothing outlives the supervisor holding the port or the store.
        assert not eventually(lambda: any(alive(p) for p in [*restarted, nats_pid]), lambda up: not up, timeout=15)
        with pytest.raises(OSError):
            requests.get(f"{gw.endpoint}/healthz", timeout=2)
    finally:
        gw.stop()


def test_a_worker_that_cannot_start_fails_the_gateway_with_one_line(tmp_path: Path) -> None:
    creds = str(write_credentials(tmp_path / "c.json"))
    dead = f"nats://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = run_cli(
        "--workers", "2", "--natsServers", dead, "--nats.connect-timeout", "2s", "--s3.credentials", creds,
        "--listen", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert proc.returncode == 1 and time.monotonic() - started < 20, proc.stderr
    assert re.search(r"^nats-s3: NATS at .* not reached within --nats.connect-timeout", proc.stderr, re.M)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli(
            "--workers", "2", "--natsServers", dead, "--s3.credentials", creds, "--listen", f"127.0.0.1:{port}"
        )
        assert proc.returncode == 1 and proc.stderr.strip() == "nats-s3: Address already in use", proc.stderr
