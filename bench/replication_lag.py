"""Replication lag on loopback: a hub and a leaf node site (tests/sites.py), a bucket of the hub
replicated to the leaf with `nats-s3 admin bucket replicate`, and how far the leaf's mirror falls
behind during bursts of writes through the hub's gateway, and how long it takes to catch up after
them and after a cut link.

    .venv/bin/python bench/replication_lag.py [--small 2000] [--large 4] [--large-mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import boto3
import nats
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.sites import HubAndLeaf  # noqa: E402
from tests.support import ACCESS_KEY, SECRET_KEY, GatewayProcess, write_credentials  # noqa: E402

BUCKET = "bench-replicated"
STREAM = "OBJ_bench-replicated"


class SeqWatch:
    """Samples the last sequence of the bucket's stream at both sites every `step` seconds, in a thread
    with its own event loop and connections."""

    def __init__(self, hub_url: str, leaf_url: str, step: float = 0.02) -> None:
        self.urls = (hub_url, leaf_url)
        self.step = step
        self.samples: list[tuple[float, int, int]] = []  # (time, hub seq, leaf seq)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        hub, leaf = [await nats.connect(u, max_reconnect_attempts=-1) for u in self.urls]
        try:
            while not self._stop.is_set():
                seqs = []
                for nc in (hub, leaf):
                    try:
                        seqs.append(int((await nc.jetstream().stream_info(STREAM)).state.last_seq))
                    except Exception:
                        seqs.append(-1)
                self.samples.append((time.monotonic(), seqs[0], seqs[1]))
                await asyncio.sleep(self.step)
        finally:
            for nc in (hub, leaf):
                with contextlib.suppress(Exception):
                    await nc.close()

    def start(self) -> SeqWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def caught_up_after(self, moment: float, target: int, timeout: float = 300) -> float:
        """Seconds from `moment` until the leaf had `target` (polling the samples)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, _, leaf in self.samples:
                if when >= moment and leaf >= target:
                    return when - moment
            time.sleep(self.step)
        raise TimeoutError(f"the leaf did not reach sequence {target} in {timeout}s")

    def max_behind(self, since: float, until: float) -> int:
        return max((h - lf for t, h, lf in self.samples if since <= t <= until and h >= 0 and lf >= 0), default=0)

    def hub_seq(self) -> int:
        return self.samples[-1][1]


def _burst(put: Callable[[int], None], count: int, threads: int) -> float:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(count)))
    return time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000, help="4 KiB PUTs in the small burst")
    parser.add_argument("--large", type=int, default=4, help="objects in the large burst")
    parser.add_argument("--large-mib", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()

    sites = HubAndLeaf().start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-repl-"))
    gateway = GatewayProcess(write_credentials(tmp / "creds.json"), sites.hub.url, gc_args=[]).start(60)
    results: dict[str, object] = {"small": args.small, "large": args.large, "large_mib": args.large_mib}
    watch: SeqWatch | None = None
    try:
        s3 = boto3.client(
            "s3", endpoint_url=gateway.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=args.threads),
        )  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        made = subprocess.run(
            [sys.executable, "-m", "nats_s3", "admin", "--natsServers", sites.leaf.url, "bucket", "replicate",
             BUCKET, "--from-domain", "hub"],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(made.stderr)
        watch = SeqWatch(sites.hub.url, sites.leaf.url).start()
        small = os.urandom(4096)
        large = os.urandom(args.large_mib * 1024 * 1024)

        for name, count, body in (("small", args.small, small), ("large", args.large, large)):
            began = time.monotonic()
            done = _burst(lambda i, n=name, b=body: s3.put_object(Bucket=BUCKET, Key=f"{n}/{i}", Body=b), count,
                          min(args.threads, count))  # fmt: skip
            time.sleep(0.05)
            target = watch.hub_seq()
            after = watch.caught_up_after(done, target)
            behind = watch.max_behind(began, done + after)
            mib = count * len(body) / 2**20
            results[name] = {"seconds": done - began, "mib": mib, "max_behind_msgs": behind, "caught_up_s": after}
            print(
                f"{name:>6}: {count} PUTs ({mib:.0f} MiB) in {done - began:.2f} s; mirror at most {behind} "
                f"messages behind; caught up {after:.2f} s after the last PUT"
            )

        sites.relay.cut()
        while sites.hub.leaf_connections():
            time.sleep(0.05)
        began = time.monotonic()
        _burst(lambda i: s3.put_object(Bucket=BUCKET, Key=f"cut/{i}", Body=small), args.small // 4, args.threads)
        s3.put_object(Bucket=BUCKET, Key="cut/large", Body=large)
        cut_for = time.monotonic() - began
        time.sleep(0.2)
        target = watch.hub_seq()
        restored = time.monotonic()
        sites.relay.restore()
        after = watch.caught_up_after(restored, target)
        results["cut"] = {"writes_while_cut": args.small // 4 + 1, "cut_s": cut_for, "caught_up_s": after}
        print(
            f"   cut: {args.small // 4} small PUTs and one of {args.large_mib} MiB while cut ({cut_for:.1f} s); "
            f"caught up {after:.2f} s after the link was restored"
        )
        results["when"] = datetime.now(UTC).isoformat()
        out_dir = REPO / "bench" / "results"
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"replication-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(results, indent=2))
        print(f"results: {out}")
    finally:
        if watch is not None:
            watch.stop()
        gateway.stop()
        sites.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
