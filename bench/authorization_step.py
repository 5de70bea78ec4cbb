"""What judging a request costs, in-process: the authorization step's decision for the common cases,
without HTTP or NATS, so the figure is the step's own (a request's whole cost is in request_cpu.py).

    .venv/bin/python bench/authorization_step.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from nats_s3.auth.access import judge, quick_allow
from nats_s3.auth.actions import REQUIREMENTS, action_for
from nats_s3.auth.policy import policy_from_document
from nats_s3.auth.principals import Principal
from nats_s3.store.bucket_config import BucketConfig

OWNER = Principal("owner-key", "owner-id", "owner")
ADMIN = Principal("admin-key", "admin-id", "admin", admin=True)
SCOPED_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::b/datasets/*"},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
     "Condition": {"StringLike": {"s3:prefix": "datasets/*"}}}]}  # fmt: skip
SCOPED = Principal("scoped-key", "scoped-id", "scoped", policy=policy_from_document(SCOPED_POLICY, None))
PLAIN = BucketConfig(name="b", owner="owner-id")
WITH_POLICY = BucketConfig(name="b", owner="owner-id", policy=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    {"Effect": "Allow", "Principal": {"AWS": "reader-id"}, "Action": "s3:GetObject",
     "Resource": "arn:aws:s3:::b/*"}]}))  # fmt: skip
CONTEXT = {"aws:securetransport": ["true"], "aws:sourceip": ["127.0.0.1"], "aws:username": ["scoped"]}


def per_call(fn: Callable[[], object], n: int = 200_000) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    get = REQUIREMENTS["GetObject"]
    action = action_for(get, False)

    def decide(principal: Principal, config: BucketConfig, multi_user: bool) -> Callable[[], object]:
        return lambda: (
            quick_allow(principal, multi_user, config)
            or judge(principal, multi_user, get, action, "b", "datasets/k", config, lambda: CONTEXT)
        )

    cases = {
        "one-user mode, no policy (the default)": decide(OWNER, PLAIN, False),
        "admin, no policy": decide(ADMIN, PLAIN, True),
        "owner, no policy": decide(OWNER, PLAIN, True),
        "owner, bucket policy (TLS deny + grant)": decide(OWNER, WITH_POLICY, True),
        "scoped key, its policy": decide(SCOPED, PLAIN, True),
        "scoped key, its policy + bucket policy": decide(SCOPED, WITH_POLICY, True),
    }
    print("authorization decision, µs per request (GetObject)")
    for name, fn in cases.items():
        print(f"  {name:<45} {per_call(fn):6.2f}")


if __name__ == "__main__":
    main()
