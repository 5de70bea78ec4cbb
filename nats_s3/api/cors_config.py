"""Put/Get/DeleteBucketCors: a bucket's CORS rules, kept in its configuration record."""

from __future__ import annotations

from aiohttp import web

from ..protocol.cors import CorsRule, parse_cors, render_cors
from .body import read_request_xml
from .bucket_setting import clear_setting, stored_setting
from .context import S3Context
from .services import Services

MAX_CORS_BODY = 64 * 1024


async def get_bucket_cors(services: Services, ctx: S3Context) -> web.Response:
    stored = await stored_setting(services, ctx, "cors", "NoSuchCORSConfiguration")
    assert isinstance(stored, list)
    return ctx.xml("CORSConfiguration", render_cors([CorsRule.from_dict(rule) for rule in stored]))


async def put_bucket_cors(services: Services, ctx: S3Context) -> web.Response:
    # S3 insists on Content-MD5 (or a checksum header) for this body.
    body = await read_request_xml(ctx, MAX_CORS_BODY, integrity_required=True)
    rules = parse_cors(body)
    await services.store.head_bucket(ctx.bucket)
    await services.store.configs.set_fields(ctx.bucket, cors=[rule.as_dict() for rule in rules])
    return ctx.empty()


async def delete_bucket_cors(services: Services, ctx: S3Context) -> web.Response:
    return await clear_setting(services, ctx, "cors")
