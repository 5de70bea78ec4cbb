"""IAM policy documents and the access decision, without a gateway: what is malformed (and why), how
statements, wildcards, variables and conditions match, and how policies, ownership and ACLs combine."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nats_s3.auth import grants
from nats_s3.auth.access import ObjectFacts, Verdict, judge
from nats_s3.auth.actions import REQUIREMENTS, action_for
from nats_s3.auth.policy import Decision, Facts, condition_key, parse_policy, policy_from_document
from nats_s3.auth.principals import Principal
from nats_s3.protocol.errors import S3Error
from nats_s3.store.bucket_config import BucketConfig

ALICE = Principal("alice-key", "alice-id", "alice")
BOB = Principal("bob-key", "bob-id", "bob")


def doc(*statements: dict[str, Any], version: str = "2012-10-17") -> str:
    return json.dumps({"Version": version, "Statement": list(statements)})


def allow(**fields: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*", **fields}


def facts(action: str = "s3:GetObject", resource: str = "arn:aws:s3:::b/k", who: Principal | None = BOB,
          **context: str | list[str]) -> Facts:  # fmt: skip
    named = {k.replace("__", ":").replace("_", "-"): v for k, v in context.items()}
    keys = {condition_key(k): v if isinstance(v, list) else [v] for k, v in named.items()}
    return Facts(action, resource, who.user_id if who else None, who.display_name if who else None, keys)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "first byte must be '{'"),
        ("{", "invalid Json"),
        (json.dumps({"Version": "2012-10-17"}), "Missing required field Statement"),
        (json.dumps({"Version": "2020-01-01", "Statement": []}), "valid version"),
        (json.dumps({"Statement": [], "Extra": 1}), "unknown field"),
        (doc(allow(Effect="Maybe")), "Invalid effect"),
        (doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}), "Principal"),
        (doc(allow(Action="s3:GetObjects")), "invalid action"),
        (doc(allow(Action="iam:CreateUser")), "invalid action"),
        (doc(allow(Resource="arn:aws:s3:::other/*")), "invalid resource"),
        (doc(allow(Resource="b/*")), "invalid resource"),
        (doc(allow(Condition={"StringFoo": {"s3:prefix": "a"}})), "Invalid Condition type"),
        (doc(allow(Condition={"StringLike": {"s3:nonsense": "a"}})), "invalid condition key"),
        (doc(allow(Condition={"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}})), "IP address"),
        (doc(allow(Condition={"NumericLessThan": {"s3:max-keys": "ten"}})), "numeric"),
        (doc(allow(Condition={"DateLessThan": {"aws:CurrentTime": "yesterday"}})), "date"),
        (doc(allow(Condition={"Bool": {"aws:SecureTransport": "yes"}})), "boolean"),
        (doc(allow(Sid="a"), allow(Sid="a")), "unique"),
        (doc(allow(Principal={"AWS": "arn:aws:s3:::nope"})), "Invalid principal"),
        (doc(allow(NotAction="s3:PutObject")), "both Action and NotAction"),
    ],
)
def test_malformed_policies_say_why(text: str, reason: str) -> None:
    with pytest.raises(S3Error) as err:
        parse_policy(text, "b")
    assert err.value.code == "MalformedPolicy" and err.value.status == 400
    assert reason.lower() in err.value.message.lower()


def test_a_large_policy_is_refused() -> None:
    with pytest.raises(S3Error) as err:
        parse_policy(doc(*[allow(Sid=f"s{i}") for i in range(400)]), "b")
    assert "20 KB" in err.value.message


def test_credential_policies_name_no_principal() -> None:
    with pytest.raises(S3Error):
        policy_from_document(json.loads(doc(allow())), None)
    own = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert policy_from_document({"Statement": [own]}, None).evaluate(facts()) is Decision.ALLOW


def test_principals_actions_and_resources_match_with_wildcards() -> None:
    policy = parse_policy(doc(allow(Principal={"AWS": ["arn:aws:iam::bob-id:user/bob"]}, Action="s3:Get*",
                                    Resource="arn:aws:s3:::b/data/??.csv")), "b")  # fmt: skip
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/data/01.csv")) is Decision.ALLOW
    assert policy.evaluate(facts(action="s3:getobjectacl", resource="arn:aws:s3:::b/data/01.csv")) is Decision.ALLOW
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/data/001.csv")) is Decision.NONE
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/DATA/01.csv")) is Decision.NONE  # resources: case matters
    assert policy.evaluate(facts(who=ALICE, resource="arn:aws:s3:::b/data/01.csv")) is Decision.NONE
    assert policy.evaluate(facts(who=None, resource="arn:aws:s3:::b/data/01.csv")) is Decision.NONE
    canonical = parse_policy(doc(allow(Principal={"CanonicalUser": "bob-id"})), "b")
    assert canonical.evaluate(facts()) is Decision.ALLOW
    everyone = parse_policy(doc(allow()), "b")
    assert everyone.evaluate(facts(who=None)) is Decision.ALLOW


def test_not_elements_invert_their_match() -> None:
    policy = parse_policy(doc({"Effect": "Deny", "NotPrincipal": {"AWS": "alice-id"}, "NotAction": "s3:GetObject",
                               "NotResource": "arn:aws:s3:::b/public/*"}), "b")  # fmt: skip
    assert policy.evaluate(facts(action="s3:PutObject", resource="arn:aws:s3:::b/k")) is Decision.DENY
    assert policy.evaluate(facts(action="s3:PutObject", resource="arn:aws:s3:::b/public/k")) is Decision.NONE
    assert policy.evaluate(facts(action="s3:GetObject")) is Decision.NONE
    assert policy.evaluate(facts(action="s3:PutObject", who=ALICE)) is Decision.NONE


def test_an_explicit_deny_wins_whatever_its_order() -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/secret/*"}
    for order in ((allow(Resource="arn:aws:s3:::b/*"), deny), (deny, allow(Resource="arn:aws:s3:::b/*"))):
        policy = parse_policy(doc(*order), "b")
        assert policy.evaluate(facts(resource="arn:aws:s3:::b/secret/x")) is Decision.DENY
        assert policy.evaluate(facts(resource="arn:aws:s3:::b/open")) is Decision.ALLOW


def test_policy_variables() -> None:
    policy = parse_policy(doc(allow(Resource="arn:aws:s3:::b/home/${aws:username}/*")), "b")
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/bob/x")) is Decision.ALLOW
    assert policy.evaluate(facts(resource="arn:aws:s3:::b/home/alice/x")) is Decision.NONE
    assert policy.evaluate(facts(who=None, resource="arn:aws:s3:::b/home/bob/x")) is Decision.NONE
    old = parse_policy(doc(allow(Resource="arn:aws:s3:::b/home/${aws:username}/*"), version="2008-10-17"), "b")
    assert old.evaluate(facts(resource="arn:aws:s3:::b/home/bob/x")) is Decision.NONE  # no variables then
    literal = parse_policy(doc(allow(Resource="arn:aws:s3:::b/${*}")), "b")
    assert literal.evaluate(facts(resource="arn:aws:s3:::b/*")) is Decision.ALLOW
    assert literal.evaluate(facts(resource="arn:aws:s3:::b/x")) is Decision.NONE


@pytest.mark.parametrize(
    ("condition", "matching", "failing"),
    [
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws__SourceIp": "10.1.2.3"}, {"aws__SourceIp": "192.0.2.1"}),
        (
            {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]}},
            {"aws__SourceIp": "192.0.2.1"},
            {"aws__SourceIp": "::1"},
        ),
        (
            {"Bool": {"aws:SecureTransport": "false"}},
            {"aws__SecureTransport": "false"},
            {"aws__SecureTransport": "true"},
        ),
        ({"StringLike": {"s3:prefix": ["home/", "home/*"]}}, {"s3__prefix": "home/x"}, {"s3__prefix": "etc/"}),
        ({"StringEquals": {"s3:delimiter": "/"}}, {"s3__delimiter": "/"}, {"s3__delimiter": "-"}),
        ({"NumericLessThanEquals": {"s3:max-keys": 10}}, {"s3__max_keys": "10"}, {"s3__max_keys": "11"}),
        (
            {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}},
            {"s3__x_amz_acl": "bucket-owner-full-control"},
            {"s3__x_amz_acl": "public-read"},
        ),
        (
            {"StringEqualsIgnoreCase": {"aws:UserAgent": "BACKUP"}},
            {"aws__UserAgent": "backup"},
            {"aws__UserAgent": "curl"},
        ),
        (
            {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
            {"aws__CurrentTime": "2026-12-02T00:00:00Z"},
            {"aws__CurrentTime": "2031-01-01T00:00:00Z"},
        ),
        ({"Null": {"s3:x-amz-server-side-encryption": "true"}}, {}, {"s3__x_amz_server_side_encryption": "AES256"}),
        ({"StringNotEquals": {"s3:x-amz-acl": "public-read"}}, {}, {"s3__x_amz_acl": "public-read"}),
        ({"StringEqualsIfExists": {"s3:x-amz-acl": "private"}}, {}, {"s3__x_amz_acl": "public-read"}),
        (
            {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "env"]}},
            {"s3__RequestObjectTagKeys": ["team"]},
            {"s3__RequestObjectTagKeys": ["team", "owner"]},
        ),
        (
            {"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": "env"}},
            {"s3__RequestObjectTagKeys": ["a", "env"]},
            {"s3__RequestObjectTagKeys": ["a"]},
        ),
    ],
)
def test_conditions(condition: dict[str, Any], matching: dict[str, Any], failing: dict[str, Any]) -> None:
    policy = parse_policy(doc(allow(Condition=condition)), "b")
    assert policy.evaluate(facts(**matching)) is Decision.ALLOW
    assert policy.evaluate(facts(**failing)) is Decision.NONE


def test_tag_conditions_keep_the_tag_keys_case() -> None:
    policy = parse_policy(doc(allow(Condition={"StringEquals": {"s3:ExistingObjectTag/Team": "data"}})), "b")
    assert policy.reads_existing_tags
    assert policy.evaluate(Facts("s3:GetObject", "arn:aws:s3:::b/k", "bob-id", "bob",
                                 {"s3:existingobjecttag/Team": ["data"]})) is Decision.ALLOW  # fmt: skip
    assert policy.evaluate(Facts("s3:GetObject", "arn:aws:s3:::b/k", "bob-id", "bob",
                                 {"s3:existingobjecttag/team": ["data"]})) is Decision.NONE  # fmt: skip


@pytest.mark.parametrize(
    ("statement", "public"),
    [
        (allow(), True),
        (allow(Principal={"AWS": "*"}), True),
        (allow(Principal={"AWS": "bob-id"}), False),
        (allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), False),
        (allow(Condition={"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}), True),
        (allow(Condition={"StringEquals": {"aws:SourceVpc": "vpc-1"}}), False),
        (allow(Condition={"StringLike": {"aws:PrincipalArn": "*"}}), True),
        (allow(Condition={"Bool": {"aws:SecureTransport": "true"}}), True),
        ({**allow(), "Effect": "Deny"}, False),
    ],
)
def test_which_policies_are_public(statement: dict[str, Any], public: bool) -> None:
    assert parse_policy(doc(statement), "b").is_public is public


def _judge(principal: Principal | None, operation: str, config: BucketConfig | None, *, multi_user: bool = True,
           key: str | None = "k", obj: ObjectFacts | None = None) -> Verdict:  # fmt: skip
    requirement = REQUIREMENTS[operation]
    action = action_for(requirement, False)
    return judge(principal, multi_user, requirement, action, "b", key, config, lambda: {}, obj)


def test_owners_admins_and_one_user_mode() -> None:
    config = BucketConfig(name="b", owner="alice-id")
    assert _judge(ALICE, "DeleteBucket", config, key=None) is Verdict.ALLOW
    assert _judge(BOB, "DeleteBucket", config, key=None) is Verdict.DENY
    assert _judge(Principal("root", "root-id", "root", admin=True), "DeleteBucket", config, key=None) is Verdict.ALLOW
    assert _judge(BOB, "DeleteBucket", config, key=None, multi_user=False) is Verdict.ALLOW
    assert _judge(None, "GetObject", config, multi_user=False) is Verdict.NEED_OBJECT  # the object's ACL decides
    assert _judge(BOB, "CreateBucket", None, key=None) is Verdict.ALLOW  # ordinary users create buckets
    scoped = Principal("s", "s-id", "s", policy=policy_from_document({"Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}, None))  # fmt: skip
    assert _judge(scoped, "CreateBucket", None, key=None) is Verdict.DENY  # a scoped key only does what it says
    assert _judge(scoped, "GetObject", config) is Verdict.ALLOW


def test_a_deny_binds_owners_but_never_locks_them_out_of_the_policy() -> None:
    deny = doc(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]}
    )
    config = BucketConfig(name="b", owner="alice-id", policy=deny)
    assert _judge(ALICE, "GetObject", config) is Verdict.DENY
    assert _judge(ALICE, "PutBucketPolicy", config, key=None) is Verdict.ALLOW
    assert _judge(ALICE, "DeleteBucketPolicy", config, key=None) is Verdict.ALLOW
    assert _judge(BOB, "DeleteBucketPolicy", config, key=None) is Verdict.DENY


def test_acls_grant_and_settings_turn_them_off() -> None:
    bob_reads = grants.encode([grants.Grant(grants.USER, "bob-id", grants.READ)])
    config = BucketConfig(name="b", owner="alice-id", acl=bob_reads)
    assert _judge(BOB, "ListObjects", config, key=None) is Verdict.ALLOW
    assert _judge(BOB, "PutObject", config) is Verdict.DENY
    assert _judge(BOB, "GetObject", config) is Verdict.NEED_OBJECT
    assert _judge(BOB, "GetObject", config, obj=ObjectFacts(bob_reads, "", {})) is Verdict.ALLOW
    assert _judge(BOB, "GetObject", config, obj=ObjectFacts("private", "", {})) is Verdict.DENY
    enforced = config.model_copy(update={"ownership": "BucketOwnerEnforced"})
    assert _judge(BOB, "ListObjects", enforced, key=None) is Verdict.DENY
    public = BucketConfig(name="b", owner="alice-id", acl="public-read")
    assert _judge(None, "ListObjects", public, key=None) is Verdict.ALLOW
    assert _judge(BOB, "ListObjects", public, key=None) is Verdict.ALLOW
    ignoring = public.model_copy(update={"public_access_block": {"IgnorePublicAcls": True}})
    assert _judge(None, "ListObjects", ignoring, key=None) is Verdict.DENY
    authenticated = BucketConfig(name="b", owner="alice-id", acl="authenticated-read")
    assert _judge(None, "ListObjects", authenticated, key=None) is Verdict.DENY
    assert _judge(BOB, "ListObjects", authenticated, key=None) is Verdict.ALLOW


def test_restrict_public_buckets_ignores_public_statements_for_others() -> None:
    config = BucketConfig(name="b", owner="alice-id", policy=doc(allow()),
                          public_access_block={"RestrictPublicBuckets": True})  # fmt: skip
    assert _judge(None, "GetObject", config, obj=ObjectFacts("private", "", {})) is Verdict.DENY
    named = doc(allow(Principal={"AWS": "bob-id"}))
    assert _judge(BOB, "GetObject", config.model_copy(update={"policy": named})) is Verdict.ALLOW
