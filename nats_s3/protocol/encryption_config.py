"""A bucket's default encryption (Put/Get/DeleteBucketEncryption): the ServerSideEncryptionConfiguration
document, parsed and validated as S3 does it, and rendered back."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import S3Error
from .sse_headers import AES256, KMS, UNSUPPORTED_MODES
from .xml import XmlChild, child_text, children, local_name, parse_xml

BLOCKABLE = ("NONE", "SSE-C")
MAX_KEY_ID = 2048


@dataclass(frozen=True, slots=True)
class EncryptionConfig:
    """One rule, as S3 allows: the default applied to writes that name no encryption, and which
    encryption types writes may not ask for (SSE-C, or none blocked)."""

    algorithm: str | None = None  # AES256 | aws:kms; None: no default (a rule that only blocks)
    kms_key_id: str | None = None
    bucket_key: bool = False
    blocked: tuple[str, ...] = ()  # EncryptionType values, as put

    @property
    def blocks_customer_keys(self) -> bool:
        return "SSE-C" in self.blocked

    def as_dict(self) -> dict[str, object]:
        return {
            "algorithm": self.algorithm, "kms_key_id": self.kms_key_id, "bucket_key": self.bucket_key,
            "blocked": list(self.blocked),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> EncryptionConfig:
        algorithm, key_id, blocked = data.get("algorithm"), data.get("kms_key_id"), data.get("blocked") or []
        return cls(
            algorithm if isinstance(algorithm, str) else None,
            key_id if isinstance(key_id, str) else None,
            data.get("bucket_key") is True,
            tuple(str(b) for b in blocked) if isinstance(blocked, list) else (),
        )

    def render(self) -> list[XmlChild]:
        rule: list[XmlChild] = []
        if self.algorithm is not None:
            default: list[XmlChild] = [("SSEAlgorithm", self.algorithm)]
            if self.kms_key_id is not None:
                default.append(("KMSMasterKeyID", self.kms_key_id))
            rule.append(("ApplyServerSideEncryptionByDefault", default))
        if self.blocked:
            rule.append(("BlockedEncryptionTypes", [("EncryptionType", b) for b in self.blocked]))
        rule.append(("BucketKeyEnabled", self.bucket_key))
        return [("Rule", rule)]


def _malformed(message: str | None = None) -> S3Error:
    return S3Error("MalformedXML", message)


def parse_encryption_config(body: bytes) -> EncryptionConfig:
    root = parse_xml(body)
    if local_name(root) != "ServerSideEncryptionConfiguration":
        raise _malformed()
    rules = children(root, "Rule")
    if len(rules) != 1:
        raise _malformed()
    rule = rules[0]
    algorithm: str | None = None
    key_id: str | None = None
    defaults = children(rule, "ApplyServerSideEncryptionByDefault")
    if len(defaults) > 1:
        raise _malformed()
    if defaults:
        algorithm = (child_text(defaults[0], "SSEAlgorithm") or "").strip()
        key_id = child_text(defaults[0], "KMSMasterKeyID")
        key_id = key_id.strip() if key_id is not None else None
        if not algorithm:
            raise _malformed()
        if algorithm in UNSUPPORTED_MODES:
            raise S3Error("NotImplemented", f"Server-side encryption {algorithm} is not implemented by this gateway.")
        if algorithm not in (AES256, KMS):
            raise S3Error(
                "InvalidArgument",
                "The encryption method specified is not supported",
                extra={"ArgumentName": "SSEAlgorithm", "ArgumentValue": algorithm},
            )
        if key_id is not None and algorithm != KMS:
            raise S3Error(
                "InvalidArgument",
                "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse",
                extra={"ArgumentName": "ApplyServerSideEncryptionByDefault"},
            )
        if key_id is not None and not 1 <= len(key_id) <= MAX_KEY_ID:
            raise S3Error("KMS.NotFoundException", f"Invalid keyId '{key_id}'")
    blocked: list[str] = []
    for element in children(rule, "BlockedEncryptionTypes"):
        for item in children(element, "EncryptionType"):
            value = (item.text or "").strip()
            if value not in BLOCKABLE:
                raise S3Error(
                    "InvalidArgument",
                    f"Invalid EncryptionType: {value}; use NONE or SSE-C.",
                    extra={"ArgumentName": "EncryptionType", "ArgumentValue": value},
                )
            if value not in blocked:
                blocked.append(value)
    if "NONE" in blocked and len(blocked) > 1:
        raise S3Error("InvalidArgument", "EncryptionType NONE cannot be combined with other types.")
    if algorithm is None and not blocked:
        raise _malformed()
    enabled = (child_text(rule, "BucketKeyEnabled") or "false").strip().lower()
    if enabled not in ("true", "false"):
        raise _malformed()
    return EncryptionConfig(algorithm, key_id, enabled == "true", tuple(blocked))
