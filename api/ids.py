"""Decision ids: ULIDs (26 Crockford base32 characters, sortable by creation time).

48 bits of Unix milliseconds then 80 random bits; within one millisecond of one
process the random part is incremented, so ids from one worker sort in the order
they were made and ids of different workers collide with negligible probability.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_MAX = (1 << 80) - 1

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_decision_id() -> str:
    """A new ULID string, e.g. ``01JDX3S7Q4M1V9ZB8E6K2N5T0A``."""
    global _last_ms, _last_random
    with _lock:
        now = time.time_ns() // 1_000_000
        if now <= _last_ms and _last_random < _RANDOM_MAX:
            now, rand = _last_ms, _last_random + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = now, rand
    return _encode((now << 80) | rand)


def is_decision_id(text: str) -> bool:
    """Whether `text` has the shape of a decision id."""
    return len(text) == 26 and all(c in _ALPHABET for c in text) and text[0] in "01234567"
