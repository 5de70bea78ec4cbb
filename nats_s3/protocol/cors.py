"""CORS as S3 does it: a bucket's CORSConfiguration (parsed and validated from XML, rendered back) and
matching a request's Origin, method and headers against its rules."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from .errors import S3Error
from .numbers import parse_uint
from .xml import XmlChild, child_text, children, local_name, parse_xml

METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
MAX_RULES = 100
MAX_ID = 255


@dataclass(frozen=True, slots=True)
class CorsRule:
    allowed_methods: tuple[str, ...]
    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    rule_id: str | None = None
    _origin_patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "methods": list(self.allowed_methods), "origins": list(self.allowed_origins),
            "headers": list(self.allowed_headers), "expose": list(self.expose_headers),
            "max_age": self.max_age, "id": self.rule_id,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CorsRule:
        def strings(name: str) -> tuple[str, ...]:
            value = data.get(name) or []
            return tuple(str(v) for v in value) if isinstance(value, list) else ()

        max_age = data.get("max_age")
        rule_id = data.get("id")
        return make_rule(
            strings("methods"), strings("origins"), strings("headers"), strings("expose"),
            max_age if isinstance(max_age, int) else None, rule_id if isinstance(rule_id, str) else None,
        )  # fmt: skip

    def matches_origin(self, origin: str) -> bool:
        return any(p.fullmatch(origin) for p in self._origin_patterns)

    def allows_headers(self, requested: list[str]) -> bool:
        patterns = [h.lower() for h in self.allowed_headers]
        return all(any(fnmatch.fnmatchcase(h, p) for p in patterns) for h in requested)


def make_rule(
    methods: tuple[str, ...],
    origins: tuple[str, ...],
    headers: tuple[str, ...] = (),
    expose: tuple[str, ...] = (),
    max_age: int | None = None,
    rule_id: str | None = None,
) -> CorsRule:
    # An AllowedOrigin may hold one '*' standing for any characters; nothing else is special.
    patterns = tuple(re.compile(".*".join(re.escape(part) for part in o.split("*"))) for o in origins)
    return CorsRule(methods, origins, headers, expose, max_age, rule_id, patterns)


def parse_cors(body: bytes) -> list[CorsRule]:
    """A PutBucketCors body, validated as S3 validates it."""
    root = parse_xml(body)
    if local_name(root) != "CORSConfiguration":
        raise S3Error("MalformedXML")
    elements = children(root, "CORSRule")
    if not elements or len(elements) > MAX_RULES:
        raise S3Error("MalformedXML")
    rules: list[CorsRule] = []
    for element in elements:
        methods = tuple((e.text or "").strip() for e in children(element, "AllowedMethod"))
        origins = tuple((e.text or "").strip() for e in children(element, "AllowedOrigin"))
        if not methods or not origins or any(not o for o in origins):
            raise S3Error("MalformedXML")
        for method in methods:
            if method not in METHODS:
                raise S3Error(
                    "InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
                )
        for origin in origins:
            if origin.count("*") > 1:
                raise S3Error("InvalidRequest", f'AllowedOrigin "{origin[:100]}" can not have more than one wildcard.')
        headers = tuple((e.text or "").strip() for e in children(element, "AllowedHeader"))
        for header in headers:
            if header.count("*") > 1:
                raise S3Error("InvalidRequest", f'AllowedHeader "{header[:100]}" can not have more than one wildcard.')
        expose = tuple((e.text or "").strip() for e in children(element, "ExposeHeader"))
        raw_age = child_text(element, "MaxAgeSeconds")
        max_age = None
        if raw_age is not None:
            max_age = parse_uint(raw_age.strip(), 10)
            if max_age is None:
                raise S3Error("MalformedXML")
        rule_id = child_text(element, "ID")
        if rule_id is not None and len(rule_id) > MAX_ID:
            raise S3Error("InvalidArgument", f"The ID of a CORS rule must be at most {MAX_ID} characters.")
        rules.append(make_rule(methods, origins, headers, expose, max_age, rule_id))
    return rules


def render_cors(rules: list[CorsRule]) -> list[XmlChild]:
    items: list[XmlChild] = []
    for rule in rules:
        entry: list[XmlChild] = []
        if rule.rule_id is not None:
            entry.append(("ID", rule.rule_id))
        entry += [("AllowedHeader", h) for h in rule.allowed_headers]
        entry += [("AllowedMethod", m) for m in rule.allowed_methods]
        entry += [("AllowedOrigin", o) for o in rule.allowed_origins]
        entry += [("ExposeHeader", h) for h in rule.expose_headers]
        if rule.max_age is not None:
            entry.append(("MaxAgeSeconds", rule.max_age))
        items.append(("CORSRule", entry))
    return items


def requested_headers(value: str | None) -> list[str]:
    return [h.strip().lower() for h in (value or "").split(",") if h.strip()]


def find_rule(rules: list[CorsRule], origin: str, method: str, headers: list[str]) -> CorsRule | None:
    """The first rule that allows this origin, method and (for a preflight) these request headers."""
    for rule in rules:
        if method in rule.allowed_methods and rule.matches_origin(origin) and rule.allows_headers(headers):
            return rule
    return None


def response_headers(rule: CorsRule, origin: str, *, preflight: bool, headers: list[str]) -> dict[str, str]:
    """The Access-Control-* headers S3 sends for a request `rule` allows."""
    any_origin = rule.allowed_origins == ("*",)
    out = {
        "Access-Control-Allow-Origin": "*" if any_origin else origin,
        "Access-Control-Allow-Methods": ", ".join(rule.allowed_methods),
        "Vary": "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    }
    if not any_origin:
        out["Access-Control-Allow-Credentials"] = "true"
    if rule.expose_headers:
        out["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age is not None:
        out["Access-Control-Max-Age"] = str(rule.max_age)
    if preflight and headers:
        out["Access-Control-Allow-Headers"] = ", ".join(headers)
    return out
