"""A replicated deployment: --natsReplicas on a three-node JetStream cluster, two gateways, read-your-writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import nats
import pytest

from .conftest import make_client
from .support import GatewayProcess, NatsCluster, write_credentials


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    nodes = NatsCluster(tmp_path_factory.mktemp("cluster")).start()
    yield nodes
    nodes.stop()


def _wait_jetstream(urls: list[str]) -> None:
    async def ready() -> bool:
        nc = await nats.connect(urls)
        try:
            await nc.jetstream().account_info()
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if asyncio.run(ready()):
            return
        time.sleep(0.5)
    raise TimeoutError("JetStream cluster did not elect a meta leader")


@pytest.fixture
def two_gateways(cluster: NatsCluster, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two gateways on the cluster, every stream they make with three replicas: their S3 clients."""
    _wait_jetstream(cluster.urls)
    creds = write_credentials(tmp_path / "creds.json")
    servers = ",".join(cluster.urls)
    one = GatewayProcess(creds, servers, extra=["--natsReplicas", "3"]).start()
    two = GatewayProcess(creds, servers, extra=["--natsReplicas", "3"]).start()
    try:
        yield make_client(one.endpoint), make_client(two.endpoint)
    finally:
        one.stop()
        two.stop()


def test_replicated_buckets_and_two_gateways(cluster: NatsCluster, two_gateways) -> None:  # type: ignore[no-untyped-def]
    a, b = two_gateways
    a.create_bucket(Bucket="replicated.bucket")

    async def replicas() -> int:
        nc = await nats.connect(cluster.urls)
        try:
            info = await nc.jetstream().stream_info("OBJ_replicated_bucket")
            return int(info.config.num_replicas or 0)
        finally:
            await nc.close()

    assert asyncio.run(replicas()) == 3
    for i in range(20):
        data = os.urandom(300_000 + i)
        a.put_object(Bucket="replicated.bucket", Key=f"k{i}", Body=data)
        # Written through one gateway, read at once through the other.
        assert b.get_object(Bucket="replicated.bucket", Key=f"k{i}")["Body"].read() == data
        b.delete_object(Bucket="replicated.bucket", Key=f"k{i}")
        with pytest.raises(a.exceptions.ClientError):
            a.head_object(Bucket="replicated.bucket", Key=f"k{i}")
    b.delete_bucket(Bucket="replicated.bucket")


def test_versions_and_delete_bucket_on_a_replicated_bucket(two_gateways) -> None:  # type: ignore[no-untyped-def]
    """Versions through two gateways on R3 streams, and DeleteBucket's fence in a cluster."""
    a, b = two_gateways
    a.create_bucket(Bucket="replicated.versions")
    a.put_bucket_versioning(Bucket="replicated.versions", VersioningConfiguration={"Status": "Enabled"})
    deadline = time.monotonic() + 5
    while b.get_bucket_versioning(Bucket="replicated.versions").get("Status") != "Enabled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    made = []
    for i in range(6):
        client = a if i % 2 else b
        made.append(client.put_object(Bucket="replicated.versions", Key="k", Body=f"v{i}".encode())["VersionId"])
    listed = [v["VersionId"] for v in b.list_object_versions(Bucket="replicated.versions")["Versions"]]
    assert listed == list(reversed(made))
    marker = a.delete_object(Bucket="replicated.versions", Key="k")["VersionId"]
    with pytest.raises(b.exceptions.ClientError):
        b.delete_bucket(Bucket="replicated.versions")  # versions left: BucketNotEmpty
    b.put_object(Bucket="replicated.versions", Key="after", Body=b"the fence was lifted")
    for vid in [*made, marker]:
        b.delete_object(Bucket="replicated.versions", Key="k", VersionId=vid)
    a.delete_object(Bucket="replicated.versions", Key="after", VersionId=a.list_object_versions(
        Bucket="replicated.versions")["Versions"][0]["VersionId"])  # fmt: skip
    b.delete_bucket(Bucket="replicated.versions")
    with pytest.raises(a.exceptions.ClientError):
        a.head_bucket(Bucket="replicated.versions")


def test_meta_reads_of_replicated_streams_ask_the_leader(cluster: NatsCluster, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Direct gets only where the stream has one replica: a follower behind its leader could miss a write."""
    from nats_s3.store import direct_reads

    _wait_jetstream(cluster.urls)
    monkeypatch.setattr(direct_reads, "REFRESH", 0.2)
    asyncio.run(_replicated_reads(cluster))


async def _replicated_reads(cluster: NatsCluster) -> None:
    from nats_s3.store.direct_reads import DirectReads, NotDirect

    nc = await nats.connect(cluster.urls)
    js = nc.jetstream()
    reads = DirectReads(nc)
    three, one = "DR_THREE", "DR_ONE"
    try:
        await js.add_stream(name=three, subjects=["dr3.>"], num_replicas=3, allow_direct=True)
        await js.add_stream(name=one, subjects=["dr1.>"], num_replicas=1, allow_direct=True)
        await js.publish("dr1.a", b"x")
        deadline = time.monotonic() + 10
        while one not in reads._single and time.monotonic() < deadline:
            for stream, subject in ((three, "dr3.a"), (one, "dr1.a")):
                with pytest.raises(NotDirect):
                    await reads.last_on(stream, subject)
            await asyncio.sleep(0.05)
        assert one in reads._single and three not in reads._single
        assert (await reads.last_on(one, "dr1.a")) is not None  # direct
        with pytest.raises(NotDirect):
            await reads.last_on(three, "dr3.a")
        # Scaled up to three replicas: read from the leader again once the stream is looked at again.
        config = (await js.stream_info(one)).config
        config.num_replicas = 3
        await js.update_stream(config)
        deadline = time.monotonic() + 10
        while one in reads._single and time.monotonic() < deadline:
            with contextlib.suppress(NotDirect):
                await reads.last_on(one, "dr1.a")
            await asyncio.sleep(0.05)
        assert one not in reads._single
    finally:
        await reads.close()
        for stream in (three, one):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await nc.close()
