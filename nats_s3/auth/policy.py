"""IAM policy documents (a bucket policy, or a credential's own policy): checked once when they are set
(MalformedPolicy with the reason, as S3 words it where it has words), then evaluated per request.

Evaluation of one document answers DENY (a matching Deny statement), ALLOW (a matching Allow and no
matching Deny) or NONE; how the answers of several documents and ACLs combine is access.py's business.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from ..protocol.errors import S3Error

MAX_BUCKET_POLICY_BYTES = 20 * 1024
VERSIONS = ("2012-10-17", "2008-10-17")

# Every S3 action a policy may name (AWS accepts the ones this gateway does not serve too, so a policy
# written for AWS loads here).
S3_ACTIONS = frozenset(
    "s3:" + name
    for name in [
        "AbortMultipartUpload",
        "BypassGovernanceRetention",
        "CreateBucket",
        "DeleteBucket",
        "DeleteBucketPolicy",
        "DeleteBucketOwnershipControls",
        "DeleteBucketWebsite",
        "DeleteObject",
        "DeleteObjectTagging",
        "DeleteObjectVersion",
        "DeleteObjectVersionTagging",
        "GetAccelerateConfiguration",
        "GetBucketAcl",
        "GetBucketCORS",
        "GetBucketLocation",
        "GetBucketLogging",
        "GetBucketNotification",
        "GetBucketObjectLockConfiguration",
        "GetBucketOwnershipControls",
        "GetBucketPolicy",
        "GetBucketPolicyStatus",
        "GetBucketPublicAccessBlock",
        "GetBucketRequestPayment",
        "GetBucketTagging",
        "GetBucketVersioning",
        "GetBucketWebsite",
        "GetEncryptionConfiguration",
        "GetLifecycleConfiguration",
        "GetObject",
        "GetObjectAcl",
        "GetObjectAttributes",
        "GetObjectLegalHold",
        "GetObjectRetention",
        "GetObjectTagging",
        "GetObjectVersion",
        "GetObjectVersionAcl",
        "GetObjectVersionAttributes",
        "GetObjectVersionTagging",
        "GetReplicationConfiguration",
        "ListAllMyBuckets",
        "ListBucket",
        "ListBucketMultipartUploads",
        "ListBucketVersions",
        "ListMultipartUploadParts",
        "PutAccelerateConfiguration",
        "PutBucketAcl",
        "PutBucketCORS",
        "PutBucketLogging",
        "PutBucketNotification",
        "PutBucketObjectLockConfiguration",
        "PutBucketOwnershipControls",
        "PutBucketPolicy",
        "PutBucketPublicAccessBlock",
        "PutBucketRequestPayment",
        "PutBucketTagging",
        "PutBucketVersioning",
        "PutBucketWebsite",
        "PutEncryptionConfiguration",
        "PutLifecycleConfiguration",
        "PutObject",
        "PutObjectAcl",
        "PutObjectLegalHold",
        "PutObjectRetention",
        "PutObjectTagging",
        "PutObjectVersionAcl",
        "PutObjectVersionTagging",
        "PutReplicationConfiguration",
        "ReplicateDelete",
        "ReplicateObject",
        "ReplicateTags",
        "RestoreObject",
    ]
)
_S3_ACTIONS_LOWER = frozenset(a.lower() for a in S3_ACTIONS)

# S3's own condition keys (lower-case); the ones ending in "/" take a tag key after the slash.
S3_CONDITION_KEYS = frozenset(
    "s3:" + name.lower()
    for name in [
        "prefix",
        "delimiter",
        "max-keys",
        "VersionId",
        "x-amz-acl",
        "x-amz-content-sha256",
        "x-amz-copy-source",
        "x-amz-metadata-directive",
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-aws-kms-key-id",
        "x-amz-storage-class",
        "x-amz-grant-read",
        "x-amz-grant-write",
        "x-amz-grant-read-acp",
        "x-amz-grant-write-acp",
        "x-amz-grant-full-control",
        "signatureversion",
        "authType",
        "signatureAge",
        "TlsVersion",
        "RequestObjectTagKeys",
        "LocationConstraint",
        "object-lock-mode",
        "object-lock-retain-until-date",
        "object-lock-remaining-retention-days",
        "object-lock-legal-hold",
        "ResourceAccount",
        "x-amz-object-ownership",
    ]
)
S3_TAG_CONDITION_PREFIXES = ("s3:existingobjecttag/", "s3:requestobjecttag/")

# Keys that, compared to fixed values, make an Allow to everyone not public (AWS's "public" rules).
_LIMITING_KEYS = frozenset(
    k.lower()
    for k in [
        "aws:SourceArn",
        "aws:SourceVpc",
        "aws:SourceVpce",
        "aws:SourceAccount",
        "aws:SourceOwner",
        "aws:PrincipalAccount",
        "aws:PrincipalOrgID",
        "aws:PrincipalArn",
        "aws:userid",
        "aws:username",
        "s3:DataAccessPointArn",
        "s3:DataAccessPointAccount",
    ]
)


_EQUALITY = frozenset({"StringEquals", "ArnEquals", "StringLike", "ArnLike"})


class Decision(enum.Enum):
    NONE = "none"
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Facts:
    """What a statement is matched against. `caller` is None for an anonymous request; `user_id` and
    `name` identify a signed one. Condition keys are lower-case (a tag key after "/" keeps its case)."""

    action: str  # "s3:GetObject"
    resource: str  # "arn:aws:s3:::bucket" or "arn:aws:s3:::bucket/key"; "*" for ListAllMyBuckets
    user_id: str | None
    name: str | None
    context: Mapping[str, Sequence[str]]


def malformed(reason: str) -> S3Error:
    return S3Error("MalformedPolicy", reason)


def condition_key(key: str) -> str:
    """Condition key names are case-insensitive; a tag key after the slash is not."""
    head, sep, tail = key.partition("/")
    return head.lower() + sep + tail


@functools.lru_cache(maxsize=4096)
def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: `*` any run of characters, `?` one character; nothing else is special."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == value.lower() if ignore_case else pattern == value
    return _wildcard(pattern, ignore_case).fullmatch(value) is not None


_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def substitute(pattern: str, facts: Facts) -> str:
    """Policy variables (Version 2012-10-17): ${aws:username}, ${aws:userid}, any context key, and the
    escapes ${*} ${?} ${$}. A variable with no value leaves the pattern unmatchable, as AWS does."""
    if "${" not in pattern:
        return pattern

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ("*", "?", "$"):
            return "\0" + name  # a literal, restored below
        key = condition_key(name)
        if key == "aws:username" and facts.name is not None:
            return facts.name
        if key == "aws:userid" and facts.user_id is not None:
            return facts.user_id
        found = facts.context.get(key)
        return found[0] if found else "\0\0unset"

    return _VARIABLE.sub(value, pattern)


def _pattern_match(pattern: str, value: str, facts: Facts, variables: bool, ignore_case: bool = False) -> bool:
    if variables and "${" in pattern:
        pattern = substitute(pattern, facts)
        if "\0\0unset" in pattern:
            return False
        if "\0" in pattern:  # escaped wildcards match themselves only
            parts = pattern.split("\0")
            regex = re.escape(parts[0]) + "".join(
                re.escape(p[0]) + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in p[1:])
                for p in parts[1:]
            )
            return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None
    return wildcard_match(pattern, value, ignore_case)


def _strings(value: object, field: str) -> tuple[str, ...]:
    """A field that is a string or a list of strings."""
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise malformed(f"Policy has an invalid {field}")
    return tuple(items)  # type: ignore[arg-type]


def _condition_values(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, (str, int, float)):
            out.append(str(item))
        else:
            raise malformed("Policy has an invalid condition value")
    if not out:
        raise malformed("Policy has an invalid condition value")
    return tuple(out)


# ---- conditions ----

Compare = Callable[[str, str, "Facts"], bool]


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> datetime | None:
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return datetime.fromtimestamp(float(text), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _numeric(test: Callable[[float, float], bool]) -> Compare:
    def compare(want: str, got: str, facts: Facts) -> bool:
        a, b = _number(got), _number(want)
        return a is not None and b is not None and test(a, b)

    return compare


def _dates(test: Callable[[datetime, datetime], bool]) -> Compare:
    def compare(want: str, got: str, facts: Facts) -> bool:
        a, b = _date(got), _date(want)
        return a is not None and b is not None and test(a, b)

    return compare


def _ip(want: str, got: str, facts: Facts) -> bool:
    try:
        return ipaddress.ip_address(got) in ipaddress.ip_network(want, strict=False)
    except ValueError:
        return False


def _arn_like(want: str, got: str, facts: Facts) -> bool:
    return _pattern_match(want, got, facts, True)


def _check_number(value: str) -> None:
    if _number(value) is None:
        raise malformed(f"Policy has an invalid numeric condition value: {value[:64]}")


def _check_date(value: str) -> None:
    if _date(value) is None:
        raise malformed(f"Policy has an invalid date condition value: {value[:64]}")


def _check_network(value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise malformed(f"Policy has an invalid IP address condition value: {value[:64]}") from None


def _check_bool(value: str) -> None:
    if value.lower() not in ("true", "false"):
        raise malformed(f"Policy has an invalid boolean condition value: {value[:64]}")


@dataclass(frozen=True, slots=True)
class _Operator:
    compare: Compare
    negated: bool = False
    check: Callable[[str], None] | None = None


_OPERATORS: dict[str, _Operator] = {
    "StringEquals": _Operator(lambda w, g, f: substitute(w, f) == g),
    "StringNotEquals": _Operator(lambda w, g, f: substitute(w, f) == g, negated=True),
    "StringEqualsIgnoreCase": _Operator(lambda w, g, f: substitute(w, f).lower() == g.lower()),
    "StringNotEqualsIgnoreCase": _Operator(lambda w, g, f: substitute(w, f).lower() == g.lower(), negated=True),
    "StringLike": _Operator(lambda w, g, f: _pattern_match(w, g, f, True)),
    "StringNotLike": _Operator(lambda w, g, f: _pattern_match(w, g, f, True), negated=True),
    "NumericEquals": _Operator(_numeric(lambda a, b: a == b), check=_check_number),
    "NumericNotEquals": _Operator(_numeric(lambda a, b: a == b), negated=True, check=_check_number),
    "NumericLessThan": _Operator(_numeric(lambda a, b: a < b), check=_check_number),
    "NumericLessThanEquals": _Operator(_numeric(lambda a, b: a <= b), check=_check_number),
    "NumericGreaterThan": _Operator(_numeric(lambda a, b: a > b), check=_check_number),
    "NumericGreaterThanEquals": _Operator(_numeric(lambda a, b: a >= b), check=_check_number),
    "DateEquals": _Operator(_dates(lambda a, b: a == b), check=_check_date),
    "DateNotEquals": _Operator(_dates(lambda a, b: a == b), negated=True, check=_check_date),
    "DateLessThan": _Operator(_dates(lambda a, b: a < b), check=_check_date),
    "DateLessThanEquals": _Operator(_dates(lambda a, b: a <= b), check=_check_date),
    "DateGreaterThan": _Operator(_dates(lambda a, b: a > b), check=_check_date),
    "DateGreaterThanEquals": _Operator(_dates(lambda a, b: a >= b), check=_check_date),
    "Bool": _Operator(lambda w, g, f: w.lower() == g.lower(), check=_check_bool),
    "BinaryEquals": _Operator(lambda w, g, f: w == g),
    "IpAddress": _Operator(_ip, check=_check_network),
    "NotIpAddress": _Operator(_ip, negated=True, check=_check_network),
    "ArnEquals": _Operator(lambda w, g, f: substitute(w, f) == g),
    "ArnLike": _Operator(_arn_like),
    "ArnNotEquals": _Operator(lambda w, g, f: substitute(w, f) == g, negated=True),
    "ArnNotLike": _Operator(_arn_like, negated=True),
}


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str  # as written, e.g. "ForAnyValue:StringLike"
    base: str  # "StringLike"
    key: str  # lower-case
    values: tuple[str, ...]
    if_exists: bool
    quantifier: str  # "", "foranyvalue", "forallvalues"

    def holds(self, facts: Facts) -> bool:
        got = facts.context.get(self.key)
        if self.base == "Null":
            want_absent = self.values[0].lower() == "true"
            return (not got) == want_absent
        op = _OPERATORS[self.base]
        if not got:
            if self.if_exists or self.quantifier == "forallvalues":
                return True
            return op.negated and self.quantifier == ""

        def matches(value: str) -> bool:
            return any(op.compare(want, value, facts) for want in self.values)

        if self.quantifier == "forallvalues":
            hit = all(matches(value) for value in got)
            return (not hit) if op.negated else hit
        hit = any(matches(value) for value in got)
        return (not hit) if op.negated else hit


def _parse_conditions(block: object) -> tuple[Condition, ...]:
    if not isinstance(block, dict):
        raise malformed("Policy has an invalid condition block")
    out: list[Condition] = []
    for operator, pairs in block.items():
        quantifier, _, base = operator.rpartition(":")
        if quantifier and quantifier.lower() not in ("foranyvalue", "forallvalues"):
            raise malformed(f"Invalid Condition type : {operator[:64]}")
        if_exists = base.endswith("IfExists") and base != "IfExists"
        if if_exists:
            base = base.removesuffix("IfExists")
        if base != "Null" and base not in _OPERATORS:
            raise malformed(f"Invalid Condition type : {operator[:64]}")
        if base == "Null" and if_exists:
            raise malformed(f"Invalid Condition type : {operator[:64]}")
        if not isinstance(pairs, dict) or not pairs:
            raise malformed(f"Policy has an invalid condition block for {operator[:64]}")
        for raw_key, raw_values in pairs.items():
            key = condition_key(raw_key)
            if not _known_condition_key(key):
                raise malformed(f"Policy has an invalid condition key: {raw_key[:128]}")
            values = _condition_values(raw_values)
            check = _check_bool if base == "Null" else _OPERATORS[base].check
            if check is not None:
                for value in values:
                    check(value)
            out.append(Condition(operator, base, key, values, if_exists, quantifier.lower()))
    return tuple(out)


def _known_condition_key(key: str) -> bool:
    if key.startswith("aws:"):
        return len(key) > 4
    if key.startswith(S3_TAG_CONDITION_PREFIXES):
        return not key.endswith("/")
    return key in S3_CONDITION_KEYS


# ---- statements ----


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    """A Principal (or NotPrincipal) element: "*", or AWS / CanonicalUser ids and ARNs."""

    everyone: bool
    ids: frozenset[str]  # canonical user ids (the account part of an arn:aws:iam::<id>:... ARN)

    def matches(self, user_id: str | None) -> bool:
        if self.everyone:
            return True
        return user_id is not None and user_id in self.ids


def _parse_principal(value: object) -> PrincipalSet:
    if value == "*":
        return PrincipalSet(True, frozenset())
    if not isinstance(value, dict) or not value:
        raise malformed("Invalid principal in policy")
    ids: set[str] = set()
    everyone = False
    for kind, entries in value.items():
        if kind not in ("AWS", "CanonicalUser", "Service", "Federated"):
            raise malformed("Invalid principal in policy")
        for entry in _strings(entries, "principal"):
            if kind in ("Service", "Federated"):
                continue  # no such callers here: they never match
            if entry == "*":
                everyone = everyone or kind == "AWS"
                continue
            if entry.startswith("arn:"):
                parts = entry.split(":", 5)
                if len(parts) != 6 or parts[2] != "iam" or not parts[4]:
                    raise malformed("Invalid principal in policy")
                ids.add(parts[4])
            else:
                ids.add(entry)
    return PrincipalSet(everyone, frozenset(ids))


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    allow: bool
    principal: PrincipalSet | None  # None: an identity policy's statement (it is about its own holder)
    not_principal: bool
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]
    variables: bool

    def applies(self, facts: Facts) -> bool:
        if self.principal is not None and self.principal.matches(facts.user_id) == self.not_principal:
            return False
        action_hit = any(wildcard_match(a, facts.action, ignore_case=True) for a in self.actions)
        if action_hit == self.not_action:
            return False
        resource_hit = any(_pattern_match(r, facts.resource, facts, self.variables) for r in self.resources)
        if resource_hit == self.not_resource:
            return False
        return all(condition.holds(facts) for condition in self.conditions)

    @property
    def public(self) -> bool:
        """AWS's test: an Allow to everyone, not pinned by a condition on a fixed identifying value."""
        if not self.allow or self.principal is None:
            return False
        if not (self.not_principal or self.principal.everyone):
            return False
        for condition in self.conditions:
            if condition.quantifier or condition.if_exists or condition.base == "Null":
                continue
            fixed = not any("*" in v or "?" in v for v in condition.values)
            if condition.key in _LIMITING_KEYS and condition.base in _EQUALITY and fixed:
                return False
            if condition.key == "aws:sourceip" and condition.base == "IpAddress":
                networks = [ipaddress.ip_network(v, strict=False) for v in condition.values]
                if all(n.prefixlen >= (8 if n.version == 4 else 32) for n in networks):
                    return False
        return True


def _parse_statement(raw: object, bucket: str | None) -> Statement:
    if not isinstance(raw, dict):
        raise malformed("Policy has an invalid statement")
    known = {"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
             "Condition"}  # fmt: skip
    unknown = set(raw) - known
    if unknown:
        raise malformed(f"Policy has an unknown field: {sorted(unknown)[0][:64]}")
    sid = raw.get("Sid", "")
    if not isinstance(sid, str) or not re.fullmatch(r"[A-Za-z0-9 _\-.]*", sid):
        raise malformed("Statement IDs (SID) must be alpha-numeric.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise malformed(
            f"Invalid effect: {str(effect)[:32]}" if effect is not None else "Missing required field Effect"
        )
    principal: PrincipalSet | None = None
    not_principal = False
    if bucket is not None:
        if ("Principal" in raw) == ("NotPrincipal" in raw):
            raise malformed("Missing required field Principal" if "Principal" not in raw else
                            "Statement may not have both Principal and NotPrincipal")  # fmt: skip
        not_principal = "NotPrincipal" in raw
        principal = _parse_principal(raw["NotPrincipal" if not_principal else "Principal"])
    elif "Principal" in raw or "NotPrincipal" in raw:
        raise malformed("A credential's policy must not name a Principal (it applies to its holder)")
    if ("Action" in raw) == ("NotAction" in raw):
        raise malformed("Missing required field Action" if "Action" not in raw else
                        "Statement may not have both Action and NotAction")  # fmt: skip
    not_action = "NotAction" in raw
    actions = _strings(raw["NotAction" if not_action else "Action"], "action")
    for action in actions:
        if action == "*" or action.lower() == "s3:*":
            continue
        if not action.lower().startswith("s3:"):
            raise malformed(f"Policy has invalid action: {action[:64]}")
        if "*" not in action and "?" not in action and action.lower() not in _S3_ACTIONS_LOWER:
            raise malformed(f"Policy has invalid action: {action[:64]}")
    if ("Resource" in raw) == ("NotResource" in raw):
        raise malformed("Missing required field Resource" if "Resource" not in raw else
                        "Statement may not have both Resource and NotResource")  # fmt: skip
    not_resource = "NotResource" in raw
    resources = _strings(raw["NotResource" if not_resource else "Resource"], "resource")
    for resource in resources:
        if resource == "*" and bucket is None:
            continue
        if not resource.startswith("arn:aws:s3:::") or len(resource) == len("arn:aws:s3:::"):
            raise malformed(f"Policy has invalid resource: {resource[:128]}")
        if bucket is not None:
            named = resource[len("arn:aws:s3:::") :].split("/", 1)[0]
            if not wildcard_match(named, bucket) and "${" not in named:
                raise malformed(f"Policy has invalid resource: {resource[:128]}")
    conditions = _parse_conditions(raw["Condition"]) if "Condition" in raw else ()
    return Statement(sid, effect == "Allow", principal, not_principal, actions, not_action, resources,
                     not_resource, conditions, variables=True)  # fmt: skip


@dataclass(frozen=True)  # not slots: the cached properties need a __dict__
class Policy:
    text: str
    statements: tuple[Statement, ...]

    def evaluate(self, facts: Facts, *, skip_public: bool = False) -> Decision:
        """`skip_public`: leave out public Allow statements (RestrictPublicBuckets)."""
        decision = Decision.NONE
        for statement in self.statements:
            if statement.allow and (decision is Decision.ALLOW or (skip_public and statement.public)):
                continue
            if statement.applies(facts):
                if not statement.allow:
                    return Decision.DENY
                decision = Decision.ALLOW
        return decision

    @functools.cached_property
    def is_public(self) -> bool:
        return any(statement.public for statement in self.statements)

    @functools.cached_property
    def reads_existing_tags(self) -> bool:
        """Whether judging a request needs the object's tags (an s3:ExistingObjectTag condition)."""
        return any(c.key.startswith("s3:existingobjecttag/") for s in self.statements for c in s.conditions)


def parse_policy(text: str, bucket: str | None) -> Policy:
    """A policy document: a bucket's (`bucket` set: statements name principals and that bucket's
    resources) or a credential's own (`bucket` None). MalformedPolicy with the reason otherwise."""
    if bucket is not None and len(text.encode()) > MAX_BUCKET_POLICY_BYTES:
        raise malformed("Policies must be no larger than 20 KB")
    if not text.lstrip().startswith("{"):
        raise malformed("Policies must be valid JSON and the first byte must be '{'")
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise malformed("This policy contains invalid Json") from None
    return policy_from_document(document, bucket, text)


def policy_from_document(document: object, bucket: str | None, text: str | None = None) -> Policy:
    if not isinstance(document, dict):
        raise malformed("Policies must be valid JSON and the first byte must be '{'")
    unknown = set(document) - {"Version", "Id", "Statement"}
    if unknown:
        raise malformed(f"Policy has an unknown field: {sorted(unknown)[0][:64]}")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise malformed(f"The policy must contain a valid version string: {str(version)[:32]}")
    if "Statement" not in document:
        raise malformed("Missing required field Statement")
    raw = document["Statement"]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise malformed("Could not parse the policy: Statement is empty!")
    statements = [_parse_statement(item, bucket) for item in items]
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise malformed("Statement IDs (SID) in a single policy must be unique.")
    if version != "2012-10-17":  # policy variables exist from this version on
        statements = [dataclasses.replace(s, variables=False) for s in statements]
    return Policy(text if text is not None else json.dumps(document), tuple(statements))
