"""Get/PutBucketNotificationConfiguration: a bucket's event rules, kept in its configuration record.

Setting rules sends each new destination S3's `s3:TestEvent`, as S3 does, so a subscriber can see
that the bucket reaches it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web

from ..protocol.event_records import configuration_test_message
from ..protocol.notifications import NotificationRule, parse_notifications, render_notifications
from ..store.event_publisher import EventNotDelivered
from .body import read_request_xml
from .context import S3Context
from .services import Services

MAX_NOTIFICATION_BODY = 256 * 1024
log = logging.getLogger("nats_s3.events")


async def get_bucket_notification_configuration(services: Services, ctx: S3Context) -> web.Response:
    await services.store.head_bucket(ctx.bucket)
    stored = services.store.configs.get(ctx.bucket).notifications or []
    return ctx.xml("NotificationConfiguration", render_notifications([NotificationRule.from_dict(r) for r in stored]))


async def put_bucket_notification_configuration(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_NOTIFICATION_BODY)
    rules = parse_notifications(body)
    await services.store.head_bucket(ctx.bucket)
    before = {str(r.get("subject")) for r in services.store.configs.get(ctx.bucket).notifications or []}
    await services.store.configs.set_fields(ctx.bucket, notifications=[r.as_dict() for r in rules] or None)
    test = configuration_test_message(ctx.bucket, datetime.now(UTC), ctx.request_id)
    for subject in dict.fromkeys(r.subject for r in rules if r.subject not in before):
        try:
            await services.store.events.publish(subject, test, f"{ctx.bucket}:test:{ctx.request_id}:{subject}")
        except EventNotDelivered as exc:
            log.warning("test event not published", extra={"bucket": ctx.bucket, "subject": subject, "error": str(exc)})
    return ctx.empty()
