# The C accelerator built from _speedups.c at install (hatch_build.py); optional.
from typing import Any

SCAN_CONTAINER_LIMIT: int
SCAN_TUPLE_LIMIT: int
SOURCE_SHA256: str

def needs_tags(obj: Any, /) -> bool: ...
def xxh3_128(data: bytes | bytearray | memoryview, seed: int, /) -> int: ...
def fresh_copy(value: Any, classes: set[type] | frozenset[type], /) -> Any: ...
