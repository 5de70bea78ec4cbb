"""`nats-s3 admin`: operators' commands that talk to NATS directly, with the gateway's connection flags."""
