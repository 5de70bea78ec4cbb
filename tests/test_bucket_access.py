"""Bucket policies, ownership controls and the public access block through real clients: their APIs,
their errors, and what they do to other callers' requests, on one gateway and across gateways."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from .conftest import empty_bucket
from .support import GatewayProcess, eventually
from .users import ADMIN, ALICE, BOB, SCOPED, Client, anonymous, client, users_gateway

__all__ = ["users_gateway"]  # the fixture


def code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


@pytest.fixture
def alices(users_gateway: GatewayProcess) -> Iterator[tuple[Client, str]]:
    alice = client(users_gateway, ALICE)
    name = f"access-{uuid.uuid4().hex[:10]}"
    alice.create_bucket(Bucket=name)
    yield alice, name
    alice.delete_bucket_policy(Bucket=name)
    alice.delete_public_access_block(Bucket=name)
    empty_bucket(alice, name)
    alice.delete_bucket(Bucket=name)


def test_bucket_policy_api(alices: tuple[Client, str]) -> None:
    alice, name = alices
    with pytest.raises(ClientError) as err:
        alice.get_bucket_policy(Bucket=name)
    assert code(err) == "NoSuchBucketPolicy" and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as err:
        alice.get_bucket_policy_status(Bucket=name)
    assert code(err) == "NoSuchBucketPolicy"
    text = policy({"Sid": "read", "Effect": "Allow", "Principal": {"AWS": BOB["userId"]}, "Action": "s3:GetObject",
                   "Resource": f"arn:aws:s3:::{name}/*"})  # fmt: skip
    resp = alice.put_bucket_policy(Bucket=name, Policy=text)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert alice.get_bucket_policy(Bucket=name)["Policy"] == text  # as it was put
    assert alice.get_bucket_policy_status(Bucket=name)["PolicyStatus"]["IsPublic"] is False
    public = policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}
    )
    alice.put_bucket_policy(Bucket=name, Policy=public)
    assert alice.get_bucket_policy_status(Bucket=name)["PolicyStatus"]["IsPublic"] is True
    for bad, reason in (
        ("{not json", "invalid Json"),
        (policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::else/*"}),
         "invalid resource"),
        (policy({"Effect": "Allow", "Principal": "*", "Action": "s3:Fly", "Resource": f"arn:aws:s3:::{name}/*"}),
         "invalid action"),
    ):  # fmt: skip
        with pytest.raises(ClientError) as err:
            alice.put_bucket_policy(Bucket=name, Policy=bad)
        assert code(err) == "MalformedPolicy" and reason in err.value.response["Error"]["Message"]
    assert alice.get_bucket_policy(Bucket=name)["Policy"] == public  # a refused policy changed nothing
    assert alice.delete_bucket_policy(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as err:
        alice.get_bucket_policy(Bucket=name)
    assert code(err) == "NoSuchBucketPolicy"


def test_policy_grants_and_denies(users_gateway: GatewayProcess, alices: tuple[Client, str]) -> None:
    alice, name = alices
    bob, anon = client(users_gateway, BOB), anonymous(users_gateway)
    alice.put_object(Bucket=name, Key="shared/a", Body=b"a", Tagging="share=yes")
    alice.put_object(Bucket=name, Key="shared/b", Body=b"b", Tagging="share=no")
    alice.put_bucket_policy(Bucket=name, Policy=policy(
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BOB['userId']}:user/bob"}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{name}/shared/*",
         "Condition": {"StringEquals": {"s3:ExistingObjectTag/share": "yes"}}},
        {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{name}",
         "Condition": {"NumericLessThanEquals": {"s3:max-keys": 2}, "IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}},
        {"Effect": "Allow", "Principal": {"AWS": BOB["userId"]}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{name}/inbox/*", "Condition": {
             "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "s3:RequestObjectTag/from": "bob"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{name}/shared/*"},
    ))  # fmt: skip
    assert bob.get_object(Bucket=name, Key="shared/a")["Body"].read() == b"a"
    with pytest.raises(ClientError) as err:
        bob.get_object(Bucket=name, Key="shared/b")  # its tag says no
    assert code(err) == "AccessDenied"
    assert len(anon.list_objects_v2(Bucket=name, MaxKeys=2)["Contents"]) == 2  # from loopback, few keys at once
    with pytest.raises(ClientError) as err:
        anon.list_objects_v2(Bucket=name, MaxKeys=100)
    assert code(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        bob.put_object(Bucket=name, Key="inbox/x", Body=b"x", Tagging="from=bob")  # no ACL handing it over
    assert code(err) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        bob.put_object(Bucket=name, Key="inbox/x", Body=b"x", ACL="bucket-owner-full-control", Tagging="from=eve")
    assert code(err) == "AccessDenied"
    bob.put_object(Bucket=name, Key="inbox/x", Body=b"x", ACL="bucket-owner-full-control", Tagging="from=bob")
    assert alice.get_object(Bucket=name, Key="inbox/x")["Body"].read() == b"x"
    # An explicit Deny binds the owner too; the owner can still change the policy.
    with pytest.raises(ClientError) as err:
        alice.delete_object(Bucket=name, Key="shared/a")
    assert code(err) == "AccessDenied"
    alice.delete_bucket_policy(Bucket=name)
    alice.delete_object(Bucket=name, Key="shared/a")


def test_secure_transport_condition_over_plain_http(users_gateway: GatewayProcess, alices: tuple[Client, str]) -> None:
    alice, name = alices
    alice.put_object(Bucket=name, Key="k", Body=b"x")
    alice.put_bucket_policy(Bucket=name, Policy=policy(
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}))  # fmt: skip
    with pytest.raises(ClientError) as err:
        alice.get_object(Bucket=name, Key="k")  # this test gateway is plain HTTP
    assert code(err) == "AccessDenied"
    alice.delete_bucket_policy(Bucket=name)  # never locked out of the policy itself
    assert alice.get_object(Bucket=name, Key="k")["Body"].read() == b"x"


def test_ownership_controls(users_gateway: GatewayProcess, alices: tuple[Client, str]) -> None:
    alice, name = alices
    bob = client(users_gateway, BOB)
    with pytest.raises(ClientError) as err:
        alice.get_bucket_ownership_controls(Bucket=name)
    assert (
        code(err) == "OwnershipControlsNotFoundError"
        and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    )
    # No controls: ACLs are on, and an object's writer owns it.
    alice.put_bucket_acl(Bucket=name, GrantWrite=f'id="{BOB["userId"]}"')
    bob.put_object(Bucket=name, Key="bobs", Body=b"b")
    assert bob.get_object_acl(Bucket=name, Key="bobs")["Owner"]["ID"] == BOB["userId"]
    assert bob.get_object(Bucket=name, Key="bobs")["Body"].read() == b"b"  # the writer's FULL_CONTROL
    assert alice.get_object(Bucket=name, Key="bobs")["Body"].read() == b"b"  # the bucket's owner may too
    with pytest.raises(ClientError) as err:  # a bucket with a grant cannot turn ACLs off
        alice.put_bucket_ownership_controls(
            Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
        )
    assert code(err) == "InvalidBucketAclWithObjectOwnership"
    alice.put_bucket_acl(Bucket=name, ACL="private")
    alice.put_bucket_ownership_controls(
        Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    rules = alice.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
    assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    for call in (
        lambda: alice.put_object(Bucket=name, Key="k", Body=b"x", ACL="public-read"),
        lambda: alice.put_bucket_acl(Bucket=name, ACL="public-read"),
        lambda: alice.put_object_acl(Bucket=name, Key="bobs", ACL="authenticated-read"),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert (
            code(err) == "AccessControlListNotSupported"
            and err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        )
    alice.put_object(Bucket=name, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    assert [g["Permission"] for g in alice.get_bucket_acl(Bucket=name)["Grants"]] == ["FULL_CONTROL"]
    with pytest.raises(ClientError) as err:  # ACLs no longer grant: bob's WRITE is gone with them
        bob.put_object(Bucket=name, Key="more", Body=b"b")
    assert code(err) == "AccessDenied"
    assert alice.delete_bucket_ownership_controls(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as err:
        alice.get_bucket_ownership_controls(Bucket=name)
    assert code(err) == "OwnershipControlsNotFoundError"
    with pytest.raises(ClientError) as err:
        alice.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": [{"ObjectOwnership": "Nobody"}]})
    assert code(err) == "MalformedXML"
    created = f"owned-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=created, ObjectOwnership="BucketOwnerEnforced")
    try:
        rules = alice.get_bucket_ownership_controls(Bucket=created)["OwnershipControls"]["Rules"]
        assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    finally:
        alice.delete_bucket(Bucket=created)


def test_public_access_block(users_gateway: GatewayProcess, alices: tuple[Client, str]) -> None:
    alice, name = alices
    anon = anonymous(users_gateway)
    url = f"{users_gateway.endpoint}/{name}/open"
    with pytest.raises(ClientError) as err:
        alice.get_public_access_block(Bucket=name)
    assert code(err) == "NoSuchPublicAccessBlockConfiguration"
    alice.put_object(Bucket=name, Key="open", Body=b"o", ACL="public-read")
    assert requests.get(url, timeout=10).status_code == 200
    settings = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
                "RestrictPublicBuckets": False}  # fmt: skip
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=settings)
    assert alice.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"] == settings
    for call in (
        lambda: alice.put_object(Bucket=name, Key="more", Body=b"x", ACL="public-read"),
        lambda: alice.put_bucket_acl(Bucket=name, ACL="public-read-write"),
        lambda: alice.put_object_acl(
            Bucket=name, Key="open", GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"'
        ),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert code(err) == "AccessDenied"
    assert requests.get(url, timeout=10).status_code == 200  # what was public stays public...
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={**settings, "IgnorePublicAcls": True})
    assert requests.get(url, timeout=10).status_code == 403  # ...until public ACLs are ignored
    public = policy(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{name}/*"}
    )
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={**settings, "BlockPublicPolicy": True})
    with pytest.raises(ClientError) as err:
        alice.put_bucket_policy(Bucket=name, Policy=public)
    assert code(err) == "AccessDenied"
    private = policy({"Effect": "Allow", "Principal": {"AWS": BOB["userId"]}, "Action": "s3:GetObject",
                      "Resource": f"arn:aws:s3:::{name}/*"})  # fmt: skip
    alice.put_bucket_policy(Bucket=name, Policy=private)  # naming its principal: not public
    alice.delete_public_access_block(Bucket=name)
    alice.put_bucket_policy(Bucket=name, Policy=public)
    alice.put_object(Bucket=name, Key="closed", Body=b"c")
    assert anon.get_object(Bucket=name, Key="closed")["Body"].read() == b"c"  # by the public policy
    restricting = {**settings, "BlockPublicAcls": False, "RestrictPublicBuckets": True}
    alice.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=restricting)
    with pytest.raises(ClientError) as err:
        anon.get_object(Bucket=name, Key="closed")
    assert code(err) == "AccessDenied"
    alice.delete_public_access_block(Bucket=name)
    assert anon.get_object(Bucket=name, Key="closed")["Body"].read() == b"c"


def test_a_policy_change_applies_on_every_gateway_within_a_second(nats_url: str, tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": [ADMIN, ALICE, BOB]}))
    one, two = GatewayProcess(path, nats_url).start(), GatewayProcess(path, nats_url).start()
    alice = client(one, ALICE)
    bob_on_two = client(two, BOB)
    name = f"spread-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    try:
        alice.put_object(Bucket=name, Key="k", Body=b"x")
        grant = policy({"Effect": "Allow", "Principal": {"AWS": BOB["userId"]}, "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{name}/*"})  # fmt: skip
        for text, allowed in ((grant, True), (None, False)):
            if text is None:
                alice.delete_bucket_policy(Bucket=name)
            else:
                alice.put_bucket_policy(Bucket=name, Policy=text)
            changed = time.monotonic()

            def works() -> bool:
                try:
                    bob_on_two.get_object(Bucket=name, Key="k")
                    return True
                except ClientError:
                    return False

            eventually(works, lambda ok, want=allowed: ok == want, timeout=5, step=0.02)  # type: ignore[misc]
            assert time.monotonic() - changed < 1.0
    finally:
        empty_bucket(alice, name)
        alice.delete_bucket(Bucket=name)
        one.stop()
        two.stop()


def test_roles_change_on_sighup_and_a_bad_policy_keeps_the_old_file(nats_url: str, tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"credentials": [ALICE, BOB]}))  # no admin, no policy: one-user mode
    gw = GatewayProcess(path, nats_url).start()
    alice, bob = client(gw, ALICE), client(gw, BOB)
    name = f"roles-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    try:
        bob.put_object(Bucket=name, Key="k", Body=b"x")  # every key may do everything
        path.write_text(json.dumps({"credentials": [ADMIN, ALICE, BOB]}))
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)

        def bob_refused() -> bool:
            try:
                bob.head_object(Bucket=name, Key="k")
                return False
            except ClientError:
                return True

        assert eventually(bob_refused, bool, timeout=10)  # now alice's bucket is alice's
        assert alice.head_object(Bucket=name, Key="k")["ContentLength"] == 1
        broken = {**SCOPED, "policy": {"Statement": [{"Effect": "Allow", "Action": "s3:Fly", "Resource": "*"}]}}
        path.write_text(json.dumps({"credentials": [ADMIN, ALICE, BOB, broken]}))
        gw.proc.send_signal(signal.SIGHUP)
        eventually(gw.log_text, lambda text: "invalid action" in text, timeout=10)
        assert bob_refused() and alice.head_object(Bucket=name, Key="k")["ContentLength"] == 1
    finally:
        empty_bucket(alice, name)
        alice.delete_bucket(Bucket=name)
        gw.stop()
