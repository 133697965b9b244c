"""Entry bytes as the text the Upstash REST SDK can carry (it cannot store bytes).

Every value is written as ``b64:`` + base64. The Redis adapter writes and reads the same
form (``llmcache_redis/_stored.py``), so entries written through REST are hits for
``redis://`` clients of the same database, and the other way round when the Redis adapter
writes the text form (``entry_encoding=base64``, its default for ``*.upstash.io``).
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode

__all__ = ["TEXT_MARKER", "from_text", "to_text"]

TEXT_MARKER = "b64:"
_MARKER_LENGTH = len(TEXT_MARKER)


def to_text(value: bytes) -> str:
    return TEXT_MARKER + b64encode(value).decode("ascii")


def from_text(text: str) -> bytes:
    """The value behind a stored string: decoded text form, or the string's own bytes."""
    if text.startswith(TEXT_MARKER):
        try:
            return b64decode(text[_MARKER_LENGTH:], validate=True)
        except (binascii.Error, ValueError):
            pass  # damaged: the core's MAC check counts it as a tampered entry
    # Not our text form: raw bytes a Redis client wrote. They reach us intact only if they
    # were UTF-8; anything else fails the core's MAC check, a counted miss, never an error.
    return text.encode("utf-8", "surrogatepass")
