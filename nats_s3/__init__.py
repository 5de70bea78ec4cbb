"""nats-s3: an S3-compatible gateway whose storage is NATS JetStream."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nats-s3")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
