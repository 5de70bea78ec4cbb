"""The callers of the multi-user gateway tests: an admin, two ordinary users, a scoped key and nobody
(anonymous), and a gateway whose credentials file names them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from .conftest import make_client
from .support import GatewayProcess

ACME = f"acme-{uuid.uuid4().hex[:10]}"
ADMIN = {"accessKey": "authz-admin", "secretKey": "admin-secret-1", "admin": True}
ALICE = {"accessKey": "authz-alice", "secretKey": "alice-secret-1", "userId": "alice-0001", "displayName": "Alice"}
BOB = {"accessKey": "authz-bob", "secretKey": "bob-secret-01", "userId": "bob-0002", "displayName": "Bob"}
# The scoped credential gateways of this kind ship: get, put and list under acme/datasets/, nothing else.
SCOPED = {
    "accessKey": "authz-scoped",
    "secretKey": "scoped-secret-1",
    "policy": {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": f"arn:aws:s3:::{ACME}/datasets/*"},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{ACME}",
             "Condition": {"StringLike": {"s3:prefix": "datasets/*"}}},
        ],
    },
}  # fmt: skip

Client = Any


def client(gw: GatewayProcess, cred: dict[str, Any]) -> Client:
    return make_client(gw.endpoint, access=cred["accessKey"], secret=cred["secretKey"])


def anonymous(gw: GatewayProcess) -> Client:
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version=UNSIGNED)
    return boto3.client("s3", endpoint_url=gw.endpoint, region_name="us-east-1", config=config)


@pytest.fixture(scope="module")
def users_gateway(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    path = tmp_path_factory.mktemp("authz") / "credentials.json"
    path.write_text(json.dumps({"credentials": [ADMIN, ALICE, BOB, SCOPED]}))
    gw = GatewayProcess(path, nats_url).start()
    yield gw
    gw.stop()
