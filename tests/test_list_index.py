"""The listing index's paging against a brute-force model of S3 listing, on random keys and parameters."""

from __future__ import annotations

import random

from nats.aio.msg import Msg

from nats_s3.store.list_index import (
    BucketIndex,
    HistoryIndex,
    MarkerEntry,
    OlderVersion,
    _entry,
    _successor,
    stream_sequence,
)


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


# ---- ListObjectVersions over the two indexes, against a model -------------------------------------


def _uid(n: int) -> str:
    return f"{n:016x}00000000"


def build_versions(rng: random.Random) -> tuple[BucketIndex, HistoryIndex, list[tuple[str, str, bool, bool]]]:
    """Random keys, each with a few versions as the store leaves them (a latest, older ones, a copy of
    the latest among them now and then, a null version named or left dead); and the listing S3 gives."""
    heads, history = BucketIndex("b"), HistoryIndex("b")
    expected: list[tuple[str, str, bool, bool]] = []
    clock = 1_000_000
    for key in sorted({random_key(rng) for _ in range(rng.randint(0, 25))}, key=lambda k: k.encode()):
        count = rng.randint(1, 5)
        versions = []
        null_at = rng.randrange(count) if rng.random() < 0.5 else None
        for i in range(count):
            clock += rng.randint(1, 10)
            versions.append((_uid(clock), i == null_at, rng.random() < 0.25))  # (uid, null, delete marker)
        *older, latest = versions
        latest_uid, latest_null, latest_marker = latest
        latest_vid = "null" if latest_null else latest_uid
        meta = {"s3-vid": latest_uid, "s3-etag": "e"}
        if latest_null:
            meta["s3-null"] = "1"
        nullv = next((u for u, null, _ in older if null), None)
        if nullv:
            meta["s3-nullv"] = nullv
        doc = {"size": 1, "mtime": "2026-11-23T10:00:00Z", "metadata": meta}
        if latest_marker:
            heads.marker_keys.add(key)
            heads.markers[key] = MarkerEntry(latest_vid, 0.0)
        else:
            heads._upsert(key, _entry(doc, meta))
        if nullv:
            heads.nullv[key] = nullv
        listed = [(key, latest_vid, True, latest_marker)]
        shown = older + ([latest] if rng.random() < 0.3 else [])  # a copy of the latest, from a promotion
        if rng.random() < 0.3:
            clock += 1
            shown.append((_uid(clock - 1000), True, False))  # a null version no longer named
        for uid, null, marker in sorted(shown):
            vmeta = {"s3-vid": uid, "s3-etag": "e", **({"s3-null": "1"} if null else {})}
            entry = _entry({"size": 1, "mtime": "2026-11-23T10:00:00Z"}, vmeta)
            versions_of = history.versions.setdefault(key, [])
            if not versions_of:
                history.keys.add(key)
            versions_of.append(OlderVersion(uid, entry.version_id, marker, *entry[:4]))
        for uid, null, marker in reversed(older):
            if not null or uid == nullv:
                listed.append((key, "null" if null else uid, False, marker))
        expected += listed
    return heads, history, expected


def test_version_pages_match_the_model() -> None:
    rng = random.Random(20261201)
    for _ in range(200):
        heads, history, expected = build_versions(rng)
        for page_size in (1, 2, 3, 7, 1000):
            seen: list[tuple[str, str, bool, bool]] = []
            key_marker, version_marker = "", None
            while True:
                page = history.versions_page(heads, "", "", key_marker, version_marker, page_size)
                seen += [(e.key, e.version_id, e.is_latest, e.delete_marker) for e in page.entries]
                if not page.truncated:
                    break
                assert page.next_key is not None
                key_marker, version_marker = page.next_key, page.next_version
            assert seen == expected, (page_size, expected)
        # With a delimiter: keys under a common prefix roll up into it, once.
        want_prefixes = sorted({k[: k.index("/") + 1] for k, *_ in expected if "/" in k}, key=lambda p: p.encode())
        page = history.versions_page(heads, "", "/", "", None, 10**6)
        assert page.prefixes == want_prefixes
        assert [(e.key, e.version_id) for e in page.entries] == [(k, v) for k, v, *_ in expected if "/" not in k]


def test_stream_sequence_reads_every_reply_form_as_nats_py_does() -> None:
    replies = [
        "$JS.ACK.OBJ_b.ordered123.1.4711.9.1733230000000000000.0",  # v1: what nats-server sends today
        "$JS.ACK.hub.ACCHASH.OBJ_b.c1.2.99.5.1733230000000000000.7.rand",  # v2, with domain and account hash
        "$JS.ACK._.ACCHASH.OBJ_b.c1.1.12345678901.3.1733230000000000000.0",  # v2 without a domain
    ]
    for reply in replies:
        msg = Msg(_client=None, subject="$O.b.M.a2V5", reply=reply, data=b"{}")  # type: ignore[arg-type]
        assert stream_sequence(msg) == msg.metadata.sequence.stream
