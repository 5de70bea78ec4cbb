"""The packed key -> entry map under the listing index, against a dict and sorted() on random work:
inserts, overwrites and deletes that split and empty blocks, every kind of ETag, checksum and version
id, and keys in every UTF-8 length (a lone surrogate too)."""

from __future__ import annotations

import random

from nats_s3.store.list_index import BucketIndex
from nats_s3.store.packed_entries import BLOCK_MAX, Entry, PackedEntries, encode_key, encode_record

ALPHABET = ["a", "b", "/", "-", "é", "中", "\U0001f600", "\ud800", "0", "~", "\x7f", "\x00"]


def random_key(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))) + ("k" * rng.choice([0, 0, 300]))


def random_entry(rng: random.Random) -> Entry:
    md5 = "".join(rng.choice("0123456789abcdef") for _ in range(32))
    etag = rng.choice([md5, f"{md5}-{rng.randint(1, 10000)}", "f" * 64, md5.upper(), f"{md5}-0", "", "odd etag"])
    return Entry(
        size=rng.choice([0, 1, 4096, 5 * 2**40, 2**63]),
        etag=etag,
        mtime=rng.choice([0.0, 1764000000.123456, 4102444800.5]),
        checksum_algorithm=rng.choice([None, "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "MD5?"]),
        version_id=rng.choice(["null", "null", "0198f3c2a1b47d5e8f90a1b2c3d4e5f6", "v" * 300]),
    )


def utf8_sorted(keys: object) -> list[str]:
    return sorted(keys, key=encode_key)  # type: ignore[call-overload,no-any-return]


def check(packed: PackedEntries, model: dict[str, Entry], rng: random.Random) -> None:
    assert len(packed) == len(model)
    ordered = utf8_sorted(model)
    assert list(packed.keys_from("")) == ordered
    for _ in range(20):
        start = rng.choice([random_key(rng), rng.choice(ordered) if ordered else ""])
        inclusive = rng.random() < 0.5
        want = [k for k in ordered if encode_key(k) > encode_key(start) or (inclusive and k == start)]
        assert list(packed.keys_from(start, inclusive)) == want, (start, inclusive)
        got = list(packed.items_from(start, inclusive))
        assert got == [(k, model[k]) for k in want]
    for key in rng.sample(ordered, min(30, len(ordered))):
        assert packed.get(key) == model[key] and key in packed
    missing = random_key(rng) + "\ufffe"
    assert packed.get(missing) is None and missing not in packed and packed.pop(missing) is None


def test_random_work_matches_a_dict() -> None:
    rng = random.Random(20261203)
    for _ in range(12):
        packed, model = PackedEntries(), {}
        if rng.random() < 0.5:  # from a build, or from empty
            model = {random_key(rng): random_entry(rng) for _ in range(rng.randint(0, 3 * BLOCK_MAX))}
            packed.load((encode_key(k), _record(k, model[k])) for k in utf8_sorted(model))
        check(packed, model, rng)
        for step in range(2500):
            key = rng.choice(list(model)) if model and rng.random() < 0.4 else random_key(rng)
            if rng.random() < 0.3:
                assert packed.pop(key) == model.pop(key, None)
            else:
                entry = random_entry(rng)
                packed.set(key, entry)
                model[key] = entry
            if step % 500 == 0:
                check(packed, model, rng)
        check(packed, model, rng)
        for key in list(model):  # emptied whole: every block goes
            assert packed.pop(key) == model.pop(key)
        check(packed, model, rng)
        assert packed.held_bytes() == 0


def _record(key: str, entry: Entry) -> bytes:
    return encode_record(encode_key(key), entry)


def test_an_index_applies_writes_while_built_and_after() -> None:
    """Writes before the first read gather unsorted and are packed by it; later ones go straight in."""
    rng = random.Random(7)
    index = BucketIndex("b")
    model: dict[str, Entry] = {}
    for _ in range(1000):
        key = random_key(rng)
        if rng.random() < 0.2:
            index._remove(key)
            model.pop(key, None)
        else:
            model[key] = random_entry(rng)
            index._upsert(key, model[key])
    assert len(index) == len(model)
    page = index.page("", "", "", 10_000)
    assert [(o.key, Entry(*o[1:])) for o in page.objects] == [(k, model[k]) for k in utf8_sorted(model)]
    for key in rng.sample(list(model), 100):
        index._remove(key)
        del model[key]
    key = "new/" + random_key(rng)
    model[key] = random_entry(rng)
    index._upsert(key, model[key])
    assert index.entry(key) == model[key] and len(index) == len(model)
    assert list(index.keys_from("")) == utf8_sorted(model)
