"""Shared fixtures: one real NATS and one gateway process for the session, boto3 clients, fresh buckets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from .support import ACCESS_KEY, SECRET_KEY, GatewayProcess, nats_server, write_credentials


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    with nats_server() as (url, how):
        print(f"\nNATS for tests: {how} at {url}")
        yield url


@pytest.fixture(scope="session")
def credentials_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_credentials(tmp_path_factory.mktemp("creds") / "credentials.json")


@pytest.fixture(scope="session")
def gateway(nats_url: str, credentials_file: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(credentials_file, nats_url).start()
    yield gw
    gw.stop()


def make_client(  # type: ignore[no-untyped-def]
    endpoint: str, secret: str = SECRET_KEY, access: str = ACCESS_KEY, region: str = "us-east-1", **config: object
):
    cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version="s3v4", **config)  # type: ignore[arg-type]
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name=region,
        config=cfg,
    )


@pytest.fixture(scope="session")
def s3(gateway: GatewayProcess):  # type: ignore[no-untyped-def]
    return make_client(gateway.endpoint)


@pytest.fixture
def bucket(s3) -> Iterator[str]:  # type: ignore[no-untyped-def]
    name = f"t-{uuid.uuid4().hex[:12]}.b"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)
    s3.delete_bucket(Bucket=name)


def empty_bucket(s3, name: str) -> None:  # type: ignore[no-untyped-def]
    """Delete every version and delete marker (a bucket is empty only without either)."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])
