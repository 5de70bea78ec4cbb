"""Numbers the S3 protocol carries (lengths, part numbers, expiries, byte ranges): ASCII digits only,
bounded. `str.isdigit()` accepts "²" and `int()` then fails; `int()` of 5000 digits fails too."""

from __future__ import annotations

from .errors import S3Error

MAX_DIGITS = 19  # every value the protocol carries fits in 63 bits
HUGE = 2**63  # stands for a number with more digits than that: larger than any size or time


def parse_uint(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """A plain non-negative decimal (ASCII digits, at most `max_digits` of them), else None."""
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_uint_clamped(text: str) -> int | None:
    """Like parse_uint, but a number with too many digits is HUGE instead of None (a byte range past
    any object, an expiry past any lifetime)."""
    if text and text.isascii() and text.isdigit() and len(text) > MAX_DIGITS:
        return HUGE
    return parse_uint(text)


def parse_int(text: str) -> int | None:
    """A plain decimal with an optional leading minus (ASCII digits; too many of them: ±HUGE), else None."""
    negative = text.startswith("-")
    magnitude = parse_uint_clamped(text[1:] if negative else text)
    if magnitude is None:
        return None
    return -magnitude if negative else magnitude


def int_argument(raw: str | None, name: str, default: int, low: int, high: int | None = None) -> int:
    """A numeric request argument (query parameter or header) `name`: `default` when absent, else an
    integer in [low, high]; InvalidArgument, as S3 words it, otherwise."""
    if raw is None:
        return default
    value = parse_int(raw)
    if value is None:
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw[:64]},
        )
    if value < low or (high is not None and value > high):
        raise S3Error(
            "InvalidArgument",
            f"Argument {name} must be an integer between {low} and {high or 2**31 - 1}",
            extra={"ArgumentName": name, "ArgumentValue": raw[:64]},
        )
    return value
