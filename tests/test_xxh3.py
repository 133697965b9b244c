"""`llmcache._speedups.xxh3_128` is XXH3-128 bit for bit: the `xxhash` package's value for
every input and seed, so a key never depends on whether the C accelerator was built."""

from __future__ import annotations

import importlib
import os
import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xxhash import xxh3_128_intdigest

from llmcache import _fingerprint

BUILD_HINT = 'the C accelerator is not built: run pip install -e ".[all,dev]" (needs gcc)'
SEEDS = (0, 1, 0x9E3779B185EBCA87, 2**63, 2**64 - 1)


def _native() -> Any:
    try:
        from llmcache._speedups import xxh3_128
    except ImportError as error:  # a failure, not a skip: CI builds it
        pytest.fail(f"{BUILD_HINT} ({error})")
    return xxh3_128


def test_every_length_to_4_kib_and_past_each_block_edge() -> None:
    """Each of the algorithm's cases (0, 1-3, 4-8, 9-16, 17-128, 129-240 bytes, then whole
    and partial 1,024-byte blocks and stripes) for several seeds, derived secrets included."""
    native = _native()
    rng = random.Random(20261202)
    lengths = [*range(4097), 8191, 8192, 8193, 65536 + 7]
    for length in lengths:
        data = rng.randbytes(length)
        for seed in (*SEEDS, rng.getrandbits(64)):
            assert native(data, seed) == xxh3_128_intdigest(data, seed), (length, seed)


@settings(max_examples=500)
@given(data=st.binary(max_size=3000), seed=st.integers(0, 2**64 - 1))
def test_any_input_and_seed(data: bytes, seed: int) -> None:
    assert _native()(data, seed) == xxh3_128_intdigest(data, seed)


def test_buffers_other_than_bytes_hash_as_their_bytes() -> None:
    native = _native()
    data = bytes(range(256)) * 3
    assert native(bytearray(data), 7) == native(memoryview(data), 7) == native(data, 7)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((b"x",), TypeError),
        ((b"x", 1, 2), TypeError),
        (("text", 1), TypeError),
        ((b"x", -1), OverflowError),
        ((b"x", 2**64), OverflowError),
        ((b"x", "1"), TypeError),
    ],
)
def test_bad_arguments_raise_not_crash(args: tuple[Any, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        _native()(*args)


def _selected(pure_python: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LLMCACHE_PURE_PYTHON"}
    if pure_python is not None:
        env["LLMCACHE_PURE_PYTHON"] = pure_python
    probe = "from llmcache import _fingerprint as f; print(f.xxh3_128.__module__, f.NATIVE)"
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_llmcache_hashes_in_c_unless_told_not_to() -> None:
    _native()
    assert _selected(None) == "llmcache._speedups True"
    assert _selected("1") == "xxhash._xxhash False"  # the fallback: the package, same values


def test_this_process_uses_the_hash_its_environment_asks_for() -> None:
    pure = os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0")
    assert _fingerprint.NATIVE is not pure
    assert _fingerprint.xxh3_128 is (xxh3_128_intdigest if pure else _native())


def test_the_fallback_is_the_xxhash_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the C build (not built, or LLMCACHE_PURE_PYTHON=1) the module falls back to
    the package, whose values are the same (tested above)."""
    try:
        monkeypatch.setenv("LLMCACHE_PURE_PYTHON", "1")
        assert importlib.reload(_fingerprint).xxh3_128 is xxh3_128_intdigest
        monkeypatch.delenv("LLMCACHE_PURE_PYTHON")
        monkeypatch.setitem(sys.modules, "llmcache._speedups", None)  # import fails
        assert importlib.reload(_fingerprint).xxh3_128 is xxh3_128_intdigest
        assert not _fingerprint.NATIVE
    finally:
        monkeypatch.undo()
        importlib.reload(_fingerprint)
    assert _fingerprint.NATIVE is (os.environ.get("LLMCACHE_PURE_PYTHON", "") in ("", "0"))
