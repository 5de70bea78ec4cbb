"""Placement by region: CreateBucket's LocationConstraint looks the region up in --placement, and the
bucket's stream gets that region's cluster, server tags and replicas (checked in JetStream stream info)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from botocore.exceptions import ClientError

from nats_s3.store import naming

from .conftest import make_client
from .support import GatewayProcess, NatsCluster, write_credentials
from .test_admin import admin

PLACEMENT = {
    "eu-central-1": {"tags": ["region:eu"], "replicas": 2},
    "us-west-2": {"cluster": "nats-s3-test", "tags": ["region:us"]},
    "eu-west-3": {"tags": ["region:eu"], "replicas": 3},  # more replicas than eu has servers
}


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, NatsCluster, Path]]:
    base = tmp_path_factory.mktemp("placement")
    cluster = NatsCluster(base, 4, tags=[["region:eu"], ["region:eu"], ["region:us"], ["region:us"]]).start()
    placement = base / "placement.json"
    placement.write_text(json.dumps(PLACEMENT))
    creds = write_credentials(base / "creds.json")
    gw = GatewayProcess(creds, ",".join(cluster.urls), extra=["--placement", str(placement)])
    try:
        gw.start(90)
        yield gw, cluster, placement
    finally:
        gw.stop()
        cluster.stop()


def servers_of(nats_url: str, bucket: str) -> tuple[int, set[str]]:
    """(replicas configured, names of the servers holding the stream) from JetStream stream info."""

    async def probe() -> tuple[int, set[str]]:
        nc = await nats.connect(nats_url)
        try:
            stream = naming.stream_name(naming.nats_bucket(bucket))
            for _ in range(50):  # the replicas join within moments of the create
                info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=5)).data)
                cluster = info.get("cluster") or {}
                names = {cluster.get("leader"), *(r["name"] for r in cluster.get("replicas") or [])} - {None}
                if len(names) >= info["config"]["num_replicas"]:
                    return info["config"]["num_replicas"], names
                await asyncio.sleep(0.2)
            return info["config"]["num_replicas"], names
        finally:
            await nc.close()

    return asyncio.run(probe())


def create_in(s3, bucket: str, region: str) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def test_regions_place_streams_on_their_tagged_servers(tagged) -> None:  # type: ignore[no-untyped-def]
    gw, cluster, _ = tagged
    s3 = make_client(gw.endpoint)
    create_in(s3, "eu-data", "eu-central-1")
    create_in(s3, "us-data", "us-west-2")
    s3.create_bucket(Bucket="anywhere")
    assert servers_of(cluster.urls[0], "eu-data") == (2, {"n0", "n1"})
    replicas, us = servers_of(cluster.urls[0], "us-data")
    assert replicas == 1 and us <= {"n2", "n3"}  # no replicas named: --natsReplicas (1)
    assert servers_of(cluster.urls[0], "anywhere")[0] == 1

    assert s3.get_bucket_location(Bucket="eu-data")["LocationConstraint"] == "eu-central-1"
    assert s3.get_bucket_location(Bucket="anywhere")["LocationConstraint"] in (None, "")
    assert s3.head_bucket(Bucket="eu-data")["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-central-1"
    listed = {b["Name"]: b["BucketRegion"] for b in s3.list_buckets()["Buckets"]}
    assert listed == {"eu-data": "eu-central-1", "us-data": "us-west-2", "anywhere": "us-east-1"}
    # A client configured for the bucket's region signs for it, and is served.
    eu = make_client(gw.endpoint, region="eu-central-1")
    eu.put_object(Bucket="eu-data", Key="k", Body=b"resident")
    assert eu.get_object(Bucket="eu-data", Key="k")["Body"].read() == b"resident"

    info = json.loads(admin("--natsServers", cluster.urls[0], "--json", "bucket", "info", "eu-data").stdout)
    assert info["region"] == "eu-central-1" and info["placement"] == {"tags": ["region:eu"]}
    assert set(info["servers"]) == {"n0", "n1"}


def test_unknown_and_unplaceable_regions_are_refused(tagged) -> None:  # type: ignore[no-untyped-def]
    gw, cluster, placement = tagged
    s3 = make_client(gw.endpoint)
    with pytest.raises(ClientError) as err:
        create_in(s3, "nowhere", "ap-south-1")
    assert err.value.response["Error"]["Code"] == "InvalidLocationConstraint"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "eu-central-1" in err.value.response["Error"]["Message"]  # the regions there are
    with pytest.raises(ClientError) as err:
        create_in(s3, "too-many", "eu-west-3")
    assert err.value.response["Error"]["Code"] == "InvalidLocationConstraint"
    assert "NATS cannot place" in err.value.response["Error"]["Message"]
    assert "nowhere" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}

    # The admin CLI places buckets from the same map.
    made = admin("--natsServers", cluster.urls[0], "--placement", str(placement), "bucket", "create", "eu-admin",
                 "--region", "eu-central-1")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert servers_of(cluster.urls[0], "eu-admin") == (2, {"n0", "n1"})
    unknown = admin("--natsServers", cluster.urls[0], "--placement", str(placement), "bucket", "create", "x-admin",
                    "--region", "mars-1")  # fmt: skip
    assert unknown.returncode == 5 and "not a region" in unknown.stderr
    gone = admin("--natsServers", cluster.urls[0], "bucket", "delete", "eu-admin")
    assert gone.returncode == 0, gone.stderr


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[1]", "JSON object"),
        ('{"EU": {}}', "not a region name"),
        ('{"eu-1": {"replicas": 9}}', "replicas"),
        ('{"eu-1": {"zone": "a"}}', "zone"),
        ("{", "not JSON"),
    ],
)
def test_a_bad_placement_map_stops_the_start(tmp_path: Path, text: str, why: str) -> None:
    import subprocess
    import sys

    from .support import REPO

    placement = tmp_path / "placement.json"
    placement.write_text(text)
    creds = write_credentials(tmp_path / "creds.json")
    got = subprocess.run(
        [sys.executable, "-m", "nats_s3", "--s3.credentials", str(creds), "--placement", str(placement)],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )  # fmt: skip
    assert got.returncode == 2 and why in got.stderr, got.stderr
