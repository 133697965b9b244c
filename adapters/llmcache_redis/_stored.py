"""How entry bytes are stored in Redis, so that Redis and Upstash clients read each other's.

The Upstash REST SDK can only carry text (upstash/redis-py #54), so the Upstash adapter
stores every value as ``b64:`` + base64. The Redis adapter reads both forms and writes raw
bytes by default (a third smaller, and no encoding on the hit path), or the text form when
`entry_encoding` is ``base64`` (the default for ``*.upstash.io`` hosts, the one place where
a REST client may read the same database). A raw value that happens to begin with the marker
is written in the text form, so every stored value reads back exactly.

The same twenty lines live in ``llmcache_upstash/_stored.py``; the adapters do not import
each other, because each is installed with its own optional extra.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode

__all__ = ["TEXT_MARKER", "from_stored", "to_stored"]

TEXT_MARKER = b"b64:"
_MARKER_LENGTH = len(TEXT_MARKER)


def to_stored(value: bytes, as_text: bool) -> bytes:
    """The bytes to write for `value`: raw, or the text form when asked (or needed)."""
    if as_text or value.startswith(TEXT_MARKER):
        return TEXT_MARKER + b64encode(value)
    return value


def from_stored(data: bytes) -> bytes:
    """The value behind stored bytes of either form."""
    if not data.startswith(TEXT_MARKER):
        return data
    try:
        return b64decode(data[_MARKER_LENGTH:], validate=True)
    except (binascii.Error, ValueError):
        # Damaged text (e.g. truncated): hand it on as it is. The core's MAC check then
        # counts it as a tampered entry, instead of this tier counting an error.
        return data
