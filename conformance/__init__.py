"""Conformance suite: real S3 clients (AWS CLI, boto3, rclone, s3cmd, minio-py) against the gateway."""
