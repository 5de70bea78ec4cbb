"""The listing index's paging against a brute-force model of S3 listing, on random keys and parameters."""

from __future__ import annotations

import random

from nats_s3.store.list_index import BucketIndex, _entry, _successor


def model(keys: list[str], prefix: str, delimiter: str, after: str, max_keys: int) -> tuple[list[str], list[str], bool]:
    """S3 semantics, the slow obvious way: (keys, common prefixes, truncated)."""
    entries: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for key in sorted(keys, key=lambda k: k.encode()):
        if not key.startswith(prefix):
            continue
        if delimiter and (cut := key.find(delimiter, len(prefix))) >= 0:
            common = key[: cut + len(delimiter)]
            if common in seen:
                continue
            seen.add(common)
            if common.encode() <= after.encode() or after.startswith(common):
                continue
            entries.append((common, True))
        elif key.encode() > after.encode():
            entries.append((key, False))
    page = entries[:max_keys]
    return [k for k, p in page if not p], [k for k, p in page if p], len(entries) > max_keys


def build(keys: list[str]) -> BucketIndex:
    index = BucketIndex("b")
    for key in keys:
        doc = {"size": len(key), "metadata": {"s3-etag": "e"}, "mtime": "2026-11-23T10:00:00Z"}
        index._upsert(key, _entry(doc, doc["metadata"]))
    return index


ALPHABET = ["a", "b", "/", "-", ".", "é", "ü", "z", "~", " ", "+", "%", "中", "\U0001f600", "0", "9"]


def random_key(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8)))


def test_page_matches_model_on_random_buckets() -> None:
    rng = random.Random(20261123)
    for _ in range(300):
        keys = list({random_key(rng) for _ in range(rng.randint(0, 60))})
        index = build(keys)
        for _ in range(10):
            prefix = rng.choice(["", "", rng.choice(ALPHABET), random_key(rng)[:2]])
            delimiter = rng.choice(["", "", "/", "-", "a/", "é"])
            after = rng.choice(["", "", random_key(rng), rng.choice(keys) if keys else ""])
            max_keys = rng.choice([1, 2, 3, 7, 1000])
            page = index.page(prefix, delimiter, after, max_keys)
            want_keys, want_prefixes, want_truncated = model(keys, prefix, delimiter, after, max_keys)
            got = ([o.key for o in page.objects], page.prefixes, page.truncated)
            assert got == (want_keys, want_prefixes, want_truncated), (keys, prefix, delimiter, after, max_keys)


def test_paging_with_markers_walks_everything_once() -> None:
    rng = random.Random(7)
    keys = list({random_key(rng) for _ in range(400)})
    index = build(keys)
    for delimiter in ("", "/", "é"):
        after, seen_keys, seen_prefixes = "", [], []
        while True:
            page = index.page("", delimiter, after, 7)
            seen_keys += [o.key for o in page.objects]
            seen_prefixes += page.prefixes
            if not page.truncated:
                break
            assert page.last is not None
            after = page.last
        want_keys, want_prefixes, _ = model(keys, "", delimiter, "", 10**9)
        assert (seen_keys, seen_prefixes) == (want_keys, want_prefixes)


def test_removal_and_utf8_order() -> None:
    index = build(["b", "a", "\U0001f600", "\uffff", "z"])
    assert [o.key for o in index.page("", "", "", 10).objects] == ["a", "b", "z", "\uffff", "\U0001f600"]
    index._remove("b")
    index._remove("not-there")
    assert [o.key for o in index.page("", "", "", 10).objects] == ["a", "z", "\uffff", "\U0001f600"]
    assert len(index) == 4
    assert index.has_more("", "z")
    assert not index.has_more("a", "a")


def test_successor() -> None:
    assert _successor("a/") == "a0"
    assert _successor("a\U0010ffff") == "b"
    assert _successor("\U0010ffff") is None
    assert _successor("\ud7ff") == "\ue000"
