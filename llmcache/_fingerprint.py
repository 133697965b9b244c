"""The fingerprint hash: XXH3-128 of a request's canonical bytes under its namespace's seed.

`xxh3_128(body, seed)` is `llmcache._speedups.xxh3_128` when the C accelerator is built, else
`xxhash.xxh3_128_intdigest`: the same value either way (tests/test_xxh3.py), so keys never
depend on the build.

Why not always the `xxhash` package: for bodies over 240 bytes it runs AVX-512 code on CPUs
that have it. In a benchmark loop that is the fastest there is; in a real program a cache hit
comes after a hundred microseconds of ordinary Python, the vector unit has powered down, and
the first wide instructions run throttled while it wakes: about 9 µs for a 1.7 KB request
inside `ChatOpenAI.invoke`, against 0.4 µs in a loop (benchmarks/bench_langchain.py). Our
scalar C has nothing to wake.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["NATIVE", "xxh3_128"]


def _load() -> Callable[[bytes, int], int] | None:
    if os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from ._speedups import xxh3_128 as native
    except ImportError:  # not built (no compiler at install), or built from an older source
        return None
    return native


_native = _load()
NATIVE = _native is not None  # whether the C hash is in use
if _native is not None:
    xxh3_128: Callable[[bytes, int], int] = _native
else:
    from xxhash import xxh3_128_intdigest as xxh3_128
