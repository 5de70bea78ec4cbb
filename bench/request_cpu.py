"""Server CPU per small request: the gateway's own cost of a 4 KiB PUT, GET and HEAD, A/B between trees.

Concurrent throughput on a shared 2-core machine moves ±30 % between runs; the CPU time the server
processes spend per request, with requests sent one at a time, moves a few percent. Each tree given
(`--python`, the interpreter of a checkout's venv; the current one by default) starts a gateway with
its embedded nats-server; rounds alternate between the trees, and the median per operation is
reported, for the gateway process alone and with its nats-server.

    .venv/bin/python bench/request_cpu.py --python /tmp/before/.venv/bin/python --python .venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS, SECRET = "bench-access-key", "bench-secret-key-0123"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError):
                continue
    return found


class Gateway:
    def __init__(self, python: str, workdir: Path) -> None:
        self.port = free_port()
        creds = workdir / "credentials.json"
        creds.write_text(json.dumps({"credentials": [{"accessKey": ACCESS, "secretKey": SECRET}]}))
        self.log = (workdir / "gateway.log").open("ab")
        args = [python, "-m", "nats_s3", "--listen", f"127.0.0.1:{self.port}", "--s3.credentials", str(creds),
                "--data-dir", str(workdir / "data"), "--log.level", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, cwd=str(workdir))
        self.endpoint = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.endpoint}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("gateway not ready")
        self.pids = [self.proc.pid, *children(self.proc.pid)]

    def cpu(self) -> tuple[float, float]:
        """(gateway, gateway + nats-server) CPU seconds so far."""
        own = cpu_seconds(self.proc.pid)
        return own, own + sum(cpu_seconds(p) for p in self.pids[1:])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


class Client:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.session = requests.Session()
        self.signer = S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1")

    def send(self, method: str, path: str, body: bytes = b"") -> requests.Response:
        request = AWSRequest(method=method, url=self.endpoint + path, data=body)
        request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
        self.signer.add_auth(request)
        resp = self.session.request(method, request.url, data=body, headers=dict(request.headers), timeout=30)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
        return resp


def measure(gw: Gateway, client: Client, bucket: str, count: int) -> dict[str, tuple[float, float]]:
    body = os.urandom(4096)
    keys = [f"k{uuid.uuid4().hex}" for _ in range(count)]
    out: dict[str, tuple[float, float]] = {}
    for operation, method in (("PUT", "PUT"), ("GET", "GET"), ("HEAD", "HEAD")):
        before = gw.cpu()
        for key in keys:
            client.send(method, f"/{bucket}/{key}", body if method == "PUT" else b"")
        after = gw.cpu()
        out[operation] = ((after[0] - before[0]) / count * 1e6, (after[1] - before[1]) / count * 1e6)
    before = gw.cpu()
    for key in keys:
        client.send("DELETE", f"/{bucket}/{key}")
    after = gw.cpu()
    out["DELETE"] = ((after[0] - before[0]) / count * 1e6, (after[1] - before[1]) / count * 1e6)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", action="append", help="interpreter of a tree to measure (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=1500, help="requests per operation per round")
    args = parser.parse_args()
    trees = args.python or [sys.executable]
    results: dict[str, dict[str, list[tuple[float, float]]]] = {t: {} for t in trees}
    # A fresh gateway (and store) per tree and round, one running at a time: no idle neighbour's
    # background work and no store grown by earlier rounds in what a round measures.
    with tempfile.TemporaryDirectory(prefix="nats-s3-request-cpu-") as tmp:
        for round_number in range(args.rounds):
            for i, tree in enumerate(trees):
                workdir = Path(tmp) / f"{round_number}-{i}"
                workdir.mkdir()
                gw = Gateway(tree, workdir)
                try:
                    client = Client(gw.endpoint)
                    client.send("PUT", "/bench")
                    measure(gw, client, "bench", 300)  # warm-up
                    for op, figures in measure(gw, client, "bench", args.count).items():
                        results[tree].setdefault(op, []).append(figures)
                finally:
                    gw.stop()
    print(f"server CPU per request, µs (median of {args.rounds} rounds of {args.count} sequential requests)")
    print(f"{'tree':<40} {'op':<5} {'gateway':>9} {'+ nats':>9} {'vs first, paired':>17}")
    first = results[trees[0]]
    for tree, ops in results.items():
        for op, figures in ops.items():
            own = statistics.median(f[0] for f in figures)
            total = statistics.median(f[1] for f in figures)
            # Each round's figure over the first tree's in the same round: the host's drift between
            # rounds (steal time on a shared VM) cancels out.
            paired = statistics.median(f[1] / b[1] for f, b in zip(figures, first[op], strict=True))
            print(f"{tree:<40} {op:<5} {own:9.0f} {total:9.0f} {paired:16.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
