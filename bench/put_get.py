"""Large-object PUT/GET throughput and peak RSS of a nats-s3 gateway process (and of its nats-server)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import functools
import hashlib
import http.client
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = Path(__file__).resolve().parent.parent
# `python bench/put_get.py` puts bench/ on sys.path, not the repo root where the tests package lives.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import ACCESS_KEY, SECRET_KEY, GatewayProcess, NatsServerProcess, write_credentials  # noqa: E402

MIB = 1 << 20
BLOCK_SIZE = 8 * MIB
READ_SIZE = 1 * MIB
SAMPLE_INTERVAL = 0.02
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TARGETS = {"put_mib_s": 120.0, "get_mib_s": 200.0, "gateway_rss_mib": 150.0}
RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")

T = TypeVar("T")


# Connections in flight, so an interrupt can cut them and the transfer threads end before cleanup starts.
_LIVE: set[http.client.HTTPConnection] = set()
_LIVE_LOCK = threading.Lock()


def abort_transfers() -> None:
    with _LIVE_LOCK:
        conns = list(_LIVE)
    for conn in conns:
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)


class BenchError(Exception):
    """The gateway answered wrongly (status, ETag, MD5, length); the run's figures are meaningless."""


# --- request signing -------------------------------------------------------------------------------------------


class _PayloadHashAuth(S3SigV4Auth):
    """botocore's S3 signer with a payload hash we choose, so the body never has to be hashed or buffered."""

    def __init__(self, credentials: Credentials, region: str, payload_hash: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


@dataclass(frozen=True)
class Target:
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    timeout: float

    def signed_headers(
        self, method: str, path: str, payload_hash: str = EMPTY_SHA256, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        req = AWSRequest(method=method, url=self.endpoint + path, headers=dict(extra or {}))
        auth = _PayloadHashAuth(Credentials(self.access_key, self.secret_key), self.region, payload_hash)
        auth.add_auth(req)
        return dict(req.headers.items())

    @contextlib.contextmanager
    def connect(self) -> Iterator[http.client.HTTPConnection]:
        parts = urlsplit(self.endpoint)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout)
        with _LIVE_LOCK:
            _LIVE.add(conn)
        try:
            yield conn
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(conn)
            conn.close()

    def simple(self, method: str, path: str, ok: tuple[int, ...] = (200, 204)) -> None:
        with self.connect() as conn:
            conn.request(method, path, headers=self.signed_headers(method, path))
            resp = conn.getresponse()
            data = resp.read()
            if resp.status not in ok:
                raise BenchError(f"{method} {path}: {resp.status} {data[:500]!r}")


# --- body -------------------------------------------------------------------------------------------------------


def body_views(block: memoryview, size: int) -> Iterator[memoryview]:
    """The object body: one random block over and over, so generating it costs no CPU and no memory."""
    whole, rest = divmod(size, len(block))
    for _ in range(whole):
        yield block
    if rest:
        yield block[:rest]


def body_md5(block: memoryview, size: int) -> str:
    md5 = hashlib.md5()
    for view in body_views(block, size):
        md5.update(view)
    return md5.hexdigest()


class _SizedBody:
    """A generator with a length: requests then sends Content-Length instead of chunked encoding."""

    def __init__(self, block: memoryview, size: int) -> None:
        self._block = block
        self._size = size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[memoryview]:
        return body_views(self._block, self._size)


class BodyCheck:
    """Checks the bytes coming back as they stream in: their MD5, or a comparison with the body sent.

    The comparison proves the same thing at a tenth of the CPU; on a small machine the client's MD5 competes
    with the gateway and nats-server for cores and lowers the GET figure (see bench/README.md).
    """

    def __init__(self, mode: str, block: bytes, expected_md5: str) -> None:
        self.mode = mode
        self.block = block
        self.expected_md5 = expected_md5
        self.length = 0
        self.first_difference: int | None = None
        self._md5 = hashlib.md5() if mode == "md5" else None

    def update(self, data: memoryview | bytes) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        elif self.first_difference is None:
            view, pos = memoryview(data), self.length
            while view and self.first_difference is None:
                offset = pos % len(self.block)
                n = min(len(view), len(self.block) - offset)
                # bytes.startswith is a memcmp (~13 GiB/s); comparing memoryviews goes item by item (~1 GiB/s).
                if not self.block.startswith(view[:n], offset):
                    self.first_difference = pos
                view, pos = view[n:], pos + n
        self.length += len(data)

    def problem(self) -> str | None:
        if self._md5 is not None:
            got = self._md5.hexdigest()
            return None if got == self.expected_md5 else f"MD5 {got} of the bytes back != {self.expected_md5} sent"
        if self.first_difference is not None:
            return f"the bytes back differ from those sent, first at or after byte {self.first_difference}"
        return None


@dataclass
class GetOutcome:
    check: BodyCheck
    etag: str


def _etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


# --- clients: raw http.client (default) and requests, kept for comparison -----------------------------------------


def raw_put(target: Target, path: str, block: memoryview, size: int, extra: Mapping[str, str]) -> str:
    headers = target.signed_headers("PUT", path, UNSIGNED_PAYLOAD, extra)
    with target.connect() as conn:
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        sock = conn.sock
        assert sock is not None
        try:
            for view in body_views(block, size):
                sock.sendall(view)
        except OSError as exc:
            # A gateway that rejects the upload may answer and close mid-body; its answer says more than EPIPE.
            try:
                resp = conn.getresponse()
                detail = f"{resp.status} {resp.read()[:500]!r}"
            except (OSError, http.client.HTTPException):
                detail = "no response"
            raise BenchError(f"PUT {path}: sending the body failed after the gateway said {detail}: {exc!r}") from exc
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise BenchError(f"PUT {path}: {resp.status} {data[:500]!r}")
        return _etag(resp.getheader("ETag"))


def raw_get(target: Target, path: str, check: BodyCheck, extra: Mapping[str, str]) -> GetOutcome:
    with target.connect() as conn:
        conn.request("GET", path, headers=target.signed_headers("GET", path, extra=extra))
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"GET {path}: {resp.status} {resp.read()[:500]!r}")
        # One reused buffer: reading into it allocates nothing per block.
        buf = memoryview(bytearray(READ_SIZE))
        while n := resp.readinto(buf):
            check.update(buf[:n])
        return GetOutcome(check, _etag(resp.getheader("ETag")))


def requests_put(target: Target, path: str, block: memoryview, size: int, extra: Mapping[str, str]) -> str:
    headers = target.signed_headers("PUT", path, UNSIGNED_PAYLOAD, extra)
    body = _SizedBody(block, size)
    # urllib3 sends memoryview chunks as they are; requests' stubs only admit bytes and str.
    resp = requests.put(target.endpoint + path, data=body, headers=headers, timeout=target.timeout)  # type: ignore[arg-type]
    if resp.status_code != 200:
        raise BenchError(f"PUT {path}: {resp.status_code} {resp.content[:500]!r}")
    return _etag(resp.headers.get("ETag"))


def requests_get(target: Target, path: str, check: BodyCheck, extra: Mapping[str, str]) -> GetOutcome:
    headers = target.signed_headers("GET", path, extra=extra)
    with requests.get(target.endpoint + path, headers=headers, stream=True, timeout=target.timeout) as resp:
        if resp.status_code != 200:
            raise BenchError(f"GET {path}: {resp.status_code} {resp.content[:500]!r}")
        for chunk in resp.iter_content(READ_SIZE):
            check.update(chunk)
        return GetOutcome(check, _etag(resp.headers.get("ETag")))


PutFn = Callable[[Target, str, memoryview, int, Mapping[str, str]], str]
GetFn = Callable[[Target, str, BodyCheck, Mapping[str, str]], GetOutcome]

# --sse: what each mode's PUT and GET send (the gateway gets a key file and --sse.allow-http for them).
_CUSTOMER_KEY = bytes(range(32))
_CUSTOMER = {
    "x-amz-server-side-encryption-customer-algorithm": "AES256",
    "x-amz-server-side-encryption-customer-key": base64.b64encode(_CUSTOMER_KEY).decode(),
    "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(_CUSTOMER_KEY).digest()).decode(),
}
SSE_MODES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "none": ({}, {}),
    "sse-s3": ({"x-amz-server-side-encryption": "AES256"}, {}),
    "sse-kms": ({"x-amz-server-side-encryption": "aws:kms"}, {}),
    "sse-c": (_CUSTOMER, _CUSTOMER),
}
# Modes whose ETag is not the body's MD5 (S3's rule for SSE-C and SSE-KMS); the body is checked instead.
SSE_HIDDEN_ETAG = frozenset({"sse-kms", "sse-c"})
CLIENTS: dict[str, tuple[PutFn, GetFn]] = {
    "raw": (raw_put, raw_get),
    "requests": (requests_put, requests_get),
}


# --- process watching ---------------------------------------------------------------------------------------------


def proc_status_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        # The command name may hold spaces and parentheses; the fields that follow start after the last ')'.
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class ProcStats:
    rss_start_mib: float | None = None
    rss_peak_mib: float = 0.0
    hwm_mib: float | None = None
    hwm_since: str = "process start"
    cpu_s: float | None = None


class PhaseWatch:
    """VmRSS of some processes sampled every 20 ms in a thread, their VmHWM and CPU time, over one phase."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self.stats = {name: ProcStats() for name in self.pids}
        self.client_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._cpu0: dict[str, float] = {}
        self._client0 = 0.0

    def __enter__(self) -> PhaseWatch:
        for name, pid in self.pids.items():
            # Writing 5 to clear_refs resets VmHWM to the current RSS, so VmHWM covers this phase only;
            # it needs to be our process (or root), so a foreign --pid keeps its since-start figure.
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
                self.stats[name].hwm_since = "phase start"
            except OSError:
                pass
            with contextlib.suppress(OSError):
                self._cpu0[name] = proc_cpu_seconds(pid)
        self._sample()
        # RSS at the start tells a peak this phase caused from one inherited from earlier work.
        for stats in self.stats.values():
            stats.rss_start_mib = stats.rss_peak_mib or None
        self._client0 = client_cpu_seconds()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client_cpu_s = client_cpu_seconds() - self._client0
        self._sample()
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                hwm = proc_status_kib(pid).get("VmHWM")
                self.stats[name].hwm_mib = hwm / 1024 if hwm is not None else None
                if name in self._cpu0:
                    self.stats[name].cpu_s = proc_cpu_seconds(pid) - self._cpu0[name]

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._sample()

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                rss = proc_status_kib(pid).get("VmRSS", 0) / 1024
                stats = self.stats[name]
                stats.rss_peak_mib = max(stats.rss_peak_mib, rss)


# --- phases and runs ----------------------------------------------------------------------------------------------


def run_parallel(jobs: list[Callable[[], T]]) -> tuple[list[T], float]:
    """Run the jobs in threads released together; (results, wall seconds from release to the last finish)."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs) + 1)

    def work(i: int, job: Callable[[], T]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, job), daemon=True) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        abort_transfers()
        for thread in threads:
            thread.join(5)
        raise
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return results, elapsed


@dataclass
class Phase:
    seconds: float
    mib_s: float
    client_cpu_s: float
    procs: dict[str, ProcStats]

    def cpu_pct(self, name: str) -> float | None:
        cpu = self.client_cpu_s if name == "client" else self.procs[name].cpu_s if name in self.procs else None
        return None if cpu is None else 100.0 * cpu / self.seconds


@dataclass
class Run:
    index: int
    put: Phase
    get: Phase
    gateway_rss_peak_mib: float | None = None
    gateway_hwm_mib: float | None = None
    nats_rss_peak_mib: float | None = None
    nats_hwm_mib: float | None = None


def _peak(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


class Bench:
    def __init__(self, target: Target, args: argparse.Namespace, pids: Mapping[str, int]) -> None:
        self.target = target
        self.pids = pids
        self.put_fn, self.get_fn = CLIENTS[args.client]
        self.verify: str = args.verify
        self.bucket = f"bench-{uuid.uuid4().hex[:12]}"
        self.size = int(args.size_mib * MIB)
        base, rest = divmod(self.size, args.concurrency)
        self.parts = [base] * args.concurrency
        self.parts[-1] += rest
        self.keys = [f"/{self.bucket}/put-get-{i}.bin" for i in range(args.concurrency)]
        self.block_bytes = random.Random(0x5EED).randbytes(BLOCK_SIZE)
        self.block = memoryview(self.block_bytes)
        self.bucket_created = False
        # The body is a pure function of its size, so its MD5 is known before sending and the timed PUT
        # spends no client CPU hashing.
        self.md5 = {size: body_md5(self.block, size) for size in set(self.parts)}

    def create_bucket(self) -> None:
        self.target.simple("PUT", f"/{self.bucket}")
        self.bucket_created = True

    def one_run(self, index: int, mode: str = "none") -> Run:
        size_mib = self.size / MIB
        put_extra, get_extra = SSE_MODES[mode]
        md5_etag = mode not in SSE_HIDDEN_ETAG
        with PhaseWatch(self.pids) as put_watch:
            etags, put_s = run_parallel(
                [
                    functools.partial(self.put_fn, self.target, key, self.block, size, put_extra)
                    for key, size in zip(self.keys, self.parts, strict=True)
                ]
            )
        for key, size, etag in zip(self.keys, self.parts, etags, strict=True):
            if md5_etag and etag != self.md5[size]:
                raise BenchError(f"PUT {key}: ETag {etag!r} != MD5 of the body sent {self.md5[size]}")
        with PhaseWatch(self.pids) as get_watch:
            outcomes, get_s = run_parallel(
                [
                    functools.partial(
                        self.get_fn,
                        self.target,
                        key,
                        BodyCheck(self.verify, self.block_bytes, self.md5[size]),
                        get_extra,
                    )
                    for key, size in zip(self.keys, self.parts, strict=True)
                ]
            )
        for key, size, got, put_etag in zip(self.keys, self.parts, outcomes, etags, strict=True):
            if got.check.length != size:
                raise BenchError(f"GET {key}: {got.check.length} bytes back, {size} sent")
            if problem := got.check.problem():
                raise BenchError(f"GET {key}: {problem}")
            if got.etag != (self.md5[size] if md5_etag else put_etag):
                raise BenchError(f"GET {key}: ETag {got.etag!r} != the PUT's {put_etag!r}")
        # Deleting between runs keeps the store (and nats-server's disk and memory) the same size for every run.
        self.delete_objects()
        put = Phase(put_s, size_mib / put_s, put_watch.client_cpu_s, put_watch.stats)
        get = Phase(get_s, size_mib / get_s, get_watch.client_cpu_s, get_watch.stats)
        run = Run(index, put, get)
        if "gateway" in self.pids:
            run.gateway_rss_peak_mib = _peak([p.procs["gateway"].rss_peak_mib for p in (put, get)])
            run.gateway_hwm_mib = _peak([p.procs["gateway"].hwm_mib for p in (put, get)])
        if "nats" in self.pids:
            run.nats_rss_peak_mib = _peak([p.procs["nats"].rss_peak_mib for p in (put, get)])
            run.nats_hwm_mib = _peak([p.procs["nats"].hwm_mib for p in (put, get)])
        return run

    def delete_objects(self) -> None:
        for key in self.keys:
            self.target.simple("DELETE", key)

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        if not self.bucket_created:
            return problems
        for key in self.keys:
            try:
                self.target.simple("DELETE", key)
            except (OSError, http.client.HTTPException, BenchError) as exc:
                problems.append(f"DELETE {key}: {exc}")
        try:
            self.target.simple("DELETE", f"/{self.bucket}")
        except (OSError, http.client.HTTPException, BenchError) as exc:
            problems.append(f"DELETE /{self.bucket}: {exc}")
        return problems


# --- reporting ----------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_mib = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_total_mib = int(line.split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_mib": mem_total_mib,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _fmt(value: float | None, width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def summarize(runs: list[Run]) -> dict[str, dict[str, float | None]]:
    def pick(values: list[float | None], best: Callable[[list[float]], float]) -> dict[str, float | None]:
        known = [v for v in values if v is not None]
        return {"best": best(known), "median": statistics.median(known)} if known else {"best": None, "median": None}

    return {
        "put_mib_s": pick([r.put.mib_s for r in runs], max),
        "get_mib_s": pick([r.get.mib_s for r in runs], max),
        "put_s": pick([r.put.seconds for r in runs], min),
        "get_s": pick([r.get.seconds for r in runs], min),
        "gateway_rss_peak_mib": pick([r.gateway_rss_peak_mib for r in runs], min),
        "gateway_hwm_mib": pick([r.gateway_hwm_mib for r in runs], min),
        "nats_rss_peak_mib": pick([r.nats_rss_peak_mib for r in runs], min),
        "nats_hwm_mib": pick([r.nats_hwm_mib for r in runs], min),
    }


def print_report(runs: list[Run], summary: dict[str, dict[str, float | None]], header: str) -> None:
    print(header)
    print()
    cols = "run      PUT MiB/s  GET MiB/s   PUT s   GET s  gw RSS peak  gw VmHWM  nats RSS peak  nats VmHWM"
    print(cols)
    for r in runs:
        print(
            f"{r.index:<8}{_fmt(r.put.mib_s, 10)}{_fmt(r.get.mib_s, 11)}{_fmt(r.put.seconds, 8, 2)}"
            f"{_fmt(r.get.seconds, 8, 2)}{_fmt(r.gateway_rss_peak_mib, 13)}{_fmt(r.gateway_hwm_mib, 10)}"
            f"{_fmt(r.nats_rss_peak_mib, 15)}{_fmt(r.nats_hwm_mib, 12)}"
        )
    for which in ("best", "median"):
        s = {k: v[which] for k, v in summary.items()}
        print(
            f"{which:<8}{_fmt(s['put_mib_s'], 10)}{_fmt(s['get_mib_s'], 11)}{_fmt(s['put_s'], 8, 2)}"
            f"{_fmt(s['get_s'], 8, 2)}{_fmt(s['gateway_rss_peak_mib'], 13)}{_fmt(s['gateway_hwm_mib'], 10)}"
            f"{_fmt(s['nats_rss_peak_mib'], 15)}{_fmt(s['nats_hwm_mib'], 12)}"
        )
    t = TARGETS
    print(
        f"{'target':<8}{'>= ' + str(int(t['put_mib_s'])):>10}{'>= ' + str(int(t['get_mib_s'])):>11}{'':16}"
        f"{'<= ' + str(int(t['gateway_rss_mib'])):>13}{'<= ' + str(int(t['gateway_rss_mib'])):>10}"
    )
    verdict = verdicts(summary)
    print(
        f"{'verdict':<8}{verdict['put']:>10}{verdict['get']:>11}{'':16}{verdict['rss']:>13}{verdict['hwm']:>10}"
        "   (median vs target)"
    )
    print()
    print("CPU, % of one core (the client is this process; ceiling = MiB / client CPU seconds)")
    print("run      client PUT  client GET  gateway PUT  gateway GET  nats PUT  nats GET  client ceiling PUT/GET MiB/s")
    for r in runs:
        size_mib = r.put.mib_s * r.put.seconds
        ceil_put = size_mib / r.put.client_cpu_s if r.put.client_cpu_s > 0 else None
        ceil_get = size_mib / r.get.client_cpu_s if r.get.client_cpu_s > 0 else None
        print(
            f"{r.index:<8}{_fmt(r.put.cpu_pct('client'), 11, 0)}{_fmt(r.get.cpu_pct('client'), 12, 0)}"
            f"{_fmt(r.put.cpu_pct('gateway'), 13, 0)}{_fmt(r.get.cpu_pct('gateway'), 13, 0)}"
            f"{_fmt(r.put.cpu_pct('nats'), 10, 0)}{_fmt(r.get.cpu_pct('nats'), 10, 0)}"
            f"{_fmt(ceil_put, 17, 0)} / {_fmt(ceil_get, 0, 0).strip()}"
        )


def verdicts(summary: dict[str, dict[str, float | None]]) -> dict[str, str]:
    def check(value: float | None, ok: Callable[[float], bool]) -> str:
        return "-" if value is None else ("ok" if ok(value) else "MISS")

    return {
        "put": check(summary["put_mib_s"]["median"], lambda v: v >= TARGETS["put_mib_s"]),
        "get": check(summary["get_mib_s"]["median"], lambda v: v >= TARGETS["get_mib_s"]),
        "rss": check(summary["gateway_rss_peak_mib"]["median"], lambda v: v <= TARGETS["gateway_rss_mib"]),
        "hwm": check(summary["gateway_hwm_mib"]["median"], lambda v: v <= TARGETS["gateway_rss_mib"]),
    }


def log_problems(log_text: str, limit: int = 10) -> list[str]:
    lines = [ln for ln in log_text.splitlines() if "level=error" in ln or "level=warn" in ln or "Traceback" in ln]
    return lines[-limit:]


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into the Ctrl-C path, so the finally blocks stop the servers and remove the temp dir.
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size-mib", type=float, default=1024, help="object size in MiB, split over --concurrency")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=1, help="parallel PUT+GET streams of size/N each")
    p.add_argument("--client", choices=sorted(CLIENTS), default="raw", help="raw http.client (fastest) or requests")
    p.add_argument(
        "--verify",
        choices=("md5", "bytes"),
        default="md5",
        help="check GET bodies by MD5, or by comparing bytes (a tenth of the client CPU)",
    )
    p.add_argument("--endpoint", help="use this running gateway instead of starting nats-server and a gateway")
    p.add_argument("--pid", type=int, help="with --endpoint: the gateway's pid, to measure its RSS")
    p.add_argument("--nats-pid", type=int, help="with --endpoint: the nats-server's pid, to measure its RSS")
    p.add_argument("--access-key", help="default: $AWS_ACCESS_KEY_ID with --endpoint, else the tests' key")
    p.add_argument("--secret-key", help="default: $AWS_SECRET_ACCESS_KEY with --endpoint, else the tests' secret")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--timeout", type=float, default=300.0, help="socket timeout of each request, seconds")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--sse",
        default="none",
        help=f"comma-separated encryption modes, each run does all in turn: {', '.join(SSE_MODES)} (default none)",
    )
    args = p.parse_args(argv)
    args.sse = [m.strip() for m in args.sse.split(",") if m.strip()]
    if not args.sse or any(m not in SSE_MODES for m in args.sse):
        p.error(f"--sse takes modes among {', '.join(SSE_MODES)}")
    if args.size_mib <= 0 or args.runs < 1 or args.concurrency < 1:
        p.error("--size-mib, --runs and --concurrency must be positive")
    if (args.pid or args.nats_pid) and not args.endpoint:
        p.error("--pid and --nats-pid only make sense with --endpoint")
    if args.endpoint:
        args.access_key = args.access_key or os.environ.get("AWS_ACCESS_KEY_ID")
        args.secret_key = args.secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not args.access_key or not args.secret_key:
            p.error("--endpoint needs --access-key/--secret-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    else:
        args.access_key = args.access_key or ACCESS_KEY
        args.secret_key = args.secret_key or SECRET_KEY
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="nats-s3-bench-"))
    nats: NatsServerProcess | None = None
    gateway: GatewayProcess | None = None
    bench: Bench | None = None
    started = time.monotonic()
    status = 1
    try:
        pids: dict[str, int] = {}
        if args.endpoint:
            endpoint = args.endpoint.rstrip("/")
            if args.pid:
                pids["gateway"] = args.pid
            if args.nats_pid:
                pids["nats"] = args.nats_pid
        else:
            nats = NatsServerProcess(store_dir=tmp / "jetstream").start()
            creds = write_credentials(
                tmp / "credentials.json", [{"accessKey": args.access_key, "secretKey": args.secret_key}]
            )
            keys = tmp / "sse-keys.json"
            keys.write_text(json.dumps({"keys": [{"id": "bench", "key": base64.b64encode(os.urandom(32)).decode()}]}))
            sse_flags = ["--sse.keys", str(keys), "--sse.allow-http", "true"]
            gateway = GatewayProcess(creds, nats.url, log_path=tmp / "gateway.log", gc_args=[], extra=sse_flags).start()
            assert nats.proc is not None and gateway.proc is not None
            pids = {"gateway": gateway.proc.pid, "nats": nats.proc.pid}
            endpoint = gateway.endpoint
        target = Target(endpoint, args.access_key, args.secret_key, args.region, args.timeout)
        idle = {name: proc_status_kib(pid).get("VmRSS", 0) / 1024 for name, pid in pids.items()}
        bench = Bench(target, args, pids)
        bench.create_bucket()
        by_mode: dict[str, list[Run]] = {mode: [] for mode in args.sse}
        for i in range(1, args.runs + 1):
            # Modes interleaved within each run, so drift of a shared machine falls on all of them alike.
            for mode in args.sse:
                run = bench.one_run(i, mode)
                by_mode[mode].append(run)
                print(
                    f"run {i} {mode}: PUT {run.put.mib_s:.1f} MiB/s ({run.put.seconds:.2f} s), "
                    f"GET {run.get.mib_s:.1f} MiB/s ({run.get.seconds:.2f} s), "
                    f"gateway RSS peak {_fmt(run.gateway_rss_peak_mib, 0).strip()} MiB",
                    flush=True,
                )
        print()
        runs = by_mode[args.sse[0]]
        summary = summarize(runs)
        mode_summaries = {mode: summarize(mode_runs) for mode, mode_runs in by_mode.items()}
        header = (
            f"nats-s3 put/get: {args.size_mib:g} MiB in {args.concurrency} stream(s), {args.runs} run(s), "
            f"client={args.client}, verify={args.verify}, endpoint={endpoint}"
            + (" (own nats-server + gateway)" if gateway else "")
            + "\nidle RSS before the runs: "
            + (", ".join(f"{name} {mib:.1f} MiB" for name, mib in idle.items()) or "not measured")
        )
        for mode, mode_runs in by_mode.items():
            print_report(mode_runs, mode_summaries[mode], f"{header}\nmode: {mode}")
            print()
        if len(by_mode) > 1:
            base = args.sse[0]
            print(f"median throughput of each mode, as a share of {base}'s in the same run:")
            for mode in args.sse[1:]:
                shares = [
                    f"{what} {100 * mine / theirs:.0f} %"
                    for what, mine, theirs in (
                        ("PUT", mode_summaries[mode]["put_mib_s"]["median"], summary["put_mib_s"]["median"]),
                        ("GET", mode_summaries[mode]["get_mib_s"]["median"], summary["get_mib_s"]["median"]),
                    )
                    if mine and theirs
                ]
                print(f"  {mode}: {', '.join(shares)}")
        # Linux reports ru_maxrss in KiB; a client that streams stays far below the object size.
        client_maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\nclient (this process) peak RSS: {client_maxrss_mib:.1f} MiB")
        problems = log_problems(gateway.log_text()) if gateway else []
        if problems:
            print(f"\ngateway log warnings/errors ({len(problems)} shown):", *problems, sep="\n  ")
        record = {
            "bench": "put_get",
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "config": {
                "size_mib": args.size_mib,
                "size_bytes": bench.size,
                "part_bytes": bench.parts,
                "runs": args.runs,
                "concurrency": args.concurrency,
                "client": args.client,
                "verify": args.verify,
                "endpoint": endpoint,
                "own_servers": gateway is not None,
                "block_bytes": BLOCK_SIZE,
                "read_bytes": READ_SIZE,
                "rss_sample_interval_s": SAMPLE_INTERVAL,
                "sse": args.sse,
            },
            "idle_rss_mib": idle,
            "client_maxrss_mib": client_maxrss_mib,
            "runs": [asdict(r) for r in runs],
            "runs_by_sse_mode": {mode: [asdict(r) for r in mode_runs] for mode, mode_runs in by_mode.items()},
            "summary": summary,
            "summary_by_sse_mode": mode_summaries,
            "targets": TARGETS,
            "verdict_on_median": verdicts(summary),
            "gateway_log_problems": problems,
            "wall_s": round(time.monotonic() - started, 2),
        }
        args.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = args.results_dir / f"put_get-{stamp}.json"
        out.write_text(json.dumps(record) + "\n")
        print(f"\nresults: {out}  (wall {time.monotonic() - started:.1f} s)")
        status = 0
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
    except (OSError, http.client.HTTPException) as exc:
        print(f"\nFAILED (connection): {exc!r}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted, cleaning up", file=sys.stderr)
        status = 130
    finally:
        try:
            if bench is not None:
                for problem in bench.cleanup():
                    print(f"cleanup: {problem}", file=sys.stderr)
        finally:
            if gateway is not None:
                stop_started = time.monotonic()
                code = gateway.stop()
                if code not in (0, -signal.SIGTERM, None):
                    print(
                        f"gateway exited with {code} {time.monotonic() - stop_started:.1f} s after SIGTERM",
                        file=sys.stderr,
                    )
                    status = status or 1
                # Printed after the stop so the tail includes the gateway's shutdown messages.
                if status != 0:
                    with contextlib.suppress(OSError):
                        print("gateway log tail:\n" + gateway.log_text()[-4000:], file=sys.stderr)
            if nats is not None:
                nats.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
