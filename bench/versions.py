"""ListObjectVersions over a bucket of many versions, and reads of a key with a long history."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nats
import requests
from lxml import etree
from nats.nuid import NUID

from nats_s3.store import naming
from nats_s3.store.models import META_ETAG, format_mtime
from nats_s3.store.versions import META_VID

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from listing import EMPTY_DIGEST, EMPTY_MD5, ROLLUP, S3, latency_ms  # noqa: E402
from put_get import BenchError, machine_info  # noqa: E402

from tests.signing import sign  # noqa: E402
from tests.support import ACCESS_KEY, SECRET_KEY, GatewayProcess, NatsServerProcess, write_credentials  # noqa: E402

BUCKET = "bench-versions"
DEEP_KEY = "deep/history.bin"
SHALLOW_KEY = "shallow/one.bin"
TARGET_ENTRIES_S = 50_000.0
RESULTS_DIR = BENCH_DIR / "results"


def version_doc(key: str, nb: str, nuid: str, mtime: str, uid: str) -> bytes:
    doc = {
        "name": key, "bucket": nb, "nuid": nuid, "size": 0, "mtime": mtime, "chunks": 0, "digest": EMPTY_DIGEST,
        "metadata": {META_ETAG: EMPTY_MD5, META_VID: uid},
    }  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


async def populate(url: str, keys: int, per_key: int, deep: int, window: int) -> dict[str, Any]:
    """Each key gets `per_key` versions: the newest on its meta subject, the others on version subjects
    (what enabled-versioning PUTs leave), written straight to JetStream: 100k PUTs would take longer
    than what is measured. DEEP_KEY gets `deep` versions, SHALLOW_KEY one."""
    nb = naming.nats_bucket(BUCKET)
    mtime = format_mtime(datetime.datetime.now(datetime.UTC))
    nuid = NUID()
    base = time.time_ns()
    counter = 0
    failures: list[str] = []

    def acked(fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            failures.append(repr(fut.exception()) if not fut.cancelled() else "cancelled")

    nc = await nats.connect(url, max_reconnect_attempts=0)
    start = time.perf_counter()
    sent = 0
    try:
        js = nc.jetstream(publish_async_max_pending=window)
        layout = [(f"k{i:06d}/obj.bin", per_key) for i in range(keys)] + [(DEEP_KEY, deep), (SHALLOW_KEY, 1)]
        for key, count in layout:
            for n in range(count):
                counter += 1
                uid = f"{base + counter:016x}{counter & 0xFFFFFFFF:08x}"
                payload = version_doc(key, nb, nuid.next().decode(), mtime, uid)
                latest = n == count - 1
                subject = naming.meta_subject(nb, key) if latest else naming.version_subject(nb, key, uid)
                fut = await js.publish_async(subject, payload, headers=ROLLUP if latest else None)
                fut.add_done_callback(acked)
                sent += 1
        await asyncio.wait_for(js.publish_async_completed(), 600)
    finally:
        await nc.close()
    if failures:
        raise BenchError(f"{len(failures)} publishes failed, first: {failures[0]}")
    return {"versions": sent, "seconds": time.perf_counter() - start}


def list_versions(s3: S3, page: int) -> dict[str, Any]:
    """Every page of ListObjectVersions; checks the order (keys ascending, newest first within a key)."""
    params: dict[str, Any] = {"Bucket": BUCKET, "MaxKeys": page}
    entries = pages = 0
    http = 0.0
    wall_start = time.perf_counter()
    previous: tuple[str, str] | None = None
    while True:
        resp, _, http_s = s3.timed("list_object_versions", **params)
        http += http_s
        pages += 1
        # This bucket holds no delete markers, so Versions is the response in its order.
        rows = [(v["Key"], v["VersionId"]) for v in resp.get("Versions", [])]
        for key, vid in rows:
            if previous is not None and (
                key.encode() < previous[0].encode() or (key == previous[0] and vid >= previous[1])
            ):
                raise BenchError(f"out of order: {previous} then {(key, vid)}")
            previous = (key, vid)
        entries += len(rows)
        if not resp.get("IsTruncated"):
            break
        params["KeyMarker"] = resp["NextKeyMarker"]
        params["VersionIdMarker"] = resp["NextVersionIdMarker"]
    wall = time.perf_counter() - wall_start
    return {"entries": entries, "pages": pages, "http_s": http, "wall_s": wall, "entries_s_http": entries / http}


NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def raw_walk(endpoint: str, page: int, session: requests.Session) -> dict[str, Any]:
    """Every page over plain HTTP (signed, keep-alive): from sending a request to holding its whole body,
    what the gateway serves. boto3's XML parsing, several times that, is left out (as listing.py does)."""
    query = f"versions&max-keys={page}"
    entries = pages = size = 0
    http = 0.0
    while True:
        url = f"{endpoint}/{BUCKET}?{query}"
        headers = sign("GET", url)
        start = time.perf_counter()
        resp = session.get(url, headers=headers, timeout=120)
        body = resp.content
        http += time.perf_counter() - start
        if resp.status_code != 200:
            raise BenchError(f"ListObjectVersions answered {resp.status_code}: {body[:300]!r}")
        root = etree.fromstring(body)
        pages += 1
        size += len(body)
        entries += len(root.findall(f"{NS}Version")) + len(root.findall(f"{NS}DeleteMarker"))
        if root.findtext(f"{NS}IsTruncated") != "true":
            break
        key = quote(root.findtext(f"{NS}NextKeyMarker") or "", safe="")
        marker = root.findtext(f"{NS}NextVersionIdMarker")
        query = f"versions&max-keys={page}&key-marker={key}&version-id-marker={marker}"
    return {
        "entries": entries, "pages": pages, "http_s": http, "bytes_per_page": size / pages,
        "entries_s_http": entries / http,
    }  # fmt: skip


def gateway_durations(log_text: str, pages: int) -> dict[str, float]:
    """The gateway's own time per page: its access log's duration_ms (request in, response ready)."""
    found = [float(m) for m in re.findall(r"operation=ListObjectVersions.*?duration_ms=([0-9.]+)", log_text)]
    recent = sorted(found[-pages:])
    return {"p50_ms": recent[len(recent) // 2], "p90_ms": recent[int(len(recent) * 0.9)]}


def read_latency(s3: S3, key: str, calls: int) -> dict[str, float]:
    http = []
    for _ in range(calls):
        _, _, seconds = s3.timed("head_object", Bucket=BUCKET, Key=key)
        http.append(seconds)
    return latency_ms(http)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--per-key", type=int, default=5, help="versions of each key (keys x per-key = the total)")
    parser.add_argument("--deep", type=int, default=1000, help="versions of the one key with a long history")
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="nats-s3-bench-versions-"))
    server = NatsServerProcess(store_dir=tmp / "jetstream").start()
    creds = write_credentials(tmp / "credentials.json", [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}])
    gateway: GatewayProcess | None = None
    record: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    try:
        gateway = GatewayProcess(creds, server.url, log_path=tmp / "gateway.log", gc_args=[]).start()
        s3 = S3(gateway.endpoint, ACCESS_KEY, SECRET_KEY, 4, 120)
        s3.client.create_bucket(Bucket=BUCKET)
        s3.client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        record["populate"] = asyncio.run(populate(server.url, args.keys, args.per_key, args.deep, 4000))
        want = args.keys * args.per_key + args.deep + 1
        _, _, first_http = s3.timed("list_object_versions", Bucket=BUCKET, MaxKeys=args.page)
        record["first_page_http_s"] = first_http  # it builds the gateway's two indexes
        checked = list_versions(s3, args.page)
        if checked["entries"] != want:
            raise BenchError(f"listed {checked['entries']} versions, wrote {want}")
        record["boto3_walk"] = checked
        session = requests.Session()
        runs = [raw_walk(gateway.endpoint, args.page, session) for _ in range(args.runs)]
        record["listings"] = runs
        record["gateway_per_page"] = gateway_durations(gateway.log_text(), runs[0]["pages"] * args.runs)
        best = max(r["entries_s_http"] for r in runs)
        median = statistics.median(r["entries_s_http"] for r in runs)
        record["reads"] = {
            "latest_of_key_with_1_version": read_latency(s3, SHALLOW_KEY, args.calls),
            f"latest_of_key_with_{args.deep}_versions": read_latency(s3, DEEP_KEY, args.calls),
        }
        print(f"populated {record['populate']['versions']} versions in {record['populate']['seconds']:.1f} s")
        print(f"first page (it builds the gateway's indexes): {first_http:.2f} s")
        print(
            f"one walk through boto3 (checked: count, key order, newest first): "
            f"{checked['entries'] / checked['wall_s']:,.0f} entries/s, boto3's XML parsing included"
        )
        for r in runs:
            print(
                f"  {r['entries']} entries, {r['pages']} pages of {r['bytes_per_page'] / 1024:.0f} KiB: "
                f"{r['entries_s_http']:,.0f} entries/s over HTTP"
            )
        per_page = record["gateway_per_page"]
        print(
            f"the gateway's own time per {args.page}-entry page: p50 {per_page['p50_ms']:.2f} ms, "
            f"p90 {per_page['p90_ms']:.2f} ms ({args.page / per_page['p50_ms'] * 1000:,.0f} entries/s)"
        )
        verdict = "meets" if median >= TARGET_ENTRIES_S else "MISSES"
        print(
            f"median {median:,.0f} entries/s over HTTP (best {best:,.0f}): {verdict} the {TARGET_ENTRIES_S:,.0f} target"
        )
        for name, lat in record["reads"].items():
            print(f"HEAD {name}: p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms")
        RESULTS_DIR.mkdir(exist_ok=True)
        out = RESULTS_DIR / f"versions-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(record, indent=1))
        print(f"wrote {out.relative_to(REPO)}")
        return 0
    finally:
        if gateway is not None:
            gateway.stop()
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
