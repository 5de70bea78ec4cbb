"""Reading encrypted objects: the layout an object's meta names is checked against its MAC under the data
key before any chunk is read, so chunks dropped, reordered, resized or swapped in NATS are caught; each
chunk then opens with its subject's cipher (crypto/chunk_cipher.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from ..crypto.chunk_cipher import ChunkCipher, layout_mac, macs_equal, part_mac
from ..crypto.envelope import Envelope, parse_envelope
from .errors import CorruptObject
from .models import ObjectInfo

ChunkOpener = Callable[[str], ChunkCipher]


def envelope_of(info: ObjectInfo) -> Envelope | None:
    """The envelope of an encrypted version (None for one stored in plaintext); CorruptObject when the
    stored envelope does not parse."""
    if not info.sse:
        return None
    try:
        return parse_envelope(info.sse)
    except ValueError:
        raise CorruptObject(f"{info.bucket}/{info.key}: its encryption envelope does not parse") from None


def open_chunks(info: ObjectInfo, data_key: bytes | None) -> ChunkOpener:
    """The cipher of each chunk subject of `info`, once its layout checks out under `data_key`."""
    envelope = envelope_of(info)
    if envelope is None or data_key is None:
        raise ValueError(f"{info.bucket}/{info.key}: reading an encrypted object takes its data key")
    parts = info.layout()
    described = [(p.nuid, p.size, p.chunk_size, p.chunks) for p in parts]
    if envelope.layout is not None:
        intact = macs_equal(envelope.layout, layout_mac(data_key, info.size, described))
    elif envelope.part_macs is not None:
        # Completed without the data key: each part vouches for itself and its number, and the numbers
        # must ascend, as a Complete lists them; a whole part left out is what this cannot see.
        numbers = [number for number, _ in info.part_numbers]
        intact = (
            len(envelope.part_macs) == len(parts) == len(numbers)
            and all(a < b for a, b in itertools.pairwise(numbers))
            and sum(p.size for p in parts) == info.size
            and all(
                macs_equal(mac, part_mac(data_key, number, part))
                for mac, number, part in zip(envelope.part_macs, numbers, described, strict=True)
            )
        )
    else:
        intact = False
    if not intact:
        raise CorruptObject(f"{info.bucket}/{info.key}: its chunk layout does not match its MAC")
    return lambda nuid: ChunkCipher(data_key, nuid)
