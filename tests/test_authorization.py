"""Who may do what, end to end: every operation the gateway serves, for each kind of caller, against a
gateway whose credentials file has ordinary users, an admin and a scoped key. After every refused
request the bucket's data and settings are read back and must be unchanged."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from .conftest import empty_bucket
from .support import GatewayProcess
from .users import ACME, ADMIN, ALICE, BOB, SCOPED, Client, anonymous, client, users_gateway

__all__ = ["users_gateway"]  # the fixture

Op = Callable[[Client, str, str, str], object]


def _prefix(key: str) -> str:
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


def _complete(c: Client, b: str, k: str, upload: str) -> object:
    return c.complete_multipart_upload(
        Bucket=b, Key=k, UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0" * 32'}]}
    )


CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://example.com"]}]}
TAGS = {"TagSet": [{"Key": "team", "Value": "data"}]}
OWNER_ONLY = {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
NO_BLOCK = {"BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
            "RestrictPublicBuckets": False}  # fmt: skip

# Every operation, run on (client, bucket, key, upload id); written so that an allowed run leaves the
# bucket usable for the next one (the case's baseline is put back after it).
OPERATIONS: dict[str, Op] = {
    "HeadBucket": lambda c, b, k, u: c.head_bucket(Bucket=b),
    "GetBucketLocation": lambda c, b, k, u: c.get_bucket_location(Bucket=b),
    "GetBucketVersioning": lambda c, b, k, u: c.get_bucket_versioning(Bucket=b),
    "PutBucketVersioning": lambda c, b, k, u: c.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Suspended"}
    ),
    "ListObjects": lambda c, b, k, u: c.list_objects(Bucket=b, Prefix=_prefix(k)),
    "ListObjectsV2": lambda c, b, k, u: c.list_objects_v2(Bucket=b, Prefix=_prefix(k)),
    "ListObjectVersions": lambda c, b, k, u: c.list_object_versions(Bucket=b, Prefix=_prefix(k)),
    "ListMultipartUploads": lambda c, b, k, u: c.list_multipart_uploads(Bucket=b),
    "GetBucketAcl": lambda c, b, k, u: c.get_bucket_acl(Bucket=b),
    "PutBucketAcl": lambda c, b, k, u: c.put_bucket_acl(Bucket=b, ACL="public-read-write"),
    "GetBucketCors": lambda c, b, k, u: c.get_bucket_cors(Bucket=b),
    "PutBucketCors": lambda c, b, k, u: c.put_bucket_cors(
        Bucket=b, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]}]}
    ),
    "DeleteBucketCors": lambda c, b, k, u: c.delete_bucket_cors(Bucket=b),
    "GetBucketTagging": lambda c, b, k, u: c.get_bucket_tagging(Bucket=b),
    "PutBucketTagging": lambda c, b, k, u: c.put_bucket_tagging(Bucket=b, Tagging={"TagSet": []}),
    "DeleteBucketTagging": lambda c, b, k, u: c.delete_bucket_tagging(Bucket=b),
    "GetBucketPolicy": lambda c, b, k, u: c.get_bucket_policy(Bucket=b),
    "PutBucketPolicy": lambda c, b, k, u: c.put_bucket_policy(Bucket=b, Policy=_public_policy(b)),
    "DeleteBucketPolicy": lambda c, b, k, u: c.delete_bucket_policy(Bucket=b),
    "GetBucketPolicyStatus": lambda c, b, k, u: c.get_bucket_policy_status(Bucket=b),
    "GetBucketOwnershipControls": lambda c, b, k, u: c.get_bucket_ownership_controls(Bucket=b),
    "PutBucketOwnershipControls": lambda c, b, k, u: c.put_bucket_ownership_controls(
        Bucket=b, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}
    ),
    "DeleteBucketOwnershipControls": lambda c, b, k, u: c.delete_bucket_ownership_controls(Bucket=b),
    "GetPublicAccessBlock": lambda c, b, k, u: c.get_public_access_block(Bucket=b),
    "PutPublicAccessBlock": lambda c, b, k, u: c.put_public_access_block(
        Bucket=b, PublicAccessBlockConfiguration={**NO_BLOCK, "BlockPublicAcls": True}
    ),
    "DeletePublicAccessBlock": lambda c, b, k, u: c.delete_public_access_block(Bucket=b),
    "PutObject": lambda c, b, k, u: c.put_object(Bucket=b, Key=k, Body=b"changed"),
    "GetObject": lambda c, b, k, u: c.get_object(Bucket=b, Key=k)["Body"].read(),
    "HeadObject": lambda c, b, k, u: c.head_object(Bucket=b, Key=k),
    "GetObjectAttributes": lambda c, b, k, u: c.get_object_attributes(Bucket=b, Key=k, ObjectAttributes=["ETag"]),
    "CopyObject": lambda c, b, k, u: c.copy_object(Bucket=b, Key=k + ".copy", CopySource={"Bucket": b, "Key": k}),
    "GetObjectAcl": lambda c, b, k, u: c.get_object_acl(Bucket=b, Key=k),
    "PutObjectAcl": lambda c, b, k, u: c.put_object_acl(Bucket=b, Key=k, ACL="public-read-write"),
    "GetObjectTagging": lambda c, b, k, u: c.get_object_tagging(Bucket=b, Key=k),
    "PutObjectTagging": lambda c, b, k, u: c.put_object_tagging(Bucket=b, Key=k, Tagging={"TagSet": []}),
    "DeleteObjectTagging": lambda c, b, k, u: c.delete_object_tagging(Bucket=b, Key=k),
    "CreateMultipartUpload": lambda c, b, k, u: c.create_multipart_upload(Bucket=b, Key=k),
    "UploadPart": lambda c, b, k, u: c.upload_part(Bucket=b, Key=k, UploadId=u, PartNumber=2, Body=b"part"),
    "UploadPartCopy": lambda c, b, k, u: c.upload_part_copy(
        Bucket=b, Key=k, UploadId=u, PartNumber=3, CopySource={"Bucket": b, "Key": k}
    ),
    "ListParts": lambda c, b, k, u: c.list_parts(Bucket=b, Key=k, UploadId=u),
    "CompleteMultipartUpload": _complete,
    "AbortMultipartUpload": lambda c, b, k, u: c.abort_multipart_upload(Bucket=b, Key=k, UploadId=u),
    "DeleteObject": lambda c, b, k, u: c.delete_object(Bucket=b, Key=k),
    "DeleteObjects": lambda c, b, k, u: c.delete_objects(Bucket=b, Delete={"Objects": [{"Key": k}]}),
    "DeleteBucket": lambda c, b, k, u: c.delete_bucket(Bucket=b),  # not empty: refused or 409
}

READS = {"GetObject", "HeadObject"}
BUCKET_READS = {"HeadBucket", "ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"}
WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"}

# case -> the operations its caller may do (every other one must be refused).
ALLOWED: dict[str, set[str]] = {
    "owner": set(OPERATIONS),
    "other-user": set(),
    "granted-by-policy": BUCKET_READS - {"ListObjectVersions", "ListMultipartUploads"}
    | READS
    | WRITES
    | {"CopyObject", "UploadPartCopy"},
    "granted-by-acl": BUCKET_READS
    | READS
    | WRITES
    | {
        "GetObjectAttributes",
        "CopyObject",
        "UploadPartCopy",
        "ListParts",
        "AbortMultipartUpload",
        "DeleteObject",
        "DeleteObjects",
    },
    "scoped-inside-prefix": {"ListObjects", "ListObjectsV2"} | READS | WRITES | {"CopyObject", "UploadPartCopy"},
    "scoped-outside-prefix": set(),
    "anonymous-private": set(),
    "anonymous-public-read": BUCKET_READS | READS | {"GetObjectAttributes", "ListParts"},
}


def _public_policy(bucket: str) -> str:
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


class Case:
    """A bucket in a known state, the caller to try, and the key it works on."""

    def __init__(self, gw: GatewayProcess, name: str) -> None:
        self.name = name
        scoped = name.startswith("scoped")
        self.owner = client(gw, ADMIN if scoped else ALICE)
        self.bucket = ACME if scoped else f"authz-{name[:20]}-{uuid.uuid4().hex[:6]}"
        self.key = {"scoped-inside-prefix": "datasets/k", "scoped-outside-prefix": "other/k"}.get(name, "k")
        self.caller = {
            "owner": lambda: client(gw, ALICE),
            "scoped-inside-prefix": lambda: client(gw, SCOPED),
            "scoped-outside-prefix": lambda: client(gw, SCOPED),
            "anonymous-private": lambda: anonymous(gw),
            "anonymous-public-read": lambda: anonymous(gw),
        }.get(name, lambda: client(gw, BOB))()
        self.upload = ""
        self.owner.create_bucket(Bucket=self.bucket)
        self.baseline()

    def baseline(self) -> None:
        own, b, k = self.owner, self.bucket, self.key
        own.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        own.put_object(Bucket=b, Key=k, Body=b"original", Tagging="team=data")
        own.put_bucket_cors(Bucket=b, CORSConfiguration=CORS)
        own.put_bucket_tagging(Bucket=b, Tagging=TAGS)
        own.delete_public_access_block(Bucket=b)
        own.delete_bucket_ownership_controls(Bucket=b)
        if self.name == "granted-by-policy":
            own.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BOB['userId']}:user/bob"},
                "Action": ["s3:GetObject", "s3:PutObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"]}]}))  # fmt: skip
        else:
            own.delete_bucket_policy(Bucket=b)
        if self.name == "granted-by-acl":
            bob = f'id="{BOB["userId"]}"'
            own.put_bucket_acl(Bucket=b, GrantRead=bob, GrantWrite=bob)
            own.put_object_acl(Bucket=b, Key=k, GrantRead=bob)
        elif self.name == "anonymous-public-read":
            own.put_bucket_acl(Bucket=b, ACL="public-read")
            own.put_object_acl(Bucket=b, Key=k, ACL="public-read")
        else:
            own.put_bucket_acl(Bucket=b, ACL="private")
        uploads = own.list_multipart_uploads(Bucket=b).get("Uploads", [])
        mine = [u["UploadId"] for u in uploads if u["Key"] == k]
        self.upload = mine[0] if mine else own.create_multipart_upload(Bucket=b, Key=k)["UploadId"]
        if not own.list_parts(Bucket=b, Key=k, UploadId=self.upload).get("Parts"):
            own.upload_part(Bucket=b, Key=k, UploadId=self.upload, PartNumber=1, Body=b"p" * 16)

    def snapshot(self) -> dict[str, object]:
        """Everything a refused request must not have changed, read by the bucket's owner."""
        own, b, k = self.owner, self.bucket, self.key

        def read(call: Callable[[], dict[str, Any]], *fields: str) -> object:
            try:
                found = call()
            except ClientError as err:
                return err.response["Error"]["Code"]
            return {f: found.get(f) for f in fields}

        versions = own.list_object_versions(Bucket=b)
        return {
            "versions": [(v["Key"], v["VersionId"], v["ETag"], v["IsLatest"]) for v in versions.get("Versions", [])],
            "markers": [(m["Key"], m["VersionId"]) for m in versions.get("DeleteMarkers", [])],
            "uploads": [(u["Key"], u["UploadId"]) for u in own.list_multipart_uploads(Bucket=b).get("Uploads", [])],
            "parts": read(lambda: own.list_parts(Bucket=b, Key=k, UploadId=self.upload), "Parts"),
            "object tags": read(lambda: own.get_object_tagging(Bucket=b, Key=k), "TagSet"),
            "object acl": read(lambda: own.get_object_acl(Bucket=b, Key=k), "Grants"),
            "acl": read(lambda: own.get_bucket_acl(Bucket=b), "Grants"),
            "versioning": read(lambda: own.get_bucket_versioning(Bucket=b), "Status"),
            "cors": read(lambda: own.get_bucket_cors(Bucket=b), "CORSRules"),
            "tags": read(lambda: own.get_bucket_tagging(Bucket=b), "TagSet"),
            "policy": read(lambda: own.get_bucket_policy(Bucket=b), "Policy"),
            "ownership": read(lambda: own.get_bucket_ownership_controls(Bucket=b), "OwnershipControls"),
            "public access block": read(
                lambda: own.get_public_access_block(Bucket=b), "PublicAccessBlockConfiguration"
            ),
        }

    def remove(self) -> None:
        own, b = self.owner, self.bucket
        for upload in own.list_multipart_uploads(Bucket=b).get("Uploads", []):
            own.abort_multipart_upload(Bucket=b, Key=upload["Key"], UploadId=upload["UploadId"])
        own.delete_bucket_policy(Bucket=b)
        empty_bucket(own, b)
        own.delete_bucket(Bucket=b)


def outcome(op: str, run: Callable[[], object]) -> tuple[bool, str]:
    """(refused, what happened): refused is 403 AccessDenied, or every key of a DeleteObjects denied."""
    try:
        result = run()
    except ClientError as err:
        code = err.response["Error"]["Code"]
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        assert status < 500, f"{op}: {status} {code}"
        return code in ("AccessDenied", "403"), f"{status} {code}"
    if op == "DeleteObjects":
        assert isinstance(result, dict)
        errors = [e["Code"] for e in result.get("Errors", [])]
        return bool(errors) and set(errors) == {"AccessDenied"} and not result.get("Deleted"), f"errors {errors}"
    return False, "ok"


@pytest.mark.parametrize("case_name", list(ALLOWED))
def test_authorization_matrix(users_gateway: GatewayProcess, case_name: str) -> None:
    case = Case(users_gateway, case_name)
    wrong: list[str] = []
    try:
        for op, run in OPERATIONS.items():
            expect_allowed = op in ALLOWED[case_name]
            before = None if expect_allowed else case.snapshot()
            refused, what = outcome(op, functools.partial(run, case.caller, case.bucket, case.key, case.upload))
            if refused == expect_allowed:
                wrong.append(f"{op}: {'refused' if refused else 'allowed'} ({what})")
            if before is not None:
                assert case.snapshot() == before, f"{case_name}: refused {op} changed stored data"
            else:
                case.baseline()
        assert not wrong, f"{case_name}:\n" + "\n".join(wrong)
    finally:
        case.remove()


def test_buckets_have_owners(users_gateway: GatewayProcess) -> None:
    alice, bob, admin = client(users_gateway, ALICE), client(users_gateway, BOB), client(users_gateway, ADMIN)
    name = f"owned-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name)
    try:
        assert name in [b["Name"] for b in alice.list_buckets()["Buckets"]]
        assert name not in [b["Name"] for b in bob.list_buckets()["Buckets"]]
        assert name in [b["Name"] for b in admin.list_buckets()["Buckets"]]  # an admin sees every bucket
        with pytest.raises(ClientError) as err:
            bob.create_bucket(Bucket=name)
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
        assert err.value.response["Error"]["Code"] == "BucketAlreadyExists"
        alice.create_bucket(Bucket=name)  # the owner again: S3's legacy us-east-1 answer is 200
        assert alice.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
        # The scoped key has no s3:CreateBucket and no bucket of its own to list.
        scoped = client(users_gateway, SCOPED)
        with pytest.raises(ClientError) as err:
            scoped.create_bucket(Bucket=f"scoped-{uuid.uuid4().hex[:8]}")
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        assert scoped.list_buckets()["Buckets"] == []
    finally:
        alice.delete_bucket(Bucket=name)


def test_presigned_urls_carry_their_signers_permissions(users_gateway: GatewayProcess) -> None:
    admin, scoped, bob = client(users_gateway, ADMIN), client(users_gateway, SCOPED), client(users_gateway, BOB)
    admin.create_bucket(Bucket=ACME)
    try:
        admin.put_object(Bucket=ACME, Key="datasets/a.csv", Body=b"a,b\n")
        admin.put_object(Bucket=ACME, Key="private/secret", Body=b"secret")
        inside = scoped.generate_presigned_url("get_object", Params={"Bucket": ACME, "Key": "datasets/a.csv"})
        outside = scoped.generate_presigned_url("get_object", Params={"Bucket": ACME, "Key": "private/secret"})
        by_bob = bob.generate_presigned_url("get_object", Params={"Bucket": ACME, "Key": "datasets/a.csv"})
        by_admin = admin.generate_presigned_url("get_object", Params={"Bucket": ACME, "Key": "private/secret"})
        assert requests.get(inside, timeout=10).content == b"a,b\n"
        assert requests.get(outside, timeout=10).status_code == 403
        assert requests.get(by_bob, timeout=10).status_code == 403
        assert requests.get(by_admin, timeout=10).content == b"secret"
        put = scoped.generate_presigned_url("put_object", Params={"Bucket": ACME, "Key": "private/secret"})
        assert requests.put(put, data=b"overwritten", timeout=10).status_code == 403
        assert admin.get_object(Bucket=ACME, Key="private/secret")["Body"].read() == b"secret"
    finally:
        empty_bucket(admin, ACME)
        admin.delete_bucket(Bucket=ACME)


def test_scoped_listing_needs_its_prefix(users_gateway: GatewayProcess) -> None:
    admin, scoped = client(users_gateway, ADMIN), client(users_gateway, SCOPED)
    admin.create_bucket(Bucket=ACME)
    try:
        admin.put_object(Bucket=ACME, Key="datasets/x", Body=b"x")
        admin.put_object(Bucket=ACME, Key="other/y", Body=b"y")
        keys = [o["Key"] for o in scoped.list_objects_v2(Bucket=ACME, Prefix="datasets/")["Contents"]]
        assert keys == ["datasets/x"]
        for prefix in ("", "other/", "dataset"):
            with pytest.raises(ClientError) as err:
                scoped.list_objects_v2(Bucket=ACME, Prefix=prefix)
            assert err.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        empty_bucket(admin, ACME)
        admin.delete_bucket(Bucket=ACME)


def test_unsigned_requests_reach_only_what_is_public(users_gateway: GatewayProcess, tmp_path: Path) -> None:
    alice, anon = client(users_gateway, ALICE), anonymous(users_gateway)
    name = f"public-{uuid.uuid4().hex[:8]}"
    alice.create_bucket(Bucket=name, ACL="public-read")
    try:
        alice.put_object(Bucket=name, Key="open", Body=b"for everyone", ACL="public-read")
        alice.put_object(Bucket=name, Key="closed", Body=b"for alice")
        assert anon.get_object(Bucket=name, Key="open")["Body"].read() == b"for everyone"
        assert [o["Key"] for o in anon.list_objects_v2(Bucket=name)["Contents"]] == ["closed", "open"]
        assert requests.get(f"{users_gateway.endpoint}/{name}/open", timeout=10).content == b"for everyone"
        assert requests.get(f"{users_gateway.endpoint}/{name}/closed", timeout=10).status_code == 403
        # A missing key: the bucket is listable by everyone, so everyone may learn it is missing.
        assert requests.get(f"{users_gateway.endpoint}/{name}/missing", timeout=10).status_code == 404
        assert requests.put(f"{users_gateway.endpoint}/{name}/new", data=b"x", timeout=10).status_code == 403
        assert requests.get(f"{users_gateway.endpoint}/", timeout=10).status_code == 403
        alice.put_bucket_acl(Bucket=name, ACL="private")
        assert requests.get(f"{users_gateway.endpoint}/{name}/missing", timeout=10).status_code == 403
        assert requests.get(f"{users_gateway.endpoint}/{name}/open", timeout=10).status_code == 200  # object ACL
    finally:
        empty_bucket(alice, name)
        alice.delete_bucket(Bucket=name)


def test_one_user_mode_keeps_every_key_all_powerful(gateway: GatewayProcess, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    """The default gateway's file has no admin or policy: keys are as before, and ACLs still make
    objects public for unsigned readers."""
    s3.put_object(Bucket=bucket, Key="pub", Body=b"hello", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="priv", Body=b"hidden")
    assert requests.get(f"{gateway.endpoint}/{bucket}/pub", timeout=10).content == b"hello"
    assert requests.get(f"{gateway.endpoint}/{bucket}/priv", timeout=10).status_code == 403
