"""Who may do what: the request's operation judged for its caller (auth/access.py) on the bucket's
configuration from the in-memory cache. A key with every right on a bucket without a policy costs one
dictionary lookup; the object is read only when an ACL on it or a tag condition has to decide."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aiohttp import web

from ...auth import grants
from ...auth.access import ObjectFacts, Verdict, judge, quick_allow
from ...auth.actions import COPY_SOURCE, OBJECT, REQUIREMENTS, Requirement, action_for
from ...auth.principals import Principal
from ...protocol.errors import S3Error
from ...protocol.headers import ACL, OWNER, TAGGING, canned_acl
from ...store import errors as store_errors
from ...store.bucket_config import BucketConfig
from ..acl import check_acl_settable
from ..objects import parse_copy_source
from ..services import Services
from ..versions import version_id_arg
from .errors import store_error_to_s3
from .exchange import Exchange, Next, Step

# Request headers a policy can test as s3:<header name>.
_HEADER_KEYS = (
    "x-amz-acl", "x-amz-content-sha256", "x-amz-copy-source", "x-amz-metadata-directive",
    "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-storage-class",
    "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp", "x-amz-grant-write-acp",
    "x-amz-grant-full-control",
)  # fmt: skip
_LISTINGS = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"})
_LIST_BUCKET = REQUIREMENTS["ListObjects"]
_NO_OBJECT = ObjectFacts("private", "", {})
# Writes whose headers may set an ACL (Put*Acl check theirs, headers or body, in their handlers).
_WRITES_WITH_ACL = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})


def request_context(exchange: Exchange, principal: Principal | None) -> dict[str, list[str]]:
    """The condition keys of a request (lower-case names), as AWS fills them for S3."""
    request, headers, auth = exchange.request, exchange.headers, exchange.auth
    now = time.time()
    context: dict[str, list[str]] = {
        "aws:securetransport": ["true" if request.secure else "false"],
        "aws:currenttime": [datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")],
        "aws:epochtime": [str(int(now))],
        "aws:principaltype": ["User" if principal is not None else "Anonymous"],
    }
    if request.remote:
        context["aws:sourceip"] = [request.remote]
    if principal is not None:
        context["aws:userid"] = [principal.user_id]
        context["aws:username"] = [principal.display_name]
    if auth is not None:
        context["s3:signatureversion"] = ["AWS4-HMAC-SHA256" if auth.scope else "AWS"]
        context["s3:authtype"] = ["REST-QUERY-STRING" if auth.presigned else "REST-HEADER"]
    for name, key in (("user-agent", "aws:useragent"), ("referer", "aws:referer")):
        if name in headers:
            context[key] = [headers[name]]
    for name in _HEADER_KEYS:
        if name in headers:
            context["s3:" + name] = [headers[name]]
    if exchange.operation in _LISTINGS:
        for name in ("prefix", "delimiter", "max-keys"):
            if name in exchange.query:
                context["s3:" + name] = [exchange.query[name]]
    if "versionId" in exchange.query:
        context["s3:versionid"] = [exchange.query["versionId"]]
    if TAGGING in headers:
        tags = parse_qsl(headers[TAGGING], keep_blank_values=True)
        context["s3:requestobjecttagkeys"] = [k for k, _ in tags]
        for k, v in tags:
            context[f"s3:requestobjecttag/{k}"] = [v]
    return context


def object_facts(headers: dict[str, str]) -> ObjectFacts:
    return ObjectFacts(headers.get(ACL, "private"), headers.get(OWNER, ""), dict(parse_qsl(headers.get(TAGGING, ""))))


class Authorization(Step):
    def __init__(self, services: Callable[[], Services | None]) -> None:
        self.services = services

    async def __call__(self, exchange: Exchange, next: Next) -> web.StreamResponse:
        services = self.services()
        route = exchange.route
        if services is None or route is None:
            if exchange.auth is None:
                raise S3Error("AccessDenied")
            return await next(exchange)  # dispatch answers 503
        principals = services.principals
        principal = principals.get(exchange.auth.access_key) if exchange.auth is not None else None
        exchange.principal = principal
        configs = services.store.configs
        bucket = route.bucket
        config = configs.cached(bucket) if bucket is not None else None
        operation = exchange.operation
        if config is not None and operation != "CreateBucket":
            self._check_header_acl(exchange, config)
        copying = operation in ("CopyObject", "UploadPartCopy")
        if quick_allow(principal, principals.multi_user, config) and not copying:
            return await next(exchange)
        judge_one = Judgement(services, exchange, principal)
        if bucket is not None and config is None and operation != "CreateBucket":
            config = await judge_one.load_config(bucket)
        requirement = REQUIREMENTS[operation]
        if operation != "DeleteObjects":  # judged key by key by its handler
            await judge_one.require(requirement, bucket, route.key, config, exchange.query.get("versionId"))
        else:
            exchange.may_delete = judge_one.may_delete
        if copying:
            source = parse_copy_source(exchange.headers["x-amz-copy-source"])
            source_config = configs.cached(source.bucket)
            if not quick_allow(principal, principals.multi_user, source_config):
                if source_config is None:
                    source_config = await judge_one.load_config(source.bucket)
                await judge_one.require(COPY_SOURCE, source.bucket, source.key, source_config, source.version_id)
        return await next(exchange)

    @staticmethod
    def _check_header_acl(exchange: Exchange, config: BucketConfig) -> None:
        """An ACL set by a write's headers: refused where the bucket turns ACLs off or blocks public ones."""
        if exchange.operation not in _WRITES_WITH_ACL:
            return
        headers = exchange.headers
        if ACL not in headers and not any(name in headers for name in grants.GRANT_HEADERS):
            return
        check_acl_settable(config, canned_acl(headers) or "private")


class Judgement:
    """One request's questions to auth/access.py, with what answering them needs from the store."""

    def __init__(self, services: Services, exchange: Exchange, principal: Principal | None) -> None:
        self.services = services
        self.exchange = exchange
        self.principal = principal
        self._context: dict[str, list[str]] | None = None

    def context(self) -> dict[str, list[str]]:
        """The request's condition keys, worked out the first time a policy needs them."""
        if self._context is None:
            self._context = request_context(self.exchange, self.principal)
        return self._context

    async def load_config(self, bucket: str) -> BucketConfig:
        """A bucket the cache has no record of: NoSuchBucket if there is none, else its record (made
        now for a bucket from before records existed; it has no owner, so only admins own it)."""
        try:
            await self.services.store.ensure_ready(bucket)
        except store_errors.StoreError as exc:
            raise store_error_to_s3(exc, bucket, None, self.exchange.request.method) from exc
        return self.services.store.configs.get(bucket)

    def _verdict(
        self, requirement: Requirement, bucket: str | None, key: str | None, config: BucketConfig | None,
        versioned: bool, obj: ObjectFacts | None = None,
    ) -> Verdict:  # fmt: skip
        action = action_for(requirement, versioned)
        multi_user = self.services.principals.multi_user
        return judge(self.principal, multi_user, requirement, action, bucket, key, config, self.context, obj)

    async def allowed(
        self, requirement: Requirement, bucket: str | None, key: str | None, config: BucketConfig | None,
        version: str | None,
    ) -> bool:  # fmt: skip
        verdict = self._verdict(requirement, bucket, key, config, version is not None)
        if verdict is Verdict.NEED_OBJECT:
            assert bucket is not None and key is not None
            try:
                info = await self.services.store.head_object(bucket, key, version_id_arg(version))
            except (store_errors.ObjectNotFound, store_errors.VersionNotFound, store_errors.LatestIsDeleteMarker,
                    store_errors.VersionIsDeleteMarker):  # fmt: skip
                # No object: judged as one with no grants and no tags. A refused read still learns that it
                # is missing if it may list the bucket (S3's 404 rather than 403).
                missing = self._verdict(requirement, bucket, key, config, version is not None, _NO_OBJECT)
                if missing is Verdict.ALLOW:
                    return True
                return (
                    requirement.acl_on == OBJECT
                    and self._verdict(_LIST_BUCKET, bucket, None, config, False) is Verdict.ALLOW
                )
            except store_errors.StoreError as exc:
                raise store_error_to_s3(exc, bucket, key, self.exchange.request.method) from exc
            verdict = self._verdict(requirement, bucket, key, config, version is not None, object_facts(info.headers))
        return verdict is Verdict.ALLOW

    async def require(
        self, requirement: Requirement, bucket: str | None, key: str | None, config: BucketConfig | None,
        version: str | None,
    ) -> None:  # fmt: skip
        if not await self.allowed(requirement, bucket, key, config, version):
            raise S3Error("AccessDenied")

    async def may_delete(self, key: str, version: str | None) -> bool:
        """DeleteObjects asks this for each of its keys."""
        assert self.exchange.route is not None and self.exchange.route.bucket is not None
        bucket = self.exchange.route.bucket
        config = self.services.store.configs.get(bucket)
        return await self.allowed(REQUIREMENTS["DeleteObject"], bucket, key, config, version)
