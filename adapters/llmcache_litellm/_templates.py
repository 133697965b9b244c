"""A hit's value as a fresh copy of a parsed template, not a parse of the entry.

An entry is LiteLLM's value as JSON bytes; the memory tier hands a hit the very bytes object
it holds. Parsing it on every hit (one `orjson.loads` of about 2 KB for a chat completion)
costs 2 µs in a loop but about 15 µs inside `litellm.completion`, where it runs cold and makes
the response text anew each time (benchmarks/bench_litellm.py). So the first hit of an entry
parses it once and keeps the result as a template, and every hit is then
`llmcache.ext.fresh_copy(template)`: new dicts and lists (LiteLLM may change what it is
given), the strings and numbers shared (immutable), about 6 µs there. Templates are bounded in
number and in the bytes of their entries, oldest out first.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from llmcache.ext import fresh_copy

__all__ = ["Templates"]

#: At most this many parsed entries are kept, of at most this many bytes of JSON together.
MAX_TEMPLATES = 1024
MAX_TEMPLATE_BYTES = 16 * 1024 * 1024

_PLAIN_DATA: frozenset[type] = frozenset()  # JSON data only: no objects to copy


def _copies(value: Any) -> bool:
    """Whether `fresh_copy` copies `value` (JSON nested deeper than it goes does not)."""
    try:
        fresh_copy(value, _PLAIN_DATA)
    except TypeError:
        return False
    return True


class Templates:
    """Parsed entries by their bytes (equal bytes, equal JSON), for one backend."""

    def __init__(self) -> None:
        self.by_entry: dict[bytes, Any] = {}  # read on every hit: `get` of it, then `copy`
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def copy(template: Any) -> Any:
        """A fresh copy of a template: what a hit hands LiteLLM."""
        return fresh_copy(template, _PLAIN_DATA)

    def first_parse(self, entry: bytes) -> Any:
        """The value of an entry without a template yet (a fresh parse, kept as one); None if
        it is not JSON (an entry not written by us: a miss)."""
        try:
            value = orjson.loads(entry)
        except orjson.JSONDecodeError:
            return None
        if len(entry) <= MAX_TEMPLATE_BYTES // 16 and _copies(value):
            # (A huge entry, or one nested past what `fresh_copy` copies, is parsed each time.)
            with self._lock:
                if entry not in self.by_entry:
                    self.by_entry[entry] = orjson.loads(entry)  # private: never handed out
                    self._bytes += len(entry)
                    while len(self.by_entry) > MAX_TEMPLATES or self._bytes > MAX_TEMPLATE_BYTES:
                        oldest = next(iter(self.by_entry))
                        del self.by_entry[oldest]
                        self._bytes -= len(oldest)
        return value
