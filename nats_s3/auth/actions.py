"""What each S3 operation asks for: its IAM action (the one S3's documentation names, with the
version-specific action when the request names a versionId), the resource it is judged on, and the ACL
permission that can grant it (and on what), where ACLs can grant it at all."""

from __future__ import annotations

from dataclasses import dataclass

from . import grants

BUCKET, OBJECT, SERVICE = "bucket", "object", "service"


@dataclass(frozen=True, slots=True)
class Requirement:
    action: str
    resource: str  # BUCKET, OBJECT or SERVICE
    acl: str | None = None  # the ACL permission that grants it
    acl_on: str = BUCKET  # whose ACL: the bucket's or the object's
    version_action: str | None = None  # the action instead when the request names a versionId


def _r(
    action: str, resource: str, acl: str | None = None, acl_on: str = BUCKET, version: str | None = None
) -> Requirement:
    return Requirement("s3:" + action, resource, acl, acl_on, "s3:" + version if version else None)


REQUIREMENTS: dict[str, Requirement] = {
    "ListBuckets": _r("ListAllMyBuckets", SERVICE),
    "CreateBucket": _r("CreateBucket", BUCKET),
    "HeadBucket": _r("ListBucket", BUCKET, grants.READ),
    "DeleteBucket": _r("DeleteBucket", BUCKET),
    "GetBucketLocation": _r("GetBucketLocation", BUCKET),
    "GetBucketVersioning": _r("GetBucketVersioning", BUCKET),
    "PutBucketVersioning": _r("PutBucketVersioning", BUCKET),
    "ListObjectVersions": _r("ListBucketVersions", BUCKET, grants.READ),
    "GetBucketAcl": _r("GetBucketAcl", BUCKET, grants.READ_ACP),
    "PutBucketAcl": _r("PutBucketAcl", BUCKET, grants.WRITE_ACP),
    "GetObjectAcl": _r("GetObjectAcl", OBJECT, grants.READ_ACP, OBJECT, "GetObjectVersionAcl"),
    "PutObjectAcl": _r("PutObjectAcl", OBJECT, grants.WRITE_ACP, OBJECT, "PutObjectVersionAcl"),
    "GetBucketCors": _r("GetBucketCORS", BUCKET),
    "PutBucketCors": _r("PutBucketCORS", BUCKET),
    "DeleteBucketCors": _r("PutBucketCORS", BUCKET),
    "GetBucketEncryption": _r("GetEncryptionConfiguration", BUCKET),
    "PutBucketEncryption": _r("PutEncryptionConfiguration", BUCKET),
    "DeleteBucketEncryption": _r("PutEncryptionConfiguration", BUCKET),
    "GetBucketNotificationConfiguration": _r("GetBucketNotification", BUCKET),
    "PutBucketNotificationConfiguration": _r("PutBucketNotification", BUCKET),
    "GetBucketTagging": _r("GetBucketTagging", BUCKET),
    "PutBucketTagging": _r("PutBucketTagging", BUCKET),
    "DeleteBucketTagging": _r("PutBucketTagging", BUCKET),
    "GetBucketPolicy": _r("GetBucketPolicy", BUCKET),
    "PutBucketPolicy": _r("PutBucketPolicy", BUCKET),
    "DeleteBucketPolicy": _r("DeleteBucketPolicy", BUCKET),
    "GetBucketPolicyStatus": _r("GetBucketPolicyStatus", BUCKET),
    "GetBucketOwnershipControls": _r("GetBucketOwnershipControls", BUCKET),
    "PutBucketOwnershipControls": _r("PutBucketOwnershipControls", BUCKET),
    "DeleteBucketOwnershipControls": _r("PutBucketOwnershipControls", BUCKET),
    "GetPublicAccessBlock": _r("GetBucketPublicAccessBlock", BUCKET),
    "PutPublicAccessBlock": _r("PutBucketPublicAccessBlock", BUCKET),
    "DeletePublicAccessBlock": _r("PutBucketPublicAccessBlock", BUCKET),
    "ListObjects": _r("ListBucket", BUCKET, grants.READ),
    "ListObjectsV2": _r("ListBucket", BUCKET, grants.READ),
    "ListMultipartUploads": _r("ListBucketMultipartUploads", BUCKET, grants.READ),
    # Each key of the request is judged as DeleteObject by the handler; the request itself asks nothing.
    "DeleteObjects": _r("DeleteObject", BUCKET, grants.WRITE),
    "PutObject": _r("PutObject", OBJECT, grants.WRITE),
    "CopyObject": _r("PutObject", OBJECT, grants.WRITE),
    "GetObject": _r("GetObject", OBJECT, grants.READ, OBJECT, "GetObjectVersion"),
    "HeadObject": _r("GetObject", OBJECT, grants.READ, OBJECT, "GetObjectVersion"),
    "DeleteObject": _r("DeleteObject", OBJECT, grants.WRITE, BUCKET, "DeleteObjectVersion"),
    "GetObjectAttributes": _r("GetObjectAttributes", OBJECT, grants.READ, OBJECT, "GetObjectVersionAttributes"),
    "GetObjectTagging": _r("GetObjectTagging", OBJECT, None, OBJECT, "GetObjectVersionTagging"),
    "PutObjectTagging": _r("PutObjectTagging", OBJECT, None, OBJECT, "PutObjectVersionTagging"),
    "DeleteObjectTagging": _r("DeleteObjectTagging", OBJECT, None, OBJECT, "DeleteObjectVersionTagging"),
    "CreateMultipartUpload": _r("PutObject", OBJECT, grants.WRITE),
    "UploadPart": _r("PutObject", OBJECT, grants.WRITE),
    "UploadPartCopy": _r("PutObject", OBJECT, grants.WRITE),
    "CompleteMultipartUpload": _r("PutObject", OBJECT, grants.WRITE),
    "AbortMultipartUpload": _r("AbortMultipartUpload", OBJECT, grants.WRITE),
    "ListParts": _r("ListMultipartUploadParts", OBJECT, grants.READ),
}

# A copy also reads its source, as GetObject (GetObjectVersion with a versionId) does.
COPY_SOURCE = REQUIREMENTS["GetObject"]
# Managing the bucket policy: its owner may always, whatever the policy says (no one locks the owner out).
POLICY_ACTIONS = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"})


def action_for(requirement: Requirement, versioned: bool) -> str:
    return requirement.version_action if versioned and requirement.version_action else requirement.action


def resource_arn(bucket: str | None, key: str | None) -> str:
    if bucket is None:
        return "*"
    return f"arn:aws:s3:::{bucket}/{key}" if key is not None else f"arn:aws:s3:::{bucket}"
