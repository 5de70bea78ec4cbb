"""Access keys as principals: the canonical user id and display name S3 reports as Owner, from the
credentials file or derived stably; and the credentials file reloaded on SIGHUP."""

from __future__ import annotations

import hashlib
import json
import signal
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from nats_s3.auth.credentials import CredentialsError, read_credentials_file

from .conftest import empty_bucket, make_client
from .support import GatewayProcess, eventually

NAMED = {"accessKey": "named-key", "secretKey": "named-secret-1", "userId": "u-0001-storage",
         "displayName": "Storage Team"}  # fmt: skip
PLAIN = {"accessKey": "plain-key", "secretKey": "plain-secret-1"}


def write(path: Path, *credentials: dict[str, str]) -> Path:
    path.write_text(json.dumps({"credentials": list(credentials)}))
    return path


def test_owner_is_the_principal_everywhere_s3_reports_one(nats_url: str, tmp_path: Path) -> None:
    creds = write(tmp_path / "c.json", NAMED, PLAIN)
    gw = GatewayProcess(creds, nats_url).start()
    named = make_client(gw.endpoint, access=NAMED["accessKey"], secret=NAMED["secretKey"])
    plain = make_client(gw.endpoint, access=PLAIN["accessKey"], secret=PLAIN["secretKey"])
    bucket = f"owners-{uuid.uuid4().hex[:8]}"
    try:
        named.create_bucket(Bucket=bucket)
        expected = {"ID": NAMED["userId"], "DisplayName": NAMED["displayName"]}
        assert named.list_buckets()["Owner"] == expected
        assert named.get_bucket_acl(Bucket=bucket)["Owner"] == expected
        named.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert named.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]["Owner"] == expected
        assert named.list_objects(Bucket=bucket)["Contents"][0]["Owner"] == expected
        assert named.get_object_acl(Bucket=bucket, Key="k")["Owner"] == expected
        assert named.list_object_versions(Bucket=bucket)["Versions"][0]["Owner"] == expected
        upload = named.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
        parts = named.list_parts(Bucket=bucket, Key="mp", UploadId=upload)
        assert parts["Initiator"] == expected and parts["Owner"] == expected
        assert named.list_multipart_uploads(Bucket=bucket)["Uploads"][0]["Owner"] == expected
        # The upload's initiator stays who started it, whoever lists it.
        assert plain.list_parts(Bucket=bucket, Key="mp", UploadId=upload)["Initiator"] == expected
        named.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)
        # A bucket's owner is who created it, whoever asks.
        assert plain.get_bucket_acl(Bucket=bucket)["Owner"] == expected
        # A key without the new fields: derived, the same as before they existed.
        derived = {"ID": hashlib.sha256(b"plain-key").hexdigest(), "DisplayName": "plain-key"}
        assert plain.list_buckets()["Owner"] == derived
    finally:
        empty_bucket(named, bucket)
        named.delete_bucket(Bucket=bucket)
        gw.stop()


def test_credentials_are_reloaded_on_sighup(nats_url: str, tmp_path: Path) -> None:
    creds = write(tmp_path / "c.json", NAMED)
    gw = GatewayProcess(creds, nats_url).start()
    named = make_client(gw.endpoint, access=NAMED["accessKey"], secret=NAMED["secretKey"])
    plain = make_client(gw.endpoint, access=PLAIN["accessKey"], secret=PLAIN["secretKey"])
    try:
        with pytest.raises(ClientError) as err:
            plain.list_buckets()
        assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
        renamed = {**NAMED, "displayName": "Renamed Team"}
        write(creds, renamed, PLAIN)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        owner = eventually(lambda: named.list_buckets()["Owner"]["DisplayName"], lambda n: n == "Renamed Team")
        assert owner == "Renamed Team"
        assert plain.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
        # A file that does not load keeps what is in use, and the log says why.
        creds.write_text("{not json")
        gw.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert plain.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert "credentials not reloaded" in gw.log_text() and "not JSON" in gw.log_text()
        # Removing a key takes effect at the next request.
        write(creds, renamed)
        gw.proc.send_signal(signal.SIGHUP)

        def refused() -> str:
            try:
                plain.list_buckets()
            except ClientError as exc:
                return str(exc.response["Error"]["Code"])
            return "allowed"

        assert eventually(refused, lambda code: code == "InvalidAccessKeyId") == "InvalidAccessKeyId"
        assert gw.proc.poll() is None
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [({"userId": ""}, "userId"), ({"displayName": "x" * 129}, "displayName"), ({"userId": 5}, "userId")],
)
def test_principal_fields_are_validated(tmp_path: Path, extra: dict[str, object], fragment: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"credentials": [{**PLAIN, **extra}]}))
    with pytest.raises(CredentialsError) as err:
        read_credentials_file(path)
    assert fragment in str(err.value)
