"""Put/Get/DeleteBucketEncryption: a bucket's default encryption, kept in its configuration record."""

from __future__ import annotations

from aiohttp import web

from ..protocol.encryption_config import EncryptionConfig, parse_encryption_config
from ..protocol.sse_headers import KMS
from .body import read_request_xml
from .bucket_setting import clear_setting, stored_setting
from .context import S3Context
from .encryption import master_key_id, master_keys
from .services import Services

MAX_ENCRYPTION_BODY = 64 * 1024


async def get_bucket_encryption(services: Services, ctx: S3Context) -> web.Response:
    stored = await stored_setting(services, ctx, "encryption", "ServerSideEncryptionConfigurationNotFoundError")
    assert isinstance(stored, dict)
    return ctx.xml("ServerSideEncryptionConfiguration", EncryptionConfig.from_dict(stored).render())


async def put_bucket_encryption(services: Services, ctx: S3Context) -> web.Response:
    body = await read_request_xml(ctx, MAX_ENCRYPTION_BODY, integrity_required=True)
    await services.store.head_bucket(ctx.bucket)
    config = parse_encryption_config(body)
    if config.algorithm is not None:
        # Refused now rather than at every write: a default this gateway cannot apply (S3 itself does
        # not check the KMS key here; its writes fail later with KMS.NotFoundException).
        master_keys(services)
        if config.algorithm == KMS and config.kms_key_id is not None:
            master_key_id(services, config.kms_key_id)
    await services.store.configs.set_fields(ctx.bucket, encryption=config.as_dict())
    return ctx.empty()


async def delete_bucket_encryption(services: Services, ctx: S3Context) -> web.Response:
    return await clear_setting(services, ctx, "encryption")
