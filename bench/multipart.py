"""Multipart upload throughput and gateway peak RSS (parts in parallel), and the time CompleteMultipartUpload takes."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from put_get import (  # noqa: E402
    UNSIGNED_PAYLOAD,
    BenchError,
    PhaseWatch,
    Target,
    machine_info,
)

from tests.support import (  # noqa: E402
    ACCESS_KEY,
    SECRET_KEY,
    GatewayProcess,
    NatsServerProcess,
    write_credentials,
)

MiB = 1024 * 1024


def request(target: Target, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, dict[str, str]]:
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = target.signed_headers(method, path, payload_hash)
    with target.connect() as conn:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}


def put_part(target: Target, path: str, block: memoryview) -> str:
    headers = target.signed_headers("PUT", path, UNSIGNED_PAYLOAD)
    with target.connect() as conn:
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(block)))
        conn.endheaders()
        assert conn.sock is not None
        conn.sock.sendall(block)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise BenchError(f"PUT {path}: {resp.status} {data[:300]!r}")
        return (resp.getheader("ETag") or "").strip('"')


def create_upload(target: Target, bucket: str, key: str) -> str:
    status, data, _ = request(target, "POST", f"/{bucket}/{key}?uploads=")
    if status != 200:
        raise BenchError(f"CreateMultipartUpload: {status} {data[:300]!r}")
    root = ElementTree.fromstring(data)
    return next(el.text or "" for el in root.iter() if el.tag.endswith("UploadId"))


def complete(target: Target, bucket: str, key: str, upload_id: str, etags: list[str]) -> float:
    body = (
        "<CompleteMultipartUpload>"
        + "".join(f'<Part><PartNumber>{n}</PartNumber><ETag>"{e}"</ETag></Part>' for n, e in enumerate(etags, start=1))
        + "</CompleteMultipartUpload>"
    )
    started = time.perf_counter()
    status, data, _ = request(target, "POST", f"/{bucket}/{key}?uploadId={upload_id}", body.encode())
    elapsed = time.perf_counter() - started
    if status != 200 or b"<Error>" in data:
        raise BenchError(f"Complete: {status} {data[:300]!r}")
    return elapsed


def upload(
    target: Target, bucket: str, key: str, size: int, part_size: int, concurrency: int, block: memoryview
) -> tuple[float, float]:
    """(seconds for create + parts, seconds for Complete)."""
    started = time.perf_counter()
    upload_id = create_upload(target, bucket, key)
    count = -(-size // part_size)

    def one(number: int) -> str:
        length = min(part_size, size - (number - 1) * part_size)
        return put_part(target, f"/{bucket}/{key}?partNumber={number}&uploadId={upload_id}", block[:length])

    with ThreadPoolExecutor(concurrency) as pool:
        etags = list(pool.map(one, range(1, count + 1)))
    parts_s = time.perf_counter() - started
    return parts_s, complete(target, bucket, key, upload_id, etags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--part-mib", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--complete-size-mib", type=int, default=1024, help="object size for the Complete timing")
    parser.add_argument("--complete-parts", type=int, default=128)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="nats-s3-bench-mp-"))
    nats_server = NatsServerProcess(store_dir=tmp / "js").start()
    gateway = GatewayProcess(write_credentials(tmp / "creds.json"), nats_server.url, gc_args=[]).start()
    target = Target(gateway.endpoint, ACCESS_KEY, SECRET_KEY, "us-east-1", 300.0)
    results: dict[str, object] = {
        "bench": "multipart",
        "timestamp": datetime.now(UTC).isoformat(),
        "machine": machine_info(),
        "config": vars(args),
        "runs": [],
    }
    try:
        assert gateway.proc is not None and nats_server.proc is not None
        pids = {"gateway": gateway.proc.pid, "nats": nats_server.proc.pid}
        target.simple("PUT", "/bench-mp")
        block = memoryview(
            bytes(range(256)) * (max(args.part_mib, args.complete_size_mib // args.complete_parts + 1) * MiB // 256)
        )
        size, part = args.size_mib * MiB, args.part_mib * MiB
        print(f"{args.size_mib} MiB in {args.part_mib} MiB parts, concurrency {args.concurrency}")
        print(f"{'run':<6}{'MiB/s':>10}{'complete ms':>14}{'gateway RSS peak MiB':>24}{'nats RSS peak MiB':>20}")
        runs: list[dict[str, float]] = []
        for index in range(1, args.runs + 1):
            with PhaseWatch(pids) as watch:
                parts_s, complete_s = upload(target, "bench-mp", "obj", size, part, args.concurrency, block)
            total = parts_s + complete_s
            row = {
                "mib_s": args.size_mib / total,
                "complete_ms": complete_s * 1000,
                "gateway_rss_peak_mib": watch.stats["gateway"].rss_peak_mib,
                "nats_rss_peak_mib": watch.stats["nats"].rss_peak_mib,
            }
            runs.append(row)
            print(
                f"{index:<6}{row['mib_s']:>10.1f}{row['complete_ms']:>14.1f}"
                f"{row['gateway_rss_peak_mib']:>24.1f}{row['nats_rss_peak_mib']:>20.1f}"
            )
            target.simple("DELETE", "/bench-mp/obj", ok=(204,))
        results["runs"] = runs
        csize, cparts = args.complete_size_mib * MiB, args.complete_parts
        _, complete_s = upload(target, "bench-mp", "big", csize, -(-csize // cparts), args.concurrency, block)
        results["complete_1gib_ms"] = complete_s * 1000
        print(
            f"Complete of a {args.complete_size_mib} MiB, {cparts}-part upload: {complete_s * 1000:.1f} ms"
            f" (target <= 200 ms)"
        )
        best = max(r["mib_s"] for r in runs)
        peak = max(r["gateway_rss_peak_mib"] for r in runs)
        print(f"best {best:.1f} MiB/s (target >= 150), gateway peak RSS {peak:.1f} MiB (target <= 150)")
        target.simple("DELETE", "/bench-mp/big", ok=(204,))
        target.simple("DELETE", "/bench-mp", ok=(204,))
        out_dir = REPO / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"multipart-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"results: {out}")
    finally:
        with contextlib.suppress(Exception):
            gateway.stop()
        nats_server.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
