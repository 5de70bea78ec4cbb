"""Server-side AWS Signature Version 4 verification (Authorization header and presigned URLs) for S3."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from nats_s3.protocol.errors import S3Error
from nats_s3.protocol.numbers import parse_int
from nats_s3.protocol.sigv2 import is_presigned_v2, verify_presigned_v2

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_ECDSA_PAYLOAD = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
STREAMING_ECDSA_PAYLOAD_TRAILER = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER"
PAYLOAD_CONSTANTS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_UNSIGNED_PAYLOAD_TRAILER, STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER}
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_DATE8 = re.compile(r"\d{8}")
_SIGNING_KEY_CACHE_MAX = 1024

Q_ALGORITHM = "X-Amz-Algorithm"
Q_CREDENTIAL = "X-Amz-Credential"
Q_DATE = "X-Amz-Date"
Q_EXPIRES = "X-Amz-Expires"
Q_SIGNED_HEADERS = "X-Amz-SignedHeaders"
Q_SIGNATURE = "X-Amz-Signature"
_PRESIGN_PARAMS = (Q_ALGORITHM, Q_CREDENTIAL, Q_DATE, Q_EXPIRES, Q_SIGNED_HEADERS, Q_SIGNATURE)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SignedRequest:
    """What the verifier needs to know about an incoming HTTP request."""

    method: str
    raw_path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]


@dataclass(frozen=True)
class AuthResult:
    access_key: str
    payload_hash: str
    presigned: bool
    amz_date: str
    scope: str
    signing_key: bytes = field(repr=False)
    signature: str


@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def uri_encode(value: str | bytes, *, keep_slash: bool = False) -> str:
    """RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept, space as %20."""
    if isinstance(value, str):
        value = _to_bytes(value)
    return quote(value, safe="/" if keep_slash else "")


def _to_bytes(value: str) -> bytes:
    # Servers decode undecodable request bytes with surrogateescape; turn them back into the original bytes.
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


_CANONICAL_AS_IS = re.compile(r"[A-Za-z0-9/._~-]*")


def canonical_uri(raw_path: str) -> str:
    """Canonical URI for S3: each segment decoded once and re-encoded, never normalised ('//', '..' stay)."""
    if raw_path and _CANONICAL_AS_IS.fullmatch(raw_path):
        return raw_path  # nothing encoded, nothing to encode: the common path is its own canonical form
    raw = _to_bytes(raw_path or "/")
    # Splitting before decoding keeps an encoded %2F inside a segment, as the client meant it.
    return "/".join(quote(unquote_to_bytes(seg), safe="") for seg in raw.split(b"/"))


def canonical_query(query: list[tuple[str, str]], *, exclude: str | None = None) -> str:
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query if k != exclude)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _trim(value: str) -> str:
    # SigV4 "Trimall": strip and collapse inner whitespace runs, the way botocore does.
    if "  " in value or value != value.strip() or "\t" in value:
        return " ".join(value.split())
    return value


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(_to_bytes("AWS4" + secret), _to_bytes(date), hashlib.sha256).digest()
    for part in (region, service, TERMINATOR):
        key = hmac.new(key, _to_bytes(part), hashlib.sha256).digest()
    return key


def _parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    try:  # by position, not strptime: strptime was 4 % of a small GET's CPU (locale lookups per call)
        return datetime(
            int(value[0:4]), int(value[4:6]), int(value[6:8]),
            int(value[9:11]), int(value[11:13]), int(value[13:15]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None


def _validate_payload_hash(value: str) -> str:
    if _HEX64.fullmatch(value):
        return value.lower()
    if value in PAYLOAD_CONSTANTS:
        return value
    if value in (STREAMING_ECDSA_PAYLOAD, STREAMING_ECDSA_PAYLOAD_TRAILER):
        raise S3Error("NotImplemented", f"x-amz-content-sha256 {value} (SigV4a) is not implemented.")
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER "
        "or a valid sha256 value.",
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


class SigV4Verifier:
    """Verifies SigV4-signed S3 requests against a mapping of access key -> secret key.

    `secrets` is read on every request, so a live mapping may be updated in place.
    """

    def __init__(
        self,
        secrets: Mapping[str, str],
        *,
        clock: Callable[[], datetime] = _utcnow,
        max_skew: timedelta = timedelta(minutes=15),
        max_presign_expires: int = 604800,
        require_signed_amz_headers: bool = True,
        region: str | None = None,
        other_regions: frozenset[str] = frozenset(),
    ) -> None:
        """`region`: the region a scope must name (None: any, for tools that verify offline);
        `other_regions`: others it may name as well (the placement map's: a bucket placed in a region
        answers that region, and SDKs then sign for it)."""
        self._region = region
        self._regions = frozenset({region, *other_regions}) if region is not None else frozenset()
        self._secrets = secrets
        self._clock = clock
        self._max_skew = max_skew
        self._max_presign_expires = max_presign_expires
        self._require_signed_amz_headers = require_signed_amz_headers
        # (access key, date, region, service) -> (secret it was derived from, key): keeping the secret
        # lets a rotated secret invalidate the entry without a separate hook.
        self._keys: dict[tuple[str, str, str, str], tuple[str, bytes]] = {}

    def _now(self) -> datetime:
        now = self._clock()
        # A naive clock (datetime.utcnow style) would make every comparison with aware times raise.
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now

    # -- public -----------------------------------------------------------------------------------

    def is_signed(self, req: SignedRequest) -> bool:
        if "authorization" in req.headers:
            return True
        names = {k for k, _ in req.query}
        # A SigV2 presigned URL counts as signed so that verify() refuses it instead of it passing as anonymous.
        return Q_SIGNATURE in names or Q_ALGORITHM in names or ("Signature" in names and "AWSAccessKeyId" in names)

    def verify(self, req: SignedRequest) -> AuthResult:
        names = {k for k, _ in req.query}
        has_query_auth = Q_SIGNATURE in names or Q_ALGORITHM in names
        if "authorization" in req.headers:
            if has_query_auth:
                raise S3Error(
                    "InvalidArgument",
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                    "Signature query string parameter or the Authorization header should be specified",
                    extra={"ArgumentName": "Authorization"},
                )
            return self._verify_header(req)
        if has_query_auth:
            return self._verify_query(req)
        if is_presigned_v2(req.query):
            return self._verify_presigned_v2(req)
        raise S3Error("AccessDenied", "Request is not signed.")

    def _verify_presigned_v2(self, req: SignedRequest) -> AuthResult:
        access_key, signature = verify_presigned_v2(
            req.method, req.raw_path, req.query, req.headers, self._secrets, self._now()
        )
        return AuthResult(
            access_key=access_key,
            payload_hash=UNSIGNED_PAYLOAD,
            presigned=True,
            amz_date="",
            scope="",
            signing_key=b"",
            signature=signature,
        )

    # -- header auth ------------------------------------------------------------------------------

    def _verify_header(self, req: SignedRequest) -> AuthResult:
        cred, signed_headers, signature = self._parse_authorization(req.headers["authorization"])

        content_sha = req.headers.get("x-amz-content-sha256")
        if content_sha is None:
            raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        payload_hash = _validate_payload_hash(content_sha.strip())

        amz_date, when = self._request_time(req.headers)
        if cred.date != amz_date[:8]:
            raise S3Error(
                "AuthorizationHeaderMalformed",
                "The authorization header is malformed; Invalid credential date. Date is not the same as X-Amz-Date.",
            )
        now = self._now()
        if abs(now - when) > self._max_skew:
            raise S3Error(
                "RequestTimeTooSkewed",
                extra={
                    "RequestTime": amz_date,
                    "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "MaxAllowedSkewMilliseconds": str(int(self._max_skew.total_seconds() * 1000)),
                },
            )
        self._check_signed_headers(req, signed_headers, malformed_code="AuthorizationHeaderMalformed")
        return self._signed_by(
            req, cred, amz_date, signed_headers, content_sha.strip(), payload_hash, signature, presigned=False
        )

    def _parse_authorization(self, value: str) -> tuple[_Credential, list[str], str]:
        value = value.strip()
        algorithm, _, rest = value.partition(" ")
        if algorithm != ALGORITHM:
            if algorithm in ("AWS", "AWS4-ECDSA-P256-SHA256") or not algorithm.startswith("AWS4"):
                raise self._unsupported()
            raise S3Error(
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; the authorization header requires "
                f"'{ALGORITHM}' as its algorithm.",
            )
        parts: dict[str, str] = {}
        for item in rest.split(","):
            name, eq, val = item.strip().partition("=")
            name = name.strip()
            if not eq or name in parts:
                raise self._malformed_header("the authorization header has an invalid component.")
            parts[name] = val.strip()
        for required in ("Credential", "SignedHeaders", "Signature"):
            if required not in parts:
                raise self._malformed_header(f"the authorization header is missing {required}.")
        cred = self._parse_credential(parts["Credential"], self._malformed_header)
        self._check_region(cred, self._malformed_header)
        signed = self._parse_signed_headers(parts["SignedHeaders"], self._malformed_header)
        return cred, signed, parts["Signature"]

    @staticmethod
    def _malformed_header(detail: str) -> S3Error:
        return S3Error("AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}")

    @staticmethod
    def _malformed_query(detail: str) -> S3Error:
        return S3Error("AuthorizationQueryParametersError", detail)

    @staticmethod
    def _unsupported() -> S3Error:
        return S3Error(
            "InvalidRequest",
            f"The authorization mechanism you have provided is not supported. Please use {ALGORITHM}.",
        )

    def _check_region(self, cred: _Credential, error: Callable[[str], S3Error]) -> None:
        """A scope for another region is refused with the region to use, which SDKs redirect on."""
        if self._region is not None and cred.region not in self._regions:
            err = error(f"the region '{cred.region[:64]}' is wrong; expecting '{self._region}'")
            err.extra["Region"] = self._region
            raise err

    @staticmethod
    def _parse_credential(value: str, error: Callable[[str], S3Error]) -> _Credential:
        # Split from the right: the four scope fields never contain '/', the access key is whatever is left.
        fields = value.rsplit("/", 4)
        if len(fields) != 5 or not fields[0]:
            raise error(f'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/{TERMINATOR}".')
        access_key, date, region, service, terminator = fields
        if not _DATE8.fullmatch(date):
            raise error(f'incorrect date format "{date}". This date in the credential must be in YYYYMMDD.')
        if not region:
            raise error("the region in the Credential is empty.")
        if service != SERVICE:
            raise error(f'incorrect service "{service}". This endpoint belongs to "{SERVICE}".')
        if terminator != TERMINATOR:
            raise error(f'incorrect terminal "{terminator}". This endpoint uses "{TERMINATOR}".')
        return _Credential(access_key, date, region, service)

    @staticmethod
    def _parse_signed_headers(value: str, error: Callable[[str], S3Error]) -> list[str]:
        names = [n.strip().lower() for n in value.split(";")]
        if not names or any(not n for n in names):
            raise error("the SignedHeaders component is invalid.")
        return names

    def _request_time(self, headers: Mapping[str, str]) -> tuple[str, datetime]:
        raw = headers.get("x-amz-date")
        if raw is not None:
            when = _parse_amz_date(raw.strip())
            if when is not None:
                return raw.strip(), when
        else:
            date_header = headers.get("date")
            if date_header is not None:
                try:
                    parsed = parsedate_to_datetime(date_header.strip())
                    if parsed.tzinfo is None:
                        parsed = parsed.replace(tzinfo=UTC)
                    parsed = parsed.astimezone(UTC)
                except (TypeError, ValueError, IndexError, OverflowError):
                    parsed = None
                if parsed is not None:
                    return parsed.strftime(AMZ_DATE_FORMAT), parsed
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")

    # -- presigned URLs ---------------------------------------------------------------------------

    def _verify_query(self, req: SignedRequest) -> AuthResult:
        params: dict[str, str] = {}
        for name, value in req.query:
            if name in _PRESIGN_PARAMS:
                if name in params:
                    raise self._malformed_query(f"The {name} parameter must be given only once.")
                params[name] = value
        missing = [n for n in _PRESIGN_PARAMS if n not in params]
        if missing:
            raise self._malformed_query(
                "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                "X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
            )
        if params[Q_ALGORITHM] != ALGORITHM:
            raise self._malformed_query(f'X-Amz-Algorithm only supports "{ALGORITHM}"')

        def cred_error(detail: str) -> S3Error:
            return self._malformed_query(f"Error parsing the X-Amz-Credential parameter; {detail}")

        cred = self._parse_credential(params[Q_CREDENTIAL], cred_error)
        self._check_region(cred, cred_error)
        signed_headers = self._parse_signed_headers(
            params[Q_SIGNED_HEADERS], lambda d: self._malformed_query(f"X-Amz-SignedHeaders: {d}")
        )
        amz_date = params[Q_DATE]
        when = _parse_amz_date(amz_date)
        if when is None:
            raise self._malformed_query("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        expires = parse_int(params[Q_EXPIRES].strip())
        if expires is None:
            raise self._malformed_query("X-Amz-Expires should be a number")
        # S3 refuses a URL that could never have been valid as it refuses an expired one: 403, not 400.
        if expires < 1:
            raise S3Error("AccessDenied", "X-Amz-Expires must be a positive number of seconds.")
        if expires > self._max_presign_expires:
            raise S3Error(
                "AccessDenied",
                f"X-Amz-Expires must be less than a week (in seconds) that is {self._max_presign_expires}.",
            )
        if cred.date != amz_date[:8]:
            raise cred_error("Invalid credential date. Date is not the same as X-Amz-Date.")

        now = self._now()
        if when - now > self._max_skew:
            raise S3Error("AccessDenied", "Request is not valid yet")
        if now - when > timedelta(seconds=expires):
            raise S3Error(
                "AccessDenied",
                "Request has expired",
                extra={
                    "X-Amz-Expires": str(expires),
                    "Expires": (when + timedelta(seconds=expires)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )

        # botocore signs whatever x-amz-content-sha256 header it sends; other SDKs hoist it into the query.
        content_sha = req.headers.get("x-amz-content-sha256")
        if content_sha is None:
            for name, value in req.query:
                if name.lower() == "x-amz-content-sha256":
                    content_sha = value
                    break
        signed_payload = content_sha.strip() if content_sha is not None else UNSIGNED_PAYLOAD
        payload_hash = _validate_payload_hash(signed_payload)

        self._check_signed_headers(req, signed_headers, malformed_code="AuthorizationQueryParametersError")
        return self._signed_by(
            req, cred, amz_date, signed_headers, signed_payload, payload_hash, params[Q_SIGNATURE], presigned=True
        )

    # -- shared -----------------------------------------------------------------------------------

    def _signed_by(
        self,
        req: SignedRequest,
        cred: _Credential,
        amz_date: str,
        signed_headers: list[str],
        signed_payload: str,
        payload_hash: str,
        signature: str,
        *,
        presigned: bool,
    ) -> AuthResult:
        """Check the signature (header or query form) and describe who signed what."""
        key = self._signing_key(cred)
        self._check_signature(
            req,
            cred=cred,
            key=key,
            amz_date=amz_date,
            signed_headers=signed_headers,
            payload_hash=signed_payload,
            signature=signature,
            exclude_query=Q_SIGNATURE if presigned else None,
        )
        return AuthResult(
            access_key=cred.access_key,
            payload_hash=payload_hash,
            presigned=presigned,
            amz_date=amz_date,
            scope=cred.scope,
            signing_key=key,
            signature=signature,
        )

    def _check_signed_headers(self, req: SignedRequest, signed: list[str], *, malformed_code: str) -> None:
        if "host" not in signed:
            if malformed_code == "AuthorizationHeaderMalformed":
                raise self._malformed_header("the host header must be signed.")
            raise self._malformed_query("X-Amz-SignedHeaders must contain host.")
        if self._require_signed_amz_headers:
            signed_set = set(signed)
            unsigned = sorted(
                name
                for name in req.headers
                if name.startswith("x-amz-") and name not in signed_set and name != "x-amz-content-sha256"
            )
            if unsigned:
                raise S3Error(
                    "AccessDenied",
                    "There were headers present in the request which were not signed",
                    extra={"HeadersNotSigned": ", ".join(unsigned)},
                )

    def _signing_key(self, cred: _Credential) -> bytes:
        secret = self._secrets.get(cred.access_key)
        if secret is None:
            raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": cred.access_key})
        cache_key = (cred.access_key, cred.date, cred.region, cred.service)
        cached = self._keys.get(cache_key)
        if cached is not None and hmac.compare_digest(_to_bytes(cached[0]), _to_bytes(secret)):
            return cached[1]
        key = derive_signing_key(secret, cred.date, cred.region, cred.service)
        if len(self._keys) >= _SIGNING_KEY_CACHE_MAX:
            # Keys are per day, so a wholesale reset is cheap and keeps the cache bounded.
            self._keys.clear()
        self._keys[cache_key] = (secret, key)
        return key

    def _check_signature(
        self,
        req: SignedRequest,
        *,
        cred: _Credential,
        key: bytes,
        amz_date: str,
        signed_headers: list[str],
        payload_hash: str,
        signature: str,
        exclude_query: str | None,
    ) -> None:
        method = req.method.upper()
        query = canonical_query(req.query, exclude=exclude_query)
        headers = "".join(f"{n}:{_trim(req.headers.get(n, ''))}\n" for n in signed_headers)
        tail = f"{query}\n{headers}\n{';'.join(signed_headers)}\n{payload_hash}"
        provided = _to_bytes(signature)

        uris = [canonical_uri(req.raw_path)]
        # A client that signed its path exactly as sent (botocore does not re-encode) but used a
        # non-canonical encoding (say %7E for '~') signed the raw path; accept that form too.
        raw = req.raw_path or "/"
        if raw != uris[0]:
            uris.append(raw)
        first: tuple[str, str] | None = None
        for uri in uris:
            canonical_request = f"{method}\n{uri}\n{tail}"
            string_to_sign = (
                f"{ALGORITHM}\n{amz_date}\n{cred.scope}\n{hashlib.sha256(_to_bytes(canonical_request)).hexdigest()}"
            )
            expected = hmac.new(key, _to_bytes(string_to_sign), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode("ascii"), provided):
                return
            if first is None:
                first = (canonical_request, string_to_sign)
        assert first is not None
        raise S3Error(
            "SignatureDoesNotMatch",
            extra={
                "AWSAccessKeyId": cred.access_key,
                "StringToSign": first[1],
                "SignatureProvided": signature,
                "CanonicalRequest": first[0],
            },
        )
