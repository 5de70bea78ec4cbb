"""S3 event notifications as a bucket configures them: a NotificationConfiguration (parsed and validated
from XML as S3 validates it, rendered back), and which of its rules an event on a key matches.

A rule's destination is a NATS subject, named by the ARN `arn:nats:::<subject>` in a TopicConfiguration
or QueueConfiguration (both mean the same here: a subject any NATS client, or a JetStream stream
capturing it, receives). Lambda and EventBridge destinations do not exist here and are refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from lxml import etree

from .errors import S3Error
from .xml import XmlChild, child_text, children, local_name, parse_xml

ARN_PREFIX = "arn:nats:::"
MAX_RULES = 100
MAX_ID = 255
MAX_SUBJECT = 255
MAX_FILTER_VALUE = 1024

# Every event type S3 documents for notifications. The ones that never happen here (no archive tiers,
# no S3 replication, no storage classes) are accepted, as a configuration copied from S3 names them,
# and never fire.
EVENT_TYPES = frozenset(
    {
        "s3:TestEvent",
        "s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectCreated:Post", "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRestore:*", "s3:ObjectRestore:Post", "s3:ObjectRestore:Completed", "s3:ObjectRestore:Delete",
        "s3:ReducedRedundancyLostObject",
        "s3:Replication:*", "s3:Replication:OperationFailedReplication",
        "s3:Replication:OperationMissedThreshold", "s3:Replication:OperationReplicatedAfterThreshold",
        "s3:Replication:OperationNotTracked",
        "s3:LifecycleExpiration:*", "s3:LifecycleExpiration:Delete",
        "s3:LifecycleExpiration:DeleteMarkerCreated",
        "s3:LifecycleTransition", "s3:IntelligentTiering",
        "s3:ObjectTagging:*", "s3:ObjectTagging:Put", "s3:ObjectTagging:Delete",
        "s3:ObjectAcl:Put",
    }
)  # fmt: skip
# The configurations S3 knows, by element name, and the element holding each one's destination.
_DESTINATIONS = {"TopicConfiguration": "Topic", "QueueConfiguration": "Queue"}
_REFUSED = {
    "CloudFunctionConfiguration": "Lambda functions are not a destination this gateway can deliver to.",
    "EventBridgeConfiguration": "EventBridge is not a destination this gateway can deliver to.",
}


@dataclass(frozen=True, slots=True)
class NotificationRule:
    """One Topic/QueueConfiguration: events of these types on keys under `prefix` ending in `suffix`
    are published on `subject`."""

    rule_id: str
    kind: str  # "Topic" or "Queue": as configured, rendered back the same way
    subject: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    @property
    def arn(self) -> str:
        return ARN_PREFIX + self.subject

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.rule_id, "kind": self.kind, "subject": self.subject, "events": list(self.events),
            "prefix": self.prefix, "suffix": self.suffix,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> NotificationRule:
        events = data.get("events")
        return cls(
            str(data.get("id") or ""), str(data.get("kind") or "Topic"), str(data.get("subject") or ""),
            tuple(str(e) for e in events) if isinstance(events, list) else (),
            str(data.get("prefix") or ""), str(data.get("suffix") or ""),
        )  # fmt: skip

    def matches(self, event_name: str, key: str) -> bool:
        """Whether an event named `event_name` (as "s3:ObjectCreated:Put") on `key` is this rule's."""
        if not (key.startswith(self.prefix) and key.endswith(self.suffix)):
            return False
        return any(_covers(pattern, event_name) for pattern in self.events)


def _covers(pattern: str, event_name: str) -> bool:
    if pattern.endswith(":*"):
        return event_name.startswith(pattern[:-1])
    return pattern == event_name


def _overlap(a: NotificationRule, b: NotificationRule) -> bool:
    """S3's rule: two configurations overlap when they share an event type and a key could match both
    filters (one prefix starts the other, one suffix ends the other)."""
    shares_event = any(_covers(x, y) or _covers(y, x) for x in a.events for y in b.events)
    prefixes = a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix)
    suffixes = a.suffix.endswith(b.suffix) or b.suffix.endswith(a.suffix)
    return shares_event and prefixes and suffixes


def valid_subject(subject: str) -> bool:
    """A subject a gateway may publish events on: plain tokens, no wildcards, nothing of NATS's own
    (`$` subjects: JetStream, the Object Store, KV) or of reply inboxes."""
    if not subject or len(subject) > MAX_SUBJECT or subject.startswith(("$", "_INBOX.")):
        return False
    if any(c.isspace() or ord(c) < 0x20 for c in subject):
        return False
    return all(token and token not in ("*", ">") for token in subject.split("."))


def _destination_error(arn: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Unable to validate the following destination configurations: {arn[:300]!r} is not "
        f"{ARN_PREFIX}<subject> with a NATS subject events may be published on (no wildcards, not $ or _INBOX).",
        extra={"ArgumentName": "Destination", "ArgumentValue": arn[:300]},
    )


def _filter(element: etree._Element) -> tuple[str, str]:
    prefix: str | None = None
    suffix: str | None = None
    for key_filter in children(element, "S3Key"):
        for rule in children(key_filter, "FilterRule"):
            name = (child_text(rule, "Name") or "").strip().lower()
            value = child_text(rule, "Value") or ""
            if len(value) > MAX_FILTER_VALUE:
                raise S3Error("InvalidArgument", "A filter rule value can be at most 1024 characters.")
            if name == "prefix" and prefix is None:
                prefix = value
            elif name == "suffix" and suffix is None:
                suffix = value
            elif name in ("prefix", "suffix"):
                raise S3Error(
                    "InvalidArgument",
                    "Cannot specify more than one prefix rule in a filter."
                    if name == "prefix"
                    else "Cannot specify more than one suffix rule in a filter.",
                )
            else:
                raise S3Error("InvalidArgument", "filter rule name must be either prefix or suffix")
    return prefix or "", suffix or ""


def parse_notifications(body: bytes) -> list[NotificationRule]:
    """A PutBucketNotificationConfiguration body; an empty configuration (no rules) turns them off."""
    root = parse_xml(body)
    if local_name(root) != "NotificationConfiguration":
        raise S3Error("MalformedXML")
    for element in root:
        name = local_name(element) if isinstance(element.tag, str) else ""
        if name in _REFUSED:
            raise S3Error("InvalidArgument", _REFUSED[name], extra={"ArgumentName": name})
    rules: list[NotificationRule] = []
    ids: set[str] = set()
    for element_name, destination in _DESTINATIONS.items():
        for element in children(root, element_name):
            arn = (child_text(element, destination) or "").strip()
            if not arn:
                raise S3Error("MalformedXML")
            subject = arn[len(ARN_PREFIX) :] if arn.startswith(ARN_PREFIX) else ""
            if not valid_subject(subject):
                raise _destination_error(arn)
            events = tuple((e.text or "").strip() for e in children(element, "Event"))
            if not events:
                raise S3Error("MalformedXML")
            for event in events:
                if event not in EVENT_TYPES:
                    raise S3Error(
                        "InvalidArgument",
                        f"The event {event[:100]!r} is not supported for notifications.",
                        extra={"ArgumentName": "Event", "ArgumentValue": event[:100]},
                    )
            rule_id = (child_text(element, "Id") or "").strip() or _generated_id()
            if len(rule_id) > MAX_ID:
                raise S3Error(
                    "InvalidArgument", f"The Id of a notification configuration must be at most {MAX_ID} characters."
                )
            if rule_id in ids:
                raise S3Error("InvalidArgument", f"Two notification configurations have the Id {rule_id!r}.")
            ids.add(rule_id)
            filters = children(element, "Filter")
            prefix, suffix = _filter(filters[0]) if filters else ("", "")
            rules.append(NotificationRule(rule_id, destination, subject, tuple(dict.fromkeys(events)), prefix, suffix))
    if len(rules) > MAX_RULES:
        raise S3Error("InvalidArgument", f"A bucket can have at most {MAX_RULES} notification configurations.")
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            if _overlap(a, b):
                raise S3Error(
                    "InvalidArgument",
                    "Configurations overlap. Configurations on the same bucket cannot share a common event type "
                    f"with overlapping prefix and suffix filters ({a.rule_id!r} and {b.rule_id!r}).",
                )
    return rules


def _generated_id() -> str:
    # S3 names an Id-less configuration itself; the name only has to be unique in the bucket.
    return secrets.token_urlsafe(24)


def render_notifications(rules: list[NotificationRule]) -> list[XmlChild]:
    items: list[XmlChild] = []
    for kind, element_name in (("Topic", "TopicConfiguration"), ("Queue", "QueueConfiguration")):
        for rule in (r for r in rules if r.kind == kind):
            entry: list[XmlChild] = [("Id", rule.rule_id), (kind, rule.arn)]
            entry += [("Event", event) for event in rule.events]
            filter_rules: list[XmlChild] = []
            if rule.prefix:
                filter_rules.append(("FilterRule", [("Name", "Prefix"), ("Value", rule.prefix)]))
            if rule.suffix:
                filter_rules.append(("FilterRule", [("Name", "Suffix"), ("Value", rule.suffix)]))
            if filter_rules:
                entry.append(("Filter", [("S3Key", filter_rules)]))
            items.append((element_name, entry))
    return items


def matching_rules(rules: list[NotificationRule], event_name: str, key: str) -> list[NotificationRule]:
    return [rule for rule in rules if rule.matches(event_name, key)]
