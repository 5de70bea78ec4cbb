"""S3 event notifications on NATS subjects: Put/GetBucketNotificationConfiguration with S3's XML and
validation, S3 event JSON published after each change, kept once by a JetStream stream capturing the
subject (message ids), and a 1,000-object burst seen exactly once, in order per key, by a plain NATS
subscriber and by a stream."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nats
import pytest
from botocore.exceptions import ClientError

from nats_s3.store.event_publisher import EventPublisher
from nats_s3.store.publisher import Publisher

from .support import eventually
from .test_admin import admin


def subject_for_test() -> str:
    return f"events.{uuid.uuid4().hex[:12]}"


def topic(subject: str, events: list[str], rule_id: str | None = None, **filters: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"TopicArn": f"arn:nats:::{subject}", "Events": events}
    if rule_id is not None:
        rule["Id"] = rule_id
    if filters:
        rule["Filter"] = {"Key": {"FilterRules": [{"Name": n, "Value": v} for n, v in filters.items()]}}
    return rule


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


class EventStream:
    """A JetStream stream capturing a subject, as a service keeping a bucket's events would make it."""

    def __init__(self, nats_url: str, subject: str) -> None:
        self.nats_url = nats_url
        self.subject = subject
        self.name = "EV_" + subject.replace(".", "_")

    async def _with_js(self, work):  # type: ignore[no-untyped-def]
        nc = await nats.connect(self.nats_url)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    def create(self) -> None:
        async def work(js):  # type: ignore[no-untyped-def]
            await js.add_stream(name=self.name, subjects=[self.subject], duplicate_window=120)

        run(self._with_js(work))

    def delete(self) -> None:
        async def work(js):  # type: ignore[no-untyped-def]
            await js.delete_stream(self.name)

        run(self._with_js(work))

    def messages(self) -> list[dict[str, Any]]:
        async def work(js):  # type: ignore[no-untyped-def]
            info = await js.stream_info(self.name)
            out = []
            if info.state.messages:
                sub = await js.pull_subscribe(self.subject, stream=self.name)
                while len(out) < info.state.messages:
                    for msg in await sub.fetch(500, timeout=5):
                        out.append(json.loads(msg.data))
                        await msg.ack()
                await sub.unsubscribe()
            return out

        return run(self._with_js(work))  # type: ignore[no-any-return]


@pytest.fixture
def events(nats_url: str) -> Iterator[EventStream]:
    stream = EventStream(nats_url, subject_for_test())
    stream.create()
    yield stream
    stream.delete()


class Subscriber:
    """A plain NATS subscriber on its own thread and event loop, collecting every message it gets."""

    def __init__(self, nats_url: str, subject: str) -> None:
        self.received: list[dict[str, Any]] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(nats_url, subject)), daemon=True)

    async def _run(self, nats_url: str, subject: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        nc = await nats.connect(nats_url)

        async def got(msg) -> None:  # type: ignore[no-untyped-def]
            self.received.append(json.loads(msg.data))

        await nc.subscribe(subject, cb=got)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.drain()

    def __enter__(self) -> Subscriber:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for m in messages for r in m.get("Records", [])]


def code_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as err:
        call()
    return str(err.value.response["Error"]["Code"])


def test_configuration_round_trip_test_event_and_validation(s3, bucket: str, nats_url: str) -> None:  # type: ignore[no-untyped-def]
    got = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not got.get("TopicConfigurations") and not got.get("QueueConfigurations")
    subject = subject_for_test()
    queue_subject = subject_for_test()
    config = {
        "TopicConfigurations": [
            topic(subject, ["s3:ObjectCreated:*"], "created-docs", prefix="docs/", suffix=".txt"),
            topic(subject, ["s3:ObjectRemoved:Delete", "s3:ObjectTagging:*"], "removed"),
        ],
        "QueueConfigurations": [
            {"Id": "q", "QueueArn": f"arn:nats:::{queue_subject}", "Events": ["s3:ObjectRestore:*"]},
        ],
    }
    with Subscriber(nats_url, subject) as sub:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        eventually(lambda: sub.received, lambda got: len(got) >= 1, timeout=10)
    assert sub.received == [
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": sub.received[0]["Time"],
            "Bucket": bucket,
            "RequestId": sub.received[0]["RequestId"],
            "HostId": sub.received[0]["RequestId"],
        }
    ]  # fmt: skip  (one test event per new destination, not per rule)
    got = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert got["TopicConfigurations"] == [
        {
            "Id": "created-docs",
            "TopicArn": f"arn:nats:::{subject}",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {"FilterRules": [{"Name": "Prefix", "Value": "docs/"}, {"Name": "Suffix", "Value": ".txt"}]}
            },
        },
        {
            "Id": "removed",
            "TopicArn": f"arn:nats:::{subject}",
            "Events": ["s3:ObjectRemoved:Delete", "s3:ObjectTagging:*"],
        },
    ]
    assert got["QueueConfigurations"] == [
        {"Id": "q", "QueueArn": f"arn:nats:::{queue_subject}", "Events": ["s3:ObjectRestore:*"]}
    ]

    def put(configuration: dict[str, Any]) -> None:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=configuration)

    refusals = {
        "unknown event": {"TopicConfigurations": [topic(subject, ["s3:ObjectCreated:Rename"])]},
        "not a nats arn": {
            "TopicConfigurations": [{"TopicArn": "arn:aws:sns:us-east-1:1:t", "Events": ["s3:ObjectCreated:*"]}]
        },
        "wildcard subject": {"TopicConfigurations": [topic("events.*", ["s3:ObjectCreated:*"])]},
        "system subject": {"TopicConfigurations": [topic("$JS.API.STREAM.DELETE.X", ["s3:ObjectCreated:*"])]},
        "inbox subject": {"TopicConfigurations": [topic("_INBOX.x", ["s3:ObjectCreated:*"])]},
        "empty token": {"TopicConfigurations": [topic("events..x", ["s3:ObjectCreated:*"])]},
        "bad filter name": {"TopicConfigurations": [topic(subject, ["s3:ObjectCreated:*"], middle="x")]},
        "same id twice": {
            "TopicConfigurations": [
                topic(subject, ["s3:ObjectCreated:Put"], "a"),
                topic(subject, ["s3:ObjectRemoved:*"], "a"),
            ]
        },
        "overlap": {
            "TopicConfigurations": [
                topic(subject, ["s3:ObjectCreated:*"], "a", prefix="logs/"),
                topic(queue_subject, ["s3:ObjectCreated:Put"], "b", prefix="logs/2026/"),
            ]
        },
        "lambda": {
            "LambdaFunctionConfigurations": [
                {"LambdaFunctionArn": "arn:aws:lambda:x", "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    }
    for why, configuration in refusals.items():
        assert code_of(lambda c=configuration: put(c)) == "InvalidArgument", why
    # Disjoint filters on one event type do not overlap.
    put({"TopicConfigurations": [topic(subject, ["s3:ObjectCreated:*"], "a", prefix="logs/"),
                                 topic(subject, ["s3:ObjectCreated:Put"], "b", prefix="img/")]})  # fmt: skip
    assert len(s3.get_bucket_notification_configuration(Bucket=bucket)["TopicConfigurations"]) == 2
    # An Id-less rule is given one; an empty configuration turns notifications off.
    put({"TopicConfigurations": [topic(subject, ["s3:ObjectCreated:*"])]})
    assert s3.get_bucket_notification_configuration(Bucket=bucket)["TopicConfigurations"][0]["Id"]
    put({})
    got = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not got.get("TopicConfigurations") and not got.get("QueueConfigurations")
    assert code_of(lambda: s3.get_bucket_notification_configuration(Bucket=f"missing-{uuid.uuid4().hex}")) == (
        "NoSuchBucket"
    )


def test_each_kind_of_change_publishes_its_s3_event(s3, bucket: str, events: EventStream) -> None:  # type: ignore[no-untyped-def]
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    everything = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectTagging:*", "s3:ObjectAcl:Put"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={"TopicConfigurations": [topic(events.subject, everything, "docs", prefix="docs/")]},
    )
    key = "docs/a b+c.txt"
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"hello")
    s3.put_object(Bucket=bucket, Key="other/x", Body=b"filtered out")
    copy = s3.copy_object(Bucket=bucket, Key="docs/copy", CopySource={"Bucket": bucket, "Key": key})
    upload = s3.create_multipart_upload(Bucket=bucket, Key="docs/mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="docs/mp", UploadId=upload, PartNumber=1, Body=b"m" * 1000)
    done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    mp = s3.complete_multipart_upload(Bucket=bucket, Key="docs/mp", UploadId=upload, MultipartUpload=done)
    s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    s3.delete_object_tagging(Bucket=bucket, Key=key)
    s3.put_object_acl(Bucket=bucket, Key=key, ACL="public-read")
    marker = s3.delete_object(Bucket=bucket, Key=key)
    s3.delete_object(Bucket=bucket, Key="docs/copy", VersionId=copy["VersionId"])
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "docs/mp"}, {"Key": "other/x"}]})
    # A retried Complete (its first answer lost) publishes the same event again: the stream keeps one.
    again = s3.complete_multipart_upload(Bucket=bucket, Key="docs/mp", UploadId=upload, MultipartUpload=done)
    assert again["ETag"] == mp["ETag"]

    got = records(events.messages())
    assert [(r["eventName"], r["s3"]["object"]["key"]) for r in got] == [
        ("ObjectCreated:Put", "docs/a+b%2Bc.txt"),
        ("ObjectCreated:Copy", "docs/copy"),
        ("ObjectCreated:CompleteMultipartUpload", "docs/mp"),
        ("ObjectTagging:Put", "docs/a+b%2Bc.txt"),
        ("ObjectTagging:Delete", "docs/a+b%2Bc.txt"),
        ("ObjectAcl:Put", "docs/a+b%2Bc.txt"),
        ("ObjectRemoved:DeleteMarkerCreated", "docs/a+b%2Bc.txt"),
        ("ObjectRemoved:Delete", "docs/copy"),
        ("ObjectRemoved:DeleteMarkerCreated", "docs/mp"),
    ]
    info = admin("--natsServers", events.nats_url, "--json", "bucket", "info", bucket)
    assert json.loads(info.stdout)["notifications"] == [
        {"id": "docs", "subject": events.subject, "events": everything, "prefix": "docs/", "suffix": ""}
    ]
    human = admin("--natsServers", events.nats_url, "bucket", "info", bucket).stdout
    assert f"docs: {', '.join(everything)} on docs/* -> {events.subject}" in human
    first = got[0]
    assert first["eventVersion"] == "2.1" and first["eventSource"] == "aws:s3"
    assert first["awsRegion"] == "us-east-1" and first["eventTime"].endswith("Z")
    assert first["userIdentity"]["principalId"] and first["requestParameters"]["sourceIPAddress"] == "127.0.0.1"
    assert first["responseElements"]["x-amz-request-id"] == put["ResponseMetadata"]["RequestId"]
    assert first["s3"]["s3SchemaVersion"] == "1.0" and first["s3"]["configurationId"] == "docs"
    assert first["s3"]["bucket"]["name"] == bucket and first["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    assert first["s3"]["object"]["size"] == 5 and first["s3"]["object"]["eTag"] == put["ETag"].strip('"')
    assert first["s3"]["object"]["versionId"] == put["VersionId"]
    assert got[2]["s3"]["object"]["size"] == 1000 and got[2]["s3"]["object"]["eTag"] == mp["ETag"].strip('"')
    assert got[6]["s3"]["object"]["versionId"] == marker["VersionId"] and "size" not in got[6]["s3"]["object"]
    assert got[7]["s3"]["object"]["versionId"] == copy["VersionId"]
    on_key = [int(r["s3"]["object"]["sequencer"], 16) for r in got if r["s3"]["object"]["key"] == "docs/a+b%2Bc.txt"]
    assert on_key == sorted(on_key) and len(set(on_key)) == len(on_key)


def test_burst_of_1000_objects_seen_exactly_once_in_order_per_key(  # type: ignore[no-untyped-def]
    s3, bucket: str, events: EventStream, nats_url: str
) -> None:
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "TopicConfigurations": [topic(events.subject, ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "all")]
        },
    )
    keys = [f"burst/{i:04d}" for i in range(1000)]

    def life(key: str) -> None:  # written, overwritten, deleted: three events in this order
        s3.put_object(Bucket=bucket, Key=key, Body=b"one")
        s3.put_object(Bucket=bucket, Key=key, Body=b"two!")
        s3.delete_object(Bucket=bucket, Key=key)

    with Subscriber(nats_url, events.subject) as sub, ThreadPoolExecutor(16) as pool:
        list(pool.map(life, keys))
        eventually(lambda: len(records(sub.received)), lambda n: n >= 3000, timeout=30)
    expected = ["ObjectCreated:Put", "ObjectCreated:Put", "ObjectRemoved:Delete"]
    for name, seen in (("subscriber", records(sub.received)), ("stream", records(events.messages()))):
        assert len(seen) == 3000, name
        by_key: dict[str, list[dict[str, Any]]] = {}
        for record in seen:
            by_key.setdefault(record["s3"]["object"]["key"], []).append(record)
        assert sorted(by_key) == keys, name
        for key, got in by_key.items():
            assert [r["eventName"] for r in got] == expected, (name, key)
            assert [r["s3"]["object"].get("size") for r in got] == [3, 4, None], (name, key)
            sequencers = [r["s3"]["object"]["sequencer"] for r in got]
            assert sequencers == sorted(sequencers), (name, key)


def test_the_same_event_sent_twice_is_kept_once(nats_url: str, events: EventStream) -> None:
    """What a gateway does when an event's ack is lost: send it again with the same message id."""

    async def send_twice() -> None:
        nc = await nats.connect(nats_url)
        try:
            publisher = EventPublisher(nc, Publisher(nc))
            for body in (b'{"Records":[{"n":1}]}', b'{"Records":[{"n":1}]}', b'{"Records":[{"n":2}]}'):
                msg_id = "b:created:7:ObjectCreated:Put:r" if b"1" in body else "b:created:8:ObjectCreated:Put:r"
                await publisher.publish(events.subject, body, msg_id)
            assert publisher.published == 3 and publisher.failed == 0
        finally:
            await nc.close()

    run(send_twice())
    assert records(events.messages()) == [{"n": 1}, {"n": 2}]
