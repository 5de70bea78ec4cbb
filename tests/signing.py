"""Sign arbitrary requests with botocore's own SigV4 signer, to send odd or broken ones by hand."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import socket
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import botocore.auth
import requests
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .support import ACCESS_KEY, SECRET_KEY


class _PayloadHashAuth(S3SigV4Auth):
    """botocore's S3 signer, but with the x-amz-content-sha256 value we choose (botocore would compute it)."""

    def __init__(self, credentials: Credentials, payload_hash: str) -> None:
        super().__init__(credentials, "s3", "us-east-1")
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


def sign(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    payload_hash: str | None = None,
    access: str = ACCESS_KEY,
    secret: str = SECRET_KEY,
) -> dict[str, str]:
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    _PayloadHashAuth(Credentials(access, secret), payload_hash or hashlib.sha256(body).hexdigest()).add_auth(req)
    return dict(req.headers.items())


def signed_request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    payload_hash: str | None = None,
    send_body: bytes | None = None,
    **kw: object,
) -> requests.Response:
    hdrs = sign(method, url, body=body, headers=headers, payload_hash=payload_hash)
    data = body if send_body is None else send_body
    return requests.request(method, url, data=data, headers=hdrs, timeout=30, **kw)  # type: ignore[arg-type]


def presign(url: str, expires: int = 3600, method: str = "GET") -> str:
    req = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1", expires=expires).add_auth(req)
    return str(req.url)


@contextlib.contextmanager
def signing_clock(when: datetime.datetime) -> Iterator[None]:
    """Make botocore sign as if the time were `when` (UTC)."""
    original = botocore.auth.get_current_datetime

    def fake(remove_tzinfo: bool = True) -> datetime.datetime:
        value = when.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if remove_tzinfo else value

    botocore.auth.get_current_datetime = fake
    try:
        yield
    finally:
        botocore.auth.get_current_datetime = original


def start_put(endpoint: str, path: str, size: int, first: bytes) -> socket.socket:
    """A signed PUT of `size` body bytes (UNSIGNED-PAYLOAD) on a raw socket, `first` of them sent:
    the caller sends the rest, or cuts it off."""
    url = endpoint + path
    headers = sign("PUT", url, payload_hash="UNSIGNED-PAYLOAD")
    parts = urlsplit(endpoint)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = [f"PUT {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {size}"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + first)
    return sock


def raw_exchange(
    endpoint: str, method: str, path: str, headers: Mapping[str, bytes] | None = None, body: bytes = b""
) -> tuple[int, dict[bytes, bytes], bytes]:
    """A SigV4-signed request whose header values are bytes sent as they are (Latin-1, invalid UTF-8:
    what http.client and requests cannot send), on a raw socket. Returns status, raw headers, body.
    The signature covers the bytes, as S3 canonicalises them."""
    parts = urlsplit(endpoint)
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    signed = {k.lower(): v for k, v in (headers or {}).items()}
    signed |= {"host": parts.netloc.encode(), "x-amz-date": amz_date.encode(), "x-amz-content-sha256": payload.encode()}
    names = sorted(signed)
    path_only, _, query = path.partition("?")
    canonical = b"\n".join(
        [method.encode(), path_only.encode(), query.encode(),
         b"".join(n.encode() + b":" + signed[n].strip() + b"\n" for n in names), ";".join(names).encode(),
         payload.encode()]
    )  # fmt: skip
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical).hexdigest()])
    key = ("AWS4" + SECRET_KEY).encode()
    for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    ).encode()
    head = f"{method} {path} HTTP/1.1\r\n".encode()
    head += b"".join(k.encode() + b": " + v + b"\r\n" for k, v in signed.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header_block, _, rest = data.partition(b"\r\n\r\n")
    lines = header_block.split(b"\r\n")
    status = int(lines[0].split()[1])
    out = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        out[name.strip().lower()] = value.strip()
    return status, out, rest
