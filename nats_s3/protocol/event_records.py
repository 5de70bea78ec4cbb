"""S3 event messages as S3 sends them to its notification targets: a JSON document of `Records`
(event structure version 2.1), and the `s3:TestEvent` sent when a configuration is set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote_plus

from .xml import iso8601


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """What happened to an object, as one record reports it."""

    name: str  # without the "s3:" of the configuration's event types: "ObjectCreated:Put"
    bucket: str
    key: str
    sequence: int  # the change's sequence in the bucket's stream: orders a key's events
    time: datetime
    region: str
    bucket_owner: str
    principal: str  # who made the request ("" anonymous)
    source_ip: str
    request_id: str
    size: int | None = None  # ObjectCreated only
    etag: str | None = None
    version_id: str | None = None  # where the bucket keeps versions (or a delete named one)

    @property
    def sequencer(self) -> str:
        # S3's sequencer is a hexadecimal string that sorts a key's events when compared after padding
        # to equal length; a fixed width sorts them as strings too.
        return f"{self.sequence:016X}"


def event_record(event: ObjectEvent, configuration_id: str) -> dict[str, object]:
    obj: dict[str, object] = {"key": quote_plus(event.key, safe="/~")}  # S3 sends keys URL-encoded
    if event.size is not None:
        obj["size"] = event.size
    if event.etag is not None:
        obj["eTag"] = event.etag
    if event.version_id is not None:
        obj["versionId"] = event.version_id
    obj["sequencer"] = event.sequencer
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": event.region,
        "eventTime": iso8601(event.time),
        "eventName": event.name,
        "userIdentity": {"principalId": event.principal or "anonymous"},
        "requestParameters": {"sourceIPAddress": event.source_ip},
        "responseElements": {"x-amz-request-id": event.request_id, "x-amz-id-2": event.request_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": configuration_id,
            "bucket": {
                "name": event.bucket,
                "ownerIdentity": {"principalId": event.bucket_owner},
                "arn": f"arn:aws:s3:::{event.bucket}",
            },
            "object": obj,
        },
    }


def event_message(event: ObjectEvent, configuration_id: str) -> bytes:
    return json.dumps({"Records": [event_record(event, configuration_id)]}, separators=(",", ":")).encode()


def configuration_test_message(bucket: str, time: datetime, request_id: str) -> bytes:
    return json.dumps(
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": iso8601(time), "Bucket": bucket,
         "RequestId": request_id, "HostId": request_id},
        separators=(",", ":"),
    ).encode()  # fmt: skip
