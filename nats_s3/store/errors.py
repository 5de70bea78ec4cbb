"""Errors the storage layer raises; the API layer maps them to S3 errors."""


class StoreError(Exception):
    """Base of every storage-layer error."""


class BucketNotFound(StoreError):
    pass


class BucketAlreadyExists(StoreError):
    pass


class BucketNotEmpty(StoreError):
    pass


class ObjectNotFound(StoreError):
    pass


class VersionNotFound(StoreError):
    """No version of the key has that version id (never had one, or it was deleted)."""


class LatestIsDeleteMarker(StoreError):
    """The key's latest version is a delete marker (S3: 404 with x-amz-delete-marker)."""

    def __init__(self, key: str, version_id: str, last_modified: object) -> None:
        super().__init__(key)
        self.version_id = version_id
        self.last_modified = last_modified


class VersionIsDeleteMarker(StoreError):
    """The version asked for by id is a delete marker (S3: 405 for reads)."""

    def __init__(self, key: str, version_id: str, last_modified: object) -> None:
        super().__init__(key)
        self.version_id = version_id
        self.last_modified = last_modified


class BucketBusy(StoreError):
    """The bucket is being deleted: writes are held off until DeleteBucket decides."""


class UnreadableRecord(StoreError):
    """A record in NATS does not parse; whatever depends on it stops rather than guesses."""


class PreconditionFailed(StoreError):
    """A conditional write lost: the key's current version is not the expected one."""


class WriteConflict(StoreError):
    """Concurrent writers kept replacing the key; the write was not applied."""


class StoreUnavailable(StoreError):
    """NATS or JetStream did not answer."""


class CorruptObject(StoreError):
    """Stored chunks do not match the object's metadata (missing chunks, digest mismatch)."""


class UploadNotFound(StoreError):
    """No multipart upload with that id (never created, aborted, or expired)."""


class UploadBusy(StoreError):
    """Another CompleteMultipartUpload of the upload is under way."""


class InvalidPart(StoreError):
    """A part named in CompleteMultipartUpload was not uploaded, or its ETag differs."""


class PartTooSmall(StoreError):
    """A part other than the last is smaller than the S3 minimum (5 MiB)."""


class QuotaExceeded(StoreError):
    """A write would take a bucket, an owner or the gateway past a storage quota (the message says which)."""


class InvalidPlacement(StoreError):
    """A bucket's placement names a region the placement map does not have, or NATS cannot place it."""


class ReplicationRefused(StoreError):
    """A replication change that cannot be made as asked (the message says why): replicating onto a
    bucket that exists, promoting or limiting a bucket that is not a replica or is one."""
