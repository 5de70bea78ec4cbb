"""Reading and clearing one setting of a bucket's configuration record: the shape every
Get/Delete<Setting> operation shares (the bucket must exist; an unset setting is the operation's 404)."""

from __future__ import annotations

from aiohttp import web

from ..protocol.errors import S3Error
from .context import S3Context
from .services import Services


async def stored_setting(services: Services, ctx: S3Context, name: str, missing: str) -> object:
    """The setting `name` of the request's bucket; S3Error `missing` when it has none."""
    await services.store.head_bucket(ctx.bucket)
    value = getattr(services.store.configs.get(ctx.bucket), name)
    if value is None:
        raise S3Error(missing, extra={"BucketName": ctx.bucket})
    return value


async def clear_setting(services: Services, ctx: S3Context, name: str) -> web.Response:
    """Delete<Setting>: 204 whether or not it was set."""
    await services.store.head_bucket(ctx.bucket)
    await services.store.configs.set_fields(ctx.bucket, **{name: None})
    return ctx.empty(204)
