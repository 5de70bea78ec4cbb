"""Listing speed of a nats-s3 gateway over a big bucket: first page, full listings, delimiter walks, ListBuckets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import importlib.metadata
import itertools
import json
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3
import nats
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from nats.nuid import NUID

from nats_s3.embedded import find_nats_server
from nats_s3.store import naming
from nats_s3.store.models import META_ETAG, StoredObjectInfo, format_mtime

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# `python bench/listing.py` puts bench/ on sys.path (for put_get), not the repo root where the tests package lives.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from put_get import (  # noqa: E402
    BenchError,
    PhaseWatch,
    _on_sigterm,
    client_cpu_seconds,
    log_problems,
    machine_info,
    proc_status_kib,
)

from tests.support import ACCESS_KEY, SECRET_KEY, GatewayProcess, NatsServerProcess, write_credentials  # noqa: E402

BUCKET = "bench-listing"
PAGE = 1000
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
EMPTY_DIGEST = "SHA-256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="
ROLLUP = {"Nats-Rollup": "sub"}
TARGETS = {"first_page_p50_ms": 20.0, "full_listing_keys_s": 50_000.0}
TARGET_KEYS = 100_000
RESULTS_DIR = BENCH_DIR / "results"
# Keys that clients and gateways get wrong; each one is also checked in the full listings.
ODD_KEYS = (
    "Z-upper/first.bin",  # upper case sorts before every "d..": the first page does not start with the bulk keys
    "odd/with space.bin",  # a space travels as %20 (or '+' in forms)
    "odd/plus+sign.bin",  # a literal '+' that must not come back as a space
    "odd/100%.bin",  # a lone '%', invalid as an escape
    "odd/pre%2Fencoded.bin",  # '%2F' that must stay three characters, not become a '/' and a level of its own
    "odd/ünïcödé.bin",  # two-byte UTF-8
    "odd/\ufffd-bmp-last.bin",  # U+FFFD sorts BEFORE U+1F4BE in UTF-8 byte order (S3's order)...
    "odd/\U0001f4be-astral.bin",  # ...but after it in UTF-16 order (Java/JavaScript string sorts)
    "top level key with space.txt",  # a key at the root, so the root delimiter listing has Contents too
)


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=str.encode)


def make_keys(n: int) -> list[str]:
    """n keys: the odd ones plus d00..d99/s0..s9/obj-<i>.bin, spread so every leaf prefix holds about n/1000."""
    bulk = n - len(ODD_KEYS)
    width = max(6, len(str(bulk - 1)))
    return [f"d{i % 100:02d}/s{(i // 100) % 10}/obj-{i:0{width}d}.bin" for i in range(bulk)] + list(ODD_KEYS)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (what numpy calls 'linear')."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000.0 for s in seconds)
    return {
        "n": len(ms),
        "min": ms[0],
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": ms[-1],
        "mean": statistics.fmean(ms),
    }


def rss_mib(pid: int) -> float:
    return proc_status_kib(pid).get("VmRSS", 0) / 1024


def phase_procs(watch: PhaseWatch, seconds: float) -> dict[str, Any]:
    """CPU (% of one core) and peak RSS of gateway, nats-server and this client over one phase."""
    out: dict[str, Any] = {"client_cpu_s": watch.client_cpu_s, "client_cpu_pct": 100.0 * watch.client_cpu_s / seconds}
    for name, stats in watch.stats.items():
        out[name] = asdict(stats)
        out[name]["cpu_pct"] = None if stats.cpu_s is None else 100.0 * stats.cpu_s / seconds
    return out


# --- S3 client ----------------------------------------------------------------------------------------------------


class S3:
    """A pooled boto3 client that also clocks each HTTP exchange apart from boto3's own work.

    botocore emits before-send right before the request goes out (after signing) and before-parse once the
    whole body is read: the time between is the gateway's latency as seen from here, without the XML parsing,
    which for a 1000-key page costs boto3 more than the gateway needs to produce it.
    """

    def __init__(self, endpoint: str, access_key: str, secret_key: str, pool: int, timeout: float) -> None:
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            max_pool_connections=pool,
            # No retries: a failed or slow request must show, not be hidden behind a second attempt.
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=timeout,
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=config,
        )
        self._local = threading.local()
        self.client.meta.events.register("before-send.s3", self._sent)
        self.client.meta.events.register("before-parse.s3", self._received)

    @contextlib.contextmanager
    def quiet_gc(self) -> Iterator[None]:
        """Keep this process's garbage collector out of the HTTP windows of the calls made in the block.

        boto3 leaves many objects per page, so a collection often lands while a response is read and shows
        up as a gateway delay (first page p99 47 ms instead of 36 ms in a 20k-key trial). It runs between the
        calls instead.
        Single-threaded blocks only: the collector is process-wide.
        """
        self._local.quiet_gc = True
        try:
            yield
        finally:
            self._local.quiet_gc = False
            gc.enable()

    def _sent(self, **_: Any) -> None:
        if getattr(self._local, "quiet_gc", False):
            gc.disable()
        self._local.t0 = time.perf_counter()

    def _received(self, **_: Any) -> None:
        elapsed = time.perf_counter() - self._local.t0
        if getattr(self._local, "quiet_gc", False):
            gc.enable()
        self._local.last = elapsed
        self._local.total = getattr(self._local, "total", 0.0) + elapsed
        self._local.count = getattr(self._local, "count", 0) + 1

    def tally(self) -> tuple[float, int]:
        """(HTTP seconds, requests) so far in this thread; subtract two tallies to cover a block of calls."""
        return getattr(self._local, "total", 0.0), getattr(self._local, "count", 0)

    def timed(self, op: str, **params: Any) -> tuple[dict[str, Any], float, float]:
        """(response, boto3 wall seconds, HTTP round-trip seconds) of one call."""
        self._local.last = None
        start = time.perf_counter()
        resp: dict[str, Any] = getattr(self.client, op)(**params)
        wall = time.perf_counter() - start
        return resp, wall, self._local.last if self._local.last is not None else wall


def status_of(exc: ClientError) -> tuple[int, str]:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)), str(
        exc.response.get("Error", {}).get("Code", "")
    )


@dataclass
class Listing:
    keys: list[str]
    prefixes: list[str]
    pages: int
    wall_s: float
    http_s: float
    bad_entries: int  # entries whose size or ETag is not that of the empty object every key was given

    def summary(self) -> dict[str, Any]:
        n = len(self.keys) + len(self.prefixes)
        return {
            "entries": n,
            "pages": self.pages,
            "wall_s": self.wall_s,
            "http_s": self.http_s,
            "keys_s_boto3": n / self.wall_s if self.wall_s else None,
            "keys_s_http": n / self.http_s if self.http_s else None,
            "bad_entries": self.bad_entries,
        }


def list_all(s3: S3, version: int, **params: Any) -> Listing:
    """Every page of a listing through boto3's paginator (v2: continuation tokens, v1: markers)."""
    paginator = s3.client.get_paginator("list_objects_v2" if version == 2 else "list_objects")
    keys: list[str] = []
    prefixes: list[str] = []
    pages = bad = 0
    http0, _ = s3.tally()
    start = time.perf_counter()
    with s3.quiet_gc():
        for page in paginator.paginate(Bucket=BUCKET, PaginationConfig={"PageSize": PAGE}, **params):
            pages += 1
            for obj in page.get("Contents", ()):
                keys.append(obj["Key"])
                if obj["Size"] != 0 or obj["ETag"] != f'"{EMPTY_MD5}"':
                    bad += 1
            prefixes.extend(cp["Prefix"] for cp in page.get("CommonPrefixes", ()))
    wall = time.perf_counter() - start
    return Listing(keys, prefixes, pages, wall, s3.tally()[0] - http0, bad)


def check_listing(name: str, got: list[str], expected: list[str]) -> dict[str, Any]:
    encoded = [k.encode() for k in got]
    in_order = all(a < b for a, b in itertools.pairwise(encoded))
    if got != expected:
        missing = set(expected) - set(got)
        extra = set(got) - set(expected)
        raise BenchError(
            f"{name}: {len(got)} keys back, {len(expected)} expected; UTF-8 order {'ok' if in_order else 'BROKEN'}; "
            f"missing e.g. {sorted(missing)[:3]!r}, unexpected e.g. {sorted(extra)[:3]!r}"
        )
    return {"count_ok": True, "utf8_order_ok": in_order}


# --- populate -----------------------------------------------------------------------------------------------------


def meta_document(key: str, nb: str, nuid: str, mtime: str) -> bytes:
    doc = {
        "name": key,
        "bucket": nb,
        "nuid": nuid,
        "size": 0,
        "mtime": mtime,
        "chunks": 0,
        "digest": EMPTY_DIGEST,
        "metadata": {META_ETAG: EMPTY_MD5},
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


async def publish_metas(url: str, keys: list[str], window: int, timeout: float) -> dict[str, Any]:
    """Write one Object Store meta message per key straight to JetStream, as an Object Store client would.

    A 0-byte object has no chunks, so the meta message is the whole object. Acks are awaited in a bounded
    window (publish_async), not one by one: 100k round trips would take longer than everything measured.
    """
    nb = naming.nats_bucket(BUCKET)
    stream = naming.stream_name(nb)
    mtime = format_mtime(datetime.datetime.now(datetime.UTC))
    nuid = NUID()
    # Check the document against the gateway's own model once, before sending 100k of them.
    StoredObjectInfo.model_validate_json(meta_document(keys[0], nb, "check", mtime))
    failures: list[str] = []

    def acked(fut: asyncio.Future[Any]) -> None:
        # Every outcome is read, so a refused meta fails the run here rather than as a short listing later.
        if fut.cancelled():
            failures.append("cancelled")
        elif (exc := fut.exception()) is not None:
            failures.append(repr(exc))

    nc = await nats.connect(url, max_reconnect_attempts=0)
    try:
        js = nc.jetstream(publish_async_max_pending=window)
        start = time.perf_counter()
        for key in keys:
            payload = meta_document(key, nb, nuid.next().decode(), mtime)
            fut = await js.publish_async(naming.meta_subject(nb, key), payload, headers=ROLLUP)
            fut.add_done_callback(acked)
        sent_s = time.perf_counter() - start
        await asyncio.wait_for(js.publish_async_completed(), timeout)
        acked_s = time.perf_counter() - start
        info = await js.stream_info(stream)
    finally:
        await nc.close()
    if failures:
        raise BenchError(f"{len(failures)} meta publishes failed, first: {failures[0]}")
    if info.state.messages != len(keys):
        raise BenchError(f"stream {stream} holds {info.state.messages} messages after publishing {len(keys)} metas")
    return {
        "keys": len(keys),
        "window": window,
        "sent_s": sent_s,
        "seconds": acked_s,
        "msgs_s": len(keys) / acked_s,
        "stream_messages": info.state.messages,
        "stream_bytes": info.state.bytes,
    }


# --- phases -------------------------------------------------------------------------------------------------------


def first_listing(s3: S3, expected_first: list[str], timeout: float) -> dict[str, Any]:
    """Time until the first ListObjectsV2 of a fresh gateway answers: it builds the bucket's index first.

    The gateway answers 503 when its index makes no progress for 15 s (its catch-up limit); the index keeps
    filling in the background, so retry and report the attempts rather than fail on the first 503.
    """
    attempts: list[dict[str, Any]] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        try:
            resp = s3.client.list_objects_v2(Bucket=BUCKET, MaxKeys=PAGE)
        except ClientError as exc:
            status, code = status_of(exc)
            attempts.append({"status": status, "code": code, "s": time.perf_counter() - t0})
            if status < 500 or time.perf_counter() - start > timeout:
                raise BenchError(f"first listing: {status} {code} after {time.perf_counter() - start:.1f} s") from exc
            continue
        attempts.append({"status": 200, "s": time.perf_counter() - t0})
        break
    seconds = time.perf_counter() - start
    got = [obj["Key"] for obj in resp.get("Contents", ())]
    if got != expected_first:
        raise BenchError(f"first page: {got[:3]!r}... does not start with the expected {expected_first[:3]!r}...")
    return {"seconds": seconds, "attempts": attempts}


def first_page_latency(s3: S3, expected_first: list[str], warmup: int, calls: int) -> dict[str, Any]:
    for _ in range(warmup):
        s3.client.list_objects_v2(Bucket=BUCKET, MaxKeys=PAGE)
    walls: list[float] = []
    https: list[float] = []
    with s3.quiet_gc():
        for _ in range(calls):
            resp, wall, http = s3.timed("list_objects_v2", Bucket=BUCKET, MaxKeys=PAGE)
            walls.append(wall)
            https.append(http)
            if [obj["Key"] for obj in resp.get("Contents", ())] != expected_first or not resp.get("IsTruncated"):
                raise BenchError("a repeated first page differs from the expected keys")
    return {"warmup": warmup, "calls": calls, "boto3_ms": latency_ms(walls), "http_ms": latency_ms(https)}


def delimiter_walk(s3: S3, keys: list[str]) -> dict[str, Any]:
    """Delimiter "/" at the root, then one delimiter listing per common prefix found there."""
    http0, req0 = s3.tally()
    start = time.perf_counter()
    root = list_all(s3, 2, Delimiter="/")
    level2: list[str] = []
    level2_keys = 0
    for prefix in root.prefixes:
        below = list_all(s3, 2, Prefix=prefix, Delimiter="/")
        level2.extend(below.prefixes)
        level2_keys += len(below.keys)
    wall = time.perf_counter() - start
    http1, req1 = s3.tally()
    want_root = sorted({k.split("/", 1)[0] + "/" for k in keys if "/" in k}, key=str.encode)
    want_level2 = sorted({"/".join(k.split("/", 2)[:2]) + "/" for k in keys if k.count("/") >= 2}, key=str.encode)
    if root.prefixes != want_root or sorted(level2, key=str.encode) != want_level2:
        raise BenchError(
            f"delimiter walk: {len(root.prefixes)} root prefixes ({len(want_root)} expected), "
            f"{len(level2)} second-level prefixes ({len(want_level2)} expected)"
        )
    return {
        "requests": req1 - req0,
        "wall_s": wall,
        "http_s": http1 - http0,
        "root_prefixes": len(root.prefixes),
        "root_keys": len(root.keys),
        "level2_prefixes": len(level2),
        "level2_keys": level2_keys,
    }


def leaf_listing(s3: S3, keys: list[str], runs: int) -> dict[str, Any]:
    prefix = "d00/s0/"
    want = utf8_sorted([k for k in keys if k.startswith(prefix)])
    results = []
    for _ in range(runs):
        got = list_all(s3, 2, Prefix=prefix)
        check_listing(f"leaf {prefix}", got.keys, want)
        results.append(got.summary())
    return {
        "prefix": prefix,
        "keys": len(want),
        "runs": runs,
        "pages": results[0]["pages"],
        "keys_s_boto3_median": statistics.median(r["keys_s_boto3"] for r in results),
        "keys_s_http_median": statistics.median(r["keys_s_http"] for r in results),
    }


def list_buckets_phase(s3: S3, count: int, threads: int, calls: int) -> dict[str, Any]:
    names = [f"bench-lb-{i:04d}" for i in range(count)]
    created: list[str] = []

    def create(name: str) -> None:
        s3.client.create_bucket(Bucket=name)
        created.append(name)

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create, names))
        create_s = time.perf_counter() - start
        for _ in range(3):
            s3.client.list_buckets()
        walls: list[float] = []
        https: list[float] = []
        with s3.quiet_gc():
            for _ in range(calls):
                resp, wall, http = s3.timed("list_buckets")
                walls.append(wall)
                https.append(http)
                got = [b["Name"] for b in resp.get("Buckets", ())]
                if len(got) != count + 1 or got != sorted(got):
                    raise BenchError(
                        f"ListBuckets: {len(got)} buckets back ({count + 1} expected), sorted: {got == sorted(got)}"
                    )
    finally:
        # Deleted through S3 also on failure, so a later phase or a rerun against the same NATS starts clean.
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda name: s3.client.delete_bucket(Bucket=name), list(created)))
        delete_s = time.perf_counter() - start
    left = [b["Name"] for b in s3.client.list_buckets().get("Buckets", ())]
    if left != [BUCKET]:
        raise BenchError(f"after deleting the extra buckets ListBuckets shows {len(left)}: {left[:5]}")
    return {
        "buckets": count,
        "threads": threads,
        "create_s": create_s,
        "create_per_s": count / create_s,
        "delete_s": delete_s,
        "delete_per_s": count / delete_s,
        "boto3_ms": latency_ms(walls),
        "http_ms": latency_ms(https),
    }


# --- py-spy -------------------------------------------------------------------------------------------------------


# Files whose frames sit under nearly every sample (interpreter start-up, the event loop): listed as inclusive
# time they would fill the top of the list and say nothing about where the time goes.
AMBIENT_FRAMES = ("asyncio/", "<frozen runpy>", "selectors.py", "nats_s3/__main__.py", "nats_s3/cli.py")


class Profiler:
    """py-spy record of one process over a block of work, summarised as the busiest frames."""

    def __init__(self, py_spy: str, pid: int, out: Path, rate: int) -> None:
        self.args = [
            py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--function",
            # Nonblocking: py-spy does not pause the gateway per sample, so it perturbs what it measures less.
            "--nonblocking", "--output", str(out),
        ]  # fmt: skip
        self.out = out
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.seconds = 0.0

    def __enter__(self) -> Profiler:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # py-spy needs a moment to attach; work started before then would go unsampled.
        time.sleep(1.0)
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise BenchError(f"py-spy exited: {err}")
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self.stop()

    def stop(self) -> None:
        if self.proc is None:
            return
        # SIGINT is py-spy's Ctrl-C: it stops sampling and writes the output file.
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def summary(self, top: int = 12) -> dict[str, Any]:
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        with contextlib.suppress(OSError), self.out.open() as fh:
            for line in fh:
                stack, _, count = line.rstrip("\n").rpartition(" ")
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                frames = stack.split(";")
                total += n
                own[frames[-1]] += n
                for frame in {f for f in frames if not f.startswith(AMBIENT_FRAMES, f.rfind(" (") + 2)}:
                    inclusive[frame] += n
        expected = self.seconds * self.rate
        return {
            "samples": total,
            "seconds": self.seconds,
            # Idle samples are left out by py-spy, so samples over seconds x rate is how busy the gateway was.
            "busy_pct": 100.0 * total / expected if expected else None,
            "self": [(frame, 100.0 * n / total) for frame, n in own.most_common(top)] if total else [],
            "inclusive": [(frame, 100.0 * n / total) for frame, n in inclusive.most_common(top)] if total else [],
        }


def versions() -> dict[str, str]:
    out = {"boto3": boto3.__version__, "nats-py": importlib.metadata.version("nats-py")}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        line = subprocess.run([find_nats_server(), "--version"], capture_output=True, text=True, timeout=10).stdout
        out["nats-server"] = line.strip()
    return out


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


# --- reporting ----------------------------------------------------------------------------------------------------


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "-"
    return "ok" if (value >= target if higher_is_better else value <= target) else "MISS"


def print_report(r: dict[str, Any]) -> None:
    n = r["config"]["keys"]
    pop = r["populate"]
    machine = r["machine"]
    print(f"\nnats-s3 listing benchmark: {n:,} keys in {BUCKET}, {machine['nproc']} CPUs ({machine['cpu_model']})")
    print(
        f"populate (not a target): {pop['keys']:,} meta messages published straight to JetStream in "
        f"{pop['seconds']:.2f} s ({pop['msgs_s']:,.0f} msg/s)"
    )
    if n != TARGET_KEYS:
        print(f"(the targets are set for {TARGET_KEYS:,} keys; this run has {n:,})")
    fp = r["first_page"]
    v2, v1 = r["full_v2"], r["full_v1"]
    print()
    print(f"{'measure':<58}{'value':>14}{'target':>10}  verdict")

    def row(label: str, value: str, target: str = "", mark: str = "") -> None:
        print(f"{label:<58}{value:>14}{target:>10}  {mark}")

    t_ms, t_ks = TARGETS["first_page_p50_ms"], TARGETS["full_listing_keys_s"]
    row("first page p50, HTTP round trip (ms)", f"{fp['http_ms']['p50']:.2f}", f"<= {t_ms:g}",
        verdict(fp["http_ms"]["p50"], t_ms, False))  # fmt: skip
    row("first page p99, HTTP round trip (ms)", f"{fp['http_ms']['p99']:.2f}")
    row("first page p50, boto3 call incl. XML parsing (ms)", f"{fp['boto3_ms']['p50']:.2f}", f"<= {t_ms:g}",
        verdict(fp["boto3_ms"]["p50"], t_ms, False))  # fmt: skip
    row("first page p99, boto3 call (ms)", f"{fp['boto3_ms']['p99']:.2f}")
    row("full listing v2, keys/s over HTTP time", f"{v2['keys_s_http']:,.0f}", f">= {t_ks:,.0f}",
        verdict(v2["keys_s_http"], t_ks, True))  # fmt: skip
    row("full listing v2, keys/s boto3 paginator end to end", f"{v2['keys_s_boto3']:,.0f}", f">= {t_ks:,.0f}",
        verdict(v2["keys_s_boto3"], t_ks, True))  # fmt: skip
    row(f"full listing v2: {v2['pages']} pages, wall / HTTP (s)", f"{v2['wall_s']:.2f} / {v2['http_s']:.2f}")
    row("full listing v1 (markers), keys/s over HTTP time", f"{v1['keys_s_http']:,.0f}")
    row("full listing v1, keys/s boto3 end to end", f"{v1['keys_s_boto3']:,.0f}")
    row("sorted in UTF-8 byte order, complete (v2, v1)", "yes" if r["order_ok"] else "NO")
    dw = r["delimiter_walk"]
    row(f"delimiter walk: root + {dw['root_prefixes']} prefixes, requests", f"{dw['requests']}")
    row("delimiter walk: wall / HTTP (s)", f"{dw['wall_s']:.3f} / {dw['http_s']:.3f}")
    leaf = r["leaf"]
    row(f"leaf {leaf['prefix']} ({leaf['keys']} keys), keys/s HTTP / boto3",
        f"{leaf['keys_s_http_median']:,.0f} / {leaf['keys_s_boto3_median']:,.0f}")  # fmt: skip
    row("index build: first listing after start (s)", f"{r['first_listing']['seconds']:.2f}")
    builds = r["index_builds"]
    if builds:
        secs = [b["seconds"] for b in builds]
        row(f"index build after restart, median of {len(secs)} (s)", f"{statistics.median(secs):.2f}")
        row("index build after restart, min / max (s)", f"{min(secs):.2f} / {max(secs):.2f}")
    rss = r["rss"]
    row("gateway RSS before populate (MiB)", f"{rss['before_populate_mib']:.1f}")
    row("gateway RSS after index built (MiB)", f"{rss['after_index_mib']:.1f}")
    row("gateway RSS per 100,000 keys (MiB)", f"{rss['per_100k_keys_mib']:.1f}")
    if rss.get("restart_per_100k_keys_mib") is not None:
        row("  same after restart, median (MiB / 100k keys)", f"{rss['restart_per_100k_keys_mib']:.1f}")
    lb = r.get("list_buckets")
    if lb:
        row(f"create {lb['buckets']} buckets via S3, {lb['threads']} threads (s)", f"{lb['create_s']:.2f}")
        row(f"ListBuckets with {lb['buckets'] + 1} buckets p50 / p99, HTTP (ms)",
            f"{lb['http_ms']['p50']:.1f} / {lb['http_ms']['p99']:.1f}")  # fmt: skip
        row("ListBuckets p50 / p99, boto3 (ms)", f"{lb['boto3_ms']['p50']:.1f} / {lb['boto3_ms']['p99']:.1f}")
        row(f"delete {lb['buckets']} buckets via S3 (s)", f"{lb['delete_s']:.2f}")
    print()
    print("CPU over each phase, % of one core (client = this process: boto3 signing and XML parsing)")
    print(f"{'phase':<24}{'seconds':>9}{'client':>9}{'gateway':>9}{'nats':>9}")
    for name, phase in r["phases"].items():
        gw = phase["procs"].get("gateway", {}).get("cpu_pct")
        ns = phase["procs"].get("nats", {}).get("cpu_pct")
        print(
            f"{name:<24}{phase['seconds']:>9.2f}{phase['procs']['client_cpu_pct']:>9.0f}"
            f"{'-' if gw is None else f'{gw:.0f}':>9}{'-' if ns is None else f'{ns:.0f}':>9}"
        )
    for name, prof in r.get("profiles", {}).items():
        print(f"\npy-spy, gateway during {name}: {prof['samples']} samples over {prof['seconds']:.1f} s, "
              f"busy {prof['busy_pct']:.0f}%")  # fmt: skip
        print("  self time:")
        for frame, pct in prof["self"]:
            print(f"    {pct:5.1f}%  {frame}")
        print("  inclusive:")
        for frame, pct in prof["inclusive"]:
            print(f"    {pct:5.1f}%  {frame}")


# --- main ---------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--keys", type=int, default=TARGET_KEYS, help="keys in the bucket")
    p.add_argument("--scale", action="store_true", help="1,000,000 keys (overrides --keys)")
    p.add_argument("--calls", type=int, default=200, help="timed first-page calls (after --warmup)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--index-builds", type=int, default=3, help="gateway restarts, each timing a fresh index build")
    p.add_argument("--leaf-runs", type=int, default=20)
    p.add_argument("--buckets", type=int, default=1000, help="extra buckets for ListBuckets (0: skip)")
    p.add_argument("--bucket-threads", type=int, default=16, help="threads creating and deleting them")
    p.add_argument("--list-buckets-calls", type=int, default=20)
    p.add_argument("--window", type=int, default=4000, help="meta publishes awaiting their ack at once")
    p.add_argument("--timeout", type=float, default=300.0, help="socket read timeout of each S3 request, seconds")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway in an extra full listing and index build")
    p.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = p.parse_args(argv)
    if args.scale:
        args.keys = 1_000_000
    if args.keys < 100 + len(ODD_KEYS) or args.calls < 1 or args.leaf_runs < 1 or args.index_builds < 0:
        p.error(f"--keys must be at least {100 + len(ODD_KEYS)}; --calls and --leaf-runs positive")
    if args.buckets and args.list_buckets_calls < 1:
        p.error("--list-buckets-calls must be positive")
    args.py_spy = find_py_spy() if args.profile else None
    if args.profile and args.py_spy is None:
        p.error("--profile needs py-spy (.venv/bin/pip install py-spy)")
    return args


class Run:
    """The servers of one benchmark run; everything it starts is stopped by close()."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.nats = NatsServerProcess(store_dir=tmp / "jetstream")
        self.creds = write_credentials(tmp / "credentials.json", [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}])
        self.gateways: list[GatewayProcess] = []
        self.gateway: GatewayProcess | None = None
        self.profilers: list[Profiler] = []

    def start_gateway(self) -> tuple[GatewayProcess, S3]:
        if self.gateway is not None:
            self.gateway.stop()
        gw = GatewayProcess(
            self.creds, self.nats.url, log_path=self.tmp / f"gateway-{len(self.gateways)}.log", gc_args=[]
        )
        self.gateways.append(gw)
        self.gateway = gw.start()
        pool = max(self.args.bucket_threads * 2, 10)
        return gw, S3(gw.endpoint, ACCESS_KEY, SECRET_KEY, pool, self.args.timeout)

    @property
    def pids(self) -> dict[str, int]:
        assert self.nats.proc is not None and self.gateway is not None and self.gateway.proc is not None
        return {"gateway": self.gateway.proc.pid, "nats": self.nats.proc.pid}

    def log_problems(self) -> list[str]:
        problems: list[str] = []
        for gw in self.gateways:
            try:
                text = gw.log_text()
            except OSError:
                continue
            # nats-py reports its own close as a disconnect: a warning after "shutting down" comes from the restart.
            cut = text.find('msg="shutting down"')
            running, stopping = (text, "") if cut < 0 else (text[:cut], text[cut:])
            problems += [f"{gw.log_path.name}: {line}" for line in log_problems(running, 20)]
            problems += [f"{gw.log_path.name} (shutting down): {line}" for line in log_problems(stopping, 20)]
        return problems

    def close(self) -> None:
        for prof in self.profilers:
            prof.stop()
        if self.gateway is not None:
            self.gateway.stop()
        self.nats.stop()


def benchmark(args: argparse.Namespace, run: Run, record: dict[str, Any]) -> None:
    phases: dict[str, Any] = {}
    record["phases"] = phases

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        print(f"{name} ...", flush=True)
        with PhaseWatch(run.pids) as watch:
            start = time.perf_counter()
            yield
            seconds = time.perf_counter() - start
        phases[name] = {"seconds": seconds, "procs": phase_procs(watch, seconds)}
        print(f"{name}: {seconds:.2f} s", flush=True)

    keys = make_keys(args.keys)
    expected = utf8_sorted(keys)
    expected_first = expected[:PAGE]
    gw, s3 = run.start_gateway()
    s3.client.create_bucket(Bucket=BUCKET)
    assert gw.proc is not None
    rss_before = rss_mib(gw.proc.pid)
    record["nats_rss_before_populate_mib"] = rss_mib(run.pids["nats"])

    with phase("populate"):
        record["populate"] = asyncio.run(publish_metas(run.nats.url, keys, args.window, 60 + len(keys) / 1000))
    record["nats_rss_after_populate_mib"] = rss_mib(run.pids["nats"])

    # HEADs read the meta from the stream, not from the index, so the index is still unbuilt after them.
    for key in (keys[0], ODD_KEYS[-2]):
        head = s3.client.head_object(Bucket=BUCKET, Key=key)
        if head["ContentLength"] != 0 or head["ETag"] != f'"{EMPTY_MD5}"':
            raise BenchError(f"HEAD {key!r}: length {head['ContentLength']}, ETag {head['ETag']}")
    with phase("first listing"):
        record["first_listing"] = first_listing(s3, expected_first, args.timeout)
    rss_after = rss_mib(gw.proc.pid)
    record["rss"] = {
        "before_populate_mib": rss_before,
        "after_index_mib": rss_after,
        "per_100k_keys_mib": (rss_after - rss_before) * 100_000 / len(keys),
    }

    with phase("first page"):
        record["first_page"] = first_page_latency(s3, expected_first, args.warmup, args.calls)
    with phase("full listing v2"):
        v2 = list_all(s3, 2)
    with phase("full listing v1"):
        v1 = list_all(s3, 1)
    checks = [check_listing("full listing v2", v2.keys, expected), check_listing("full listing v1", v1.keys, expected)]
    if v2.bad_entries or v1.bad_entries:
        raise BenchError(f"entries with a wrong size or ETag: v2 {v2.bad_entries}, v1 {v1.bad_entries}")
    record["full_v2"], record["full_v1"] = v2.summary(), v1.summary()
    record["order_ok"] = all(c["utf8_order_ok"] for c in checks)
    del v1, v2
    with phase("delimiter walk"):
        record["delimiter_walk"] = delimiter_walk(s3, keys)
    with phase("leaf listings"):
        record["leaf"] = leaf_listing(s3, keys, args.leaf_runs)

    profiles: dict[str, Any] = {}
    record["profiles"] = profiles
    if args.py_spy:
        prof = Profiler(args.py_spy, gw.proc.pid, run.tmp / "full-listing.spy", args.profile_rate)
        run.profilers.append(prof)
        with prof:
            list_all(s3, 2)
        profiles["full listing v2"] = prof.summary()

    builds: list[dict[str, Any]] = []
    record["index_builds"] = builds
    for i in range(args.index_builds):
        gw, s3 = run.start_gateway()
        assert gw.proc is not None
        idle = rss_mib(gw.proc.pid)
        with phase(f"index build {i + 1}"):
            build = first_listing(s3, expected_first, args.timeout)
        built = rss_mib(gw.proc.pid)
        build.update(rss_idle_mib=idle, rss_built_mib=built, per_100k_keys_mib=(built - idle) * 100_000 / len(keys))
        builds.append(build)
    if builds:
        record["rss"]["restart_per_100k_keys_mib"] = statistics.median(b["per_100k_keys_mib"] for b in builds)
    if args.py_spy:
        gw, s3 = run.start_gateway()
        assert gw.proc is not None
        prof = Profiler(args.py_spy, gw.proc.pid, run.tmp / "index-build.spy", args.profile_rate)
        run.profilers.append(prof)
        with prof:
            first_listing(s3, expected_first, args.timeout)
        profiles["index build"] = prof.summary()

    if args.buckets:
        with phase("list buckets"):
            record["list_buckets"] = list_buckets_phase(s3, args.buckets, args.bucket_threads, args.list_buckets_calls)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="nats-s3-bench-list-"))
    started = time.monotonic()
    run: Run | None = None
    status = 1
    record: dict[str, Any] = {
        "bench": "listing",
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": versions(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets": {**TARGETS, "at_keys": TARGET_KEYS},
    }
    try:
        run = Run(args, tmp)
        run.nats.start()
        benchmark(args, run, record)
        record["client_cpu_s"] = client_cpu_seconds()
        record["client_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        record["verdict"] = {
            "first_page_p50_http": verdict(record["first_page"]["http_ms"]["p50"], TARGETS["first_page_p50_ms"], False),
            "first_page_p50_boto3": verdict(
                record["first_page"]["boto3_ms"]["p50"], TARGETS["first_page_p50_ms"], False
            ),
            "full_listing_http": verdict(record["full_v2"]["keys_s_http"], TARGETS["full_listing_keys_s"], True),
            "full_listing_boto3": verdict(record["full_v2"]["keys_s_boto3"], TARGETS["full_listing_keys_s"], True),
        }
        record["gateway_log_problems"] = run.log_problems()
        record["wall_s"] = round(time.monotonic() - started, 2)
        print_report(record)
        if record["gateway_log_problems"]:
            print("\ngateway log warnings/errors:", *record["gateway_log_problems"][-10:], sep="\n  ")
        args.results_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = args.results_dir / f"listing-{stamp}.json"
        out.write_text(json.dumps(record) + "\n")
        print(f"\nresults: {out}  (wall {time.monotonic() - started:.1f} s, client CPU {record['client_cpu_s']:.1f} s)")
        status = 0
    except BenchError as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr)
    except ClientError as exc:
        code = status_of(exc)
        print(f"\nFAILED (S3 error {code[0]} {code[1]}): {exc}", file=sys.stderr)
    except (BotoCoreError, OSError, nats.errors.Error, TimeoutError) as exc:
        print(f"\nFAILED: {exc!r}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted, cleaning up", file=sys.stderr)
        status = 130
    finally:
        try:
            if run is not None:
                run.close()
                # Printed after the stop so the tail includes the gateway's shutdown messages.
                if status != 0 and run.gateway is not None:
                    with contextlib.suppress(OSError):
                        print("gateway log tail:\n" + run.gateway.log_text()[-4000:], file=sys.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
