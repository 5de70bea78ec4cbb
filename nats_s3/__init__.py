"""nats-s3: an S3-compatible gateway whose storage is NATS JetStream."""
