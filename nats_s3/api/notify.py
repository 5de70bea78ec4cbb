"""Sending a change's S3 event to the subjects its bucket's notification rules name.

Called by the handlers after the change is durable and before they answer, so a client that saw the
answer can rely on the event having been published. An event that cannot be published is logged and
counted; the change stands and the request succeeds (S3 delivers events after the fact, too).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..protocol.event_records import ObjectEvent, event_message
from ..protocol.notifications import NotificationRule, matching_rules
from ..store.bucket_config import BucketConfig
from ..store.event_publisher import EventNotDelivered
from ..store.models import ObjectInfo
from ..store.writes import DeleteResult
from .buckets import bucket_region
from .context import S3Context
from .services import Services
from .versions import shows_versions

log = logging.getLogger("nats_s3.events")

# The rules of each bucket, parsed from its configuration once per configuration change.
_parsed: dict[str, tuple[list[dict[str, object]], list[NotificationRule]]] = {}


def _rules(config: BucketConfig) -> list[NotificationRule]:
    stored = config.notifications or []
    known = _parsed.get(config.name)
    if known is None or known[0] is not stored:
        known = _parsed[config.name] = (stored, [NotificationRule.from_dict(rule) for rule in stored])
    return known[1]


def wants(services: Services, bucket: str) -> bool:
    """Whether any event of this bucket goes anywhere (cheap: a dictionary lookup when none does)."""
    config = services.store.configs.cached(bucket)
    return config is not None and bool(config.notifications)


async def notify(
    services: Services,
    ctx: S3Context,
    name: str,
    key: str,
    *,
    sequence: int,
    change: str | None = None,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
) -> None:
    """Publish event `name` ("ObjectCreated:Put") about `key`, changed at stream sequence `sequence`,
    to every rule of the bucket that matches it. `change` names the change where its sequence may
    differ when it is reported again (a version's id, for the write that made it)."""
    if not sequence:
        return  # nothing changed (a delete of a key that was not there)
    bucket = ctx.bucket
    config = services.store.configs.cached(bucket)
    if config is None or not config.notifications:
        return
    matched = matching_rules(_rules(config), "s3:" + name, key)
    if not matched:
        return
    principal = ctx.principal
    event = ObjectEvent(
        name=name,
        bucket=bucket,
        key=key,
        sequence=sequence,
        time=datetime.now(UTC),
        region=bucket_region(services, bucket),
        bucket_owner=config.owner,
        principal=principal.user_id if principal is not None else "",
        source_ip=ctx.request.remote or "",
        request_id=ctx.request_id,
        size=size,
        etag=etag,
        version_id=version_id if version_id is not None and shows_versions(services, bucket) else None,
    )
    for rule in matched:
        # The id names the change (the bucket as created, the change in it) and the rule: the same
        # event published twice is kept once by a stream capturing the subject.
        msg_id = f"{bucket}:{config.created}:{change or sequence}:{name}:{rule.rule_id}"
        try:
            await services.store.events.publish(rule.subject, event_message(event, rule.rule_id), msg_id)
        except EventNotDelivered as exc:
            log.warning(
                "event not published",
                extra={"bucket": bucket, "key": key, "event": name, "subject": rule.subject, "error": str(exc)},
            )


async def object_created(services: Services, ctx: S3Context, name: str, info: ObjectInfo) -> None:
    """ObjectCreated:<name> for the version a write made."""
    if wants(services, ctx.bucket):
        await notify(
            services, ctx, f"ObjectCreated:{name}", info.key, sequence=info.meta_seq, change=info.uid or None,
            size=info.size, etag=info.etag, version_id=info.version_id,
        )  # fmt: skip


async def object_changed(services: Services, ctx: S3Context, name: str, info: ObjectInfo) -> None:
    """An event about a version whose metadata changed (ObjectTagging:Put, ObjectAcl:Put, ...)."""
    if wants(services, ctx.bucket):
        await notify(
            services, ctx, name, info.key, sequence=info.meta_seq, size=info.size, etag=info.etag,
            version_id=info.version_id,
        )  # fmt: skip


async def object_removed(
    services: Services, ctx: S3Context, key: str, result: DeleteResult, *, named_version: bool
) -> None:
    """ObjectRemoved:DeleteMarkerCreated for a marker a delete made, ObjectRemoved:Delete for a version
    (a marker included) deleted by id or an object deleted where no versions are kept."""
    if wants(services, ctx.bucket):
        made_marker = result.delete_marker and not named_version
        name = "ObjectRemoved:DeleteMarkerCreated" if made_marker else "ObjectRemoved:Delete"
        await notify(services, ctx, name, key, sequence=result.seq, version_id=result.version_id)
