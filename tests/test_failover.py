"""Failover on a three-node JetStream cluster: the gateway's server crashes (kill -9), or a stream loses
its leader, while clients write. Requests in flight on a lost connection answer 503 at once, the gateway
is on another server within 2 s, and writes that meet a leader election wait it out instead of failing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import nats
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from nats.aio.msg import Msg

from nats_s3.store.errors import StoreUnavailable
from nats_s3.store.publisher import Publisher
from nats_s3.store.replies import replies_for

from .support import ACCESS_KEY, SECRET_KEY, GatewayProcess, NatsCluster, write_credentials
from .test_cluster import _wait_jetstream

BUCKET = "failover"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    nodes = NatsCluster(tmp_path / "cluster").start()
    try:
        _wait_jetstream(nodes.urls)
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def gateway(cluster: NatsCluster, tmp_path: Path) -> Iterator[GatewayProcess]:
    creds = write_credentials(tmp_path / "creds.json")
    gw = GatewayProcess(creds, ",".join(cluster.urls), extra=["--natsReplicas", "3"]).start(60)
    try:
        yield gw
    finally:
        gw.stop()


def _client(gw: GatewayProcess):  # type: ignore[no-untyped-def]
    # One attempt per call: what the gateway answers is what is measured, not the SDK's retries.
    config = Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}, read_timeout=60)
    return boto3.client(
        "s3",
        endpoint_url=gw.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=config,
    )


def _warm(s3) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=BUCKET)
    bodies = {f"warm/{i}": uuid.uuid4().bytes * 64 for i in range(10)}
    for key, body in bodies.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return bodies


class _Writers:
    """Threads writing small objects until stopped; each request's (start, end, outcome, key, body)."""

    def __init__(self, s3, count: int = 4) -> None:  # type: ignore[no-untyped-def]
        self.s3 = s3
        self.results: list[tuple[float, float, str, str, bytes]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(count)]

    def _run(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            key, body = f"w{n}/{i}", uuid.uuid4().bytes * 256
            start = time.monotonic()
            try:
                self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
                outcome = "ok"
            except ClientError as exc:
                outcome = exc.response["Error"]["Code"]
            self.results.append((start, time.monotonic(), outcome, key, body))
            i += 1

    def __enter__(self) -> _Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)


def test_losing_the_connected_server(cluster: NatsCluster, gateway: GatewayProcess) -> None:
    s3 = _client(gateway)
    warm = _warm(s3)
    with _Writers(s3) as writers:
        time.sleep(2)
        victim = cluster.serving("nats-s3")
        assert victim is not None
        killed_at = time.monotonic()
        cluster.kill(victim)
        moved = None
        while time.monotonic() - killed_at < 10:
            now = cluster.serving("nats-s3")
            if now is not None and now != victim:
                moved = time.monotonic() - killed_at
                break
            time.sleep(0.05)
        time.sleep(max(0.0, killed_at + 15 - time.monotonic()))
    assert moved is not None and moved < 2.0, f"gateway on another server after {moved} s"
    in_flight = [r for r in writers.results if r[0] < killed_at < r[1]]
    assert in_flight, "no request was in flight at the kill"
    for _start, end, outcome, *_ in in_flight:
        # Its answer may be lost with the connection: 503 at once (or done), never a wait for a timeout.
        assert end - killed_at < 3.0 and outcome in ("ok", "ServiceUnavailable"), (end - killed_at, outcome)
    after = sorted(r for r in writers.results if r[0] >= killed_at)
    first_ok = next((r[1] - killed_at for r in after if r[2] == "ok"), None)
    # At worst the streams' leaders were on the lost server: about five seconds of election.
    assert first_ok is not None and first_ok < 12.0, first_ok
    assert {r[2] for r in after} <= {"ok", "ServiceUnavailable"}, {r[2] for r in after}
    assert sum(r[2] == "ok" for r in after) > 20
    for key, body in warm.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    for _, _, outcome, key, body in writers.results[-20:]:
        if outcome == "ok":
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body


async def _leader_of(urls: list[str], stream: str, avoid: str = "") -> str:
    """The stream's leader, after asking it to step down until it is not server `avoid`."""
    nc = await nats.connect(urls)
    try:
        js = nc.jetstream()
        for _ in range(20):
            leader = (await js.stream_info(stream)).cluster.leader  # type: ignore[union-attr]
            if leader and leader != avoid:
                return leader
            with contextlib.suppress(Exception):
                await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5)
            await asyncio.sleep(1)
        raise AssertionError(f"{stream} keeps its leader on {avoid}")
    finally:
        await nc.close()


def _stream_leader(urls: list[str], stream: str, avoid: str) -> str:
    return asyncio.run(_leader_of(urls, stream, avoid))


def _leaders_off(urls: list[str], server: str) -> list[str]:
    """Move the leader of every stream off `server`; the streams' names."""

    async def run() -> list[str]:
        nc = await nats.connect(urls)
        try:
            names = await nc.jetstream().streams_info()
        finally:
            await nc.close()
        for info in names:
            await _leader_of(urls, info.config.name or "", avoid=server)
        return [info.config.name or "" for info in names]

    return asyncio.run(run())


def test_losing_a_follower_costs_no_request(cluster: NatsCluster, gateway: GatewayProcess) -> None:
    """A server the gateway is not connected to, and which leads none of its streams, crashes: the
    streams keep their quorum and their leaders, and no request notices."""
    s3 = _client(gateway)
    warm = _warm(s3)
    serving = cluster.serving("nats-s3")
    assert serving is not None
    victim = next(i for i in range(3) if i != serving)
    streams = _leaders_off(cluster.urls, f"n{victim}")
    assert "OBJ_" + BUCKET in streams and "KV_nats_s3" in streams, streams
    with _Writers(s3) as writers:
        time.sleep(1)
        killed_at = time.monotonic()
        cluster.kill(victim)
        time.sleep(8)  # past an election's timeout, had anything waited for one
        for key, body in warm.items():
            assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body
    after = [r for r in writers.results if r[1] >= killed_at]
    assert len(after) > 20
    assert {r[2] for r in after} == {"ok"}, {r[2] for r in after}
    with urllib.request.urlopen(f"{gateway.endpoint}/readyz", timeout=5) as resp:
        assert resp.status == 200


def test_a_write_waits_out_a_leader_election(cluster: NatsCluster, gateway: GatewayProcess) -> None:
    """The bucket stream's leader crashes, on a server the gateway is not connected to: until another
    is elected (seconds), publishes find no responders and leader reads go unanswered. A PUT and a GET
    meanwhile are neither a false NoSuchBucket nor a 503: they complete once a leader is elected."""
    s3 = _client(gateway)
    warm = _warm(s3)
    serving = cluster.serving("nats-s3")
    assert serving is not None
    leader = _stream_leader(cluster.urls, "OBJ_" + BUCKET, avoid=f"n{serving}")
    cluster.kill(int(leader[1:]))
    outcomes: dict[str, object] = {}
    body = uuid.uuid4().bytes * 1000

    def put() -> None:
        try:
            s3.put_object(Bucket=BUCKET, Key="during-election", Body=body)
            outcomes["put"] = "ok"
        except ClientError as exc:
            outcomes["put"] = exc.response["Error"]["Code"]

    def get() -> None:
        try:
            outcomes["get"] = s3.get_object(Bucket=BUCKET, Key="warm/0")["Body"].read() == warm["warm/0"]
        except ClientError as exc:
            outcomes["get"] = exc.response["Error"]["Code"]

    started = time.monotonic()
    threads = [threading.Thread(target=put), threading.Thread(target=get)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == {"put": "ok", "get": True}, (outcomes, time.monotonic() - started)
    assert s3.get_object(Bucket=BUCKET, Key="during-election")["Body"].read() == body


def test_a_lost_connection_fails_what_waits_on_it(nats_url: str) -> None:
    """Forced: answers awaited on the reply inbox (a request, a stream of answers) fail at once when the
    connection is declared lost, and the inbox serves new requests after."""

    async def run() -> None:
        nc = await nats.connect(nats_url)
        try:
            silent = await nc.subscribe("failover.silent")  # receives, never answers

            async def echo(msg: Msg) -> None:
                await msg.respond(msg.data)

            answering = await nc.subscribe("failover.echo", cb=echo)
            replies = replies_for(nc)
            request = asyncio.ensure_future(replies.request("failover.silent", b"x", 30.0))
            reply, queue = await replies.open_stream()
            await asyncio.sleep(0.2)
            assert not request.done()
            began = time.monotonic()
            replies.fail_all("the connection to NATS was lost")
            with pytest.raises(StoreUnavailable):
                await request
            assert time.monotonic() - began < 0.5
            assert isinstance(queue.get_nowait(), StoreUnavailable)
            replies.close_stream(reply)
            assert (await replies.request("failover.echo", b"again", 5.0)).data == b"again"
            await silent.unsubscribe()
            await answering.unsubscribe()
        finally:
            await nc.close()

    asyncio.run(run())


def _wait_stopped(pid: int, timeout: float = 5.0) -> None:
    """Until every thread of the process is stopped. kill() returns before the stop has reached every
    thread: in about 1 of 20 runs, a "stopped" leader still stored and acknowledged the publish sent
    right after it, and then answered a stream info as leader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):
                states.append(stat.read_text().rpartition(")")[2].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")


def test_an_ack_lost_with_a_stream_leader_fails_at_the_next_election(cluster: NatsCluster) -> None:
    """Forced: a publish reaches a stream leader that then stops answering (SIGSTOP) before its ack.
    When the others elect a new leader, the publish fails with StoreUnavailable (a 503), seconds after
    the election, instead of after its 30 s ack timeout."""

    async def run() -> None:
        stream, subject = "KV_failover_acks", "$KV.failover_acks.k"
        setup = await nats.connect(cluster.urls)
        await setup.jetstream().add_stream(name=stream, subjects=["$KV.failover_acks.>"], num_replicas=3)
        await setup.close()
        leader = await _leader_of(cluster.urls, stream)
        others = [i for i in range(3) if f"n{i}" != leader]
        nc = await nats.connect(cluster.urls[others[0]], dont_randomize=True, max_reconnect_attempts=0)
        publisher = Publisher(nc)
        try:
            await publisher.watch_leaders()
            await (await publisher.publish(subject, b"before")).wait()
            victim = cluster.procs[int(leader[1:])]
            os.kill(victim.pid, signal.SIGSTOP)
            try:
                _wait_stopped(victim.pid)
                began = time.monotonic()
                pending = await publisher.publish(subject, b"lost")
                with pytest.raises(StoreUnavailable, match="changed leader"):
                    await pending.wait()
                assert time.monotonic() - began < 20, time.monotonic() - began
                # The new leader takes writes.
                await (await publisher.publish(subject, b"after")).wait()
            finally:
                os.kill(victim.pid, signal.SIGCONT)
        finally:
            await publisher.close()
            await nc.close()

    asyncio.run(run())
