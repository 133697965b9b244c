"""The C type scan (llmcache._speedups) is built, used, and answers as the Python reference.

`needs_tags` decides whether the hit path may use orjson's bytes as the key, so the C form
must never say False where the Python reference says True (two calls would share a key),
and should say True only where the reference does (or a call takes the long way for
nothing). The suite runs where CI runs: the README's test command builds the extension,
so a missing or stale build fails here instead of passing on the fallback unnoticed.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import hashlib
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import llmcache
from llmcache import _canonical
from llmcache._canonical import canonical_bytes, needs_tags_python
from llmcache._errors import KeyDerivationError

ROOT = Path(__file__).resolve().parent.parent
BUILD_HINT = 'the C accelerator is not built: run pip install -e ".[all,dev]" (needs gcc)'


def _speedups() -> Any:
    try:
        import llmcache._speedups as module
    except ImportError as error:  # a failure, not a skip: CI builds it
        pytest.fail(f"{BUILD_HINT} ({error})")
    return module


def c_needs_tags(value: Any) -> bool:
    result: bool = _speedups().needs_tags(value)
    return result


# -- built, fresh, and selected --------------------------------------------------------------
def test_the_c_scan_is_built_from_the_current_source() -> None:
    module = _speedups()
    source = b"".join(
        (ROOT / "llmcache" / name).read_bytes()
        for name in ("_speedups.c", "_fresh_copy.h", "_memory_hit.h", "_xxh3.h")
    )
    assert hashlib.sha256(source).hexdigest() == module.SOURCE_SHA256, (
        "llmcache._speedups was built from another version of _speedups.c or its headers: "
        'run pip install -e ".[all,dev]" again'
    )
    assert Path(module.__file__).parent == ROOT / "llmcache"


def _selection(pure_python: str | None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "LLMCACHE_PURE_PYTHON"}
    if pure_python is not None:
        env["LLMCACHE_PURE_PYTHON"] = pure_python
    probe = (
        "import json; from llmcache import _canonical as c;"
        "print(json.dumps({'speedups': c.SPEEDUPS,"
        " 'scan': c.needs_tags.__module__,"
        " 'fast_body_python': c.fast_body is c._fast_body_python}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return dict(orjson.loads(done.stdout))


def test_llmcache_uses_the_c_scan_unless_told_not_to() -> None:
    _speedups()
    assert _selection(None) == {
        "speedups": True,
        "scan": "llmcache._speedups",
        "fast_body_python": False,
    }
    assert _selection("0") == _selection(None)
    pure = {"speedups": False, "scan": "llmcache._canonical", "fast_body_python": True}
    assert _selection("1") == pure


def test_this_process_uses_the_scan_its_environment_asks_for() -> None:
    if os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0"):
        assert not _canonical.SPEEDUPS and _canonical.needs_tags is needs_tags_python
    else:
        assert _canonical.SPEEDUPS and _canonical.needs_tags is _speedups().needs_tags


# -- the same answers ------------------------------------------------------------------------
class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


class Tone(enum.StrEnum):
    RED = "red"


class Flagged(enum.Flag):
    A = 1


class Text(str):
    pass


class Number(int):
    pass


class Real(float):
    pass


class Record(dict[str, Any]):
    pass


class Items(list[Any]):
    pass


class Pair(tuple[Any, Any]):
    pass


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any


_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.integers(min_value=-(2**90), max_value=2**90)
    | st.floats()  # nan, ±inf, -0.0, subnormals
    | st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7e308])
    | st.text(max_size=4)
    | st.binary(max_size=3)
    | st.binary(max_size=3).map(bytearray)
    | st.sampled_from([Color.RED, Level.ONE, Tone.RED, Flagged.A])
    | st.uuids()
    | st.sampled_from([orjson.Fragment(b'"red"'), orjson.Fragment(b"null")])
    | st.text(max_size=3).map(Text)
    | st.integers(-3, 3).map(Number)
    | st.floats(allow_nan=False).map(Real)
    | st.decimals(allow_nan=False, places=2)
    | st.datetimes()
    | st.dates()
    | st.sampled_from([Ellipsis, NotImplemented, int, object()])
)
_keys = st.text(max_size=3) | st.integers(-2, 2) | st.none() | st.sampled_from([Color.RED])
_values = st.recursive(
    _leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=3), children, max_size=4)
        | st.dictionaries(_keys, children, max_size=3)  # keys are not scanned
        | st.dictionaries(st.text(max_size=3), children, max_size=3).map(Record)
        | st.dictionaries(st.text(max_size=3), children, max_size=3).map(collections.OrderedDict)
        | st.lists(children, max_size=3).map(Items)
        | st.tuples(children, children).map(Pair)
        | st.builds(Point, children, children)
        | st.frozensets(st.integers(-3, 3) | st.text(max_size=2), max_size=3)
        | st.sets(st.integers(-3, 3), max_size=3)
    ),
    max_leaves=16,
)


@settings(max_examples=1500, deadline=None)
@given(_values)
def test_the_c_scan_answers_as_the_python_reference(value: Any) -> None:
    assert c_needs_tags(value) is needs_tags_python(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _values, max_size=4))
def test_the_hit_path_gives_the_same_bytes_with_either_scan(arguments: dict[str, Any]) -> None:
    assert _fast_outcome(_c_fast_body(), arguments) == _fast_outcome(
        _canonical._fast_body_python, arguments
    )


def _c_fast_body() -> Callable[..., bytes]:
    _speedups()
    if not _canonical.SPEEDUPS:  # this process was told to use Python: build the C one
        pytest.skip("the C hit path is checked by the run without LLMCACHE_PURE_PYTHON")
    return _canonical.fast_body


def _fast_outcome(fast_body: Callable[..., bytes], arguments: Any) -> bytes | str:
    try:
        return fast_body("t", None, arguments)
    except Exception:  # as the hit path's callers: any error sends the call the long way
        return "the long way"


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,
        Level.ONE,
        Tone.RED,
        uuid.UUID(int=7),
        orjson.Fragment(b'"red"'),
        math.nan,
        math.inf,
        -math.inf,
        Text("a"),
        Number(1),
        Real(1.0),
        Record(a=1),
        Items([1]),
        Pair((1, 2)),
        b"x",
        {1, 2},
        decimal.Decimal("1.1"),
        datetime.date(2024, 1, 1),
        Point(1, 2),
    ],
    ids=repr,
)
@pytest.mark.parametrize(
    "nest",
    [
        lambda x: x,
        lambda x: {"f": x},
        lambda x: [x],
        lambda x: ({"f": (1, x)},),
        lambda x: {"f": [{"g": "a", "h": x}]},
        lambda x: [1, "a", None, True, 2.5, [{"g": {"h": [x]}}]],
    ],
)
def test_values_that_need_tags_are_found_at_any_depth(value: Any, nest: Any) -> None:
    assert c_needs_tags(nest(value)) is True
    assert needs_tags_python(nest(value)) is True


@pytest.mark.parametrize(
    "value",
    [1, -(2**63), 2**64 - 1, 2**200, "a", "\ud800", True, None, 0.0, -0.0, 1e308, 5e-324],
    ids=repr,
)
def test_plain_values_need_no_tags_at_any_depth(value: Any) -> None:
    # Big ints and lone surrogates need no tags: orjson refuses them itself (the long way).
    for nested in (value, [value], (value,), {"a": value}, [{"a": (value, [value])}]):
        assert c_needs_tags(nested) is False
        assert needs_tags_python(nested) is False
    assert c_needs_tags({Color.RED: 1, 2: [], None: {}}) is False  # keys are not scanned


# -- depth -----------------------------------------------------------------------------------
def _nested(depth: int, kind: str, innermost: Any = 1) -> Any:
    """`depth` levels of one kind: "list", "dict", "tuple", or "mixed" (list, dict in turn)."""
    value = innermost
    for level in range(depth):
        if kind == "tuple":
            value = (value,)
        elif kind == "dict" or (kind == "mixed" and level % 2):
            value = {"k": value}
        else:
            value = [value]
    return value


def _tuples_in_lists(depth: int) -> Any:
    """A list of tuples, `depth` deep in all: many levels, few lists."""
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 8 == 0 else (value,)
    return value


@pytest.mark.parametrize("kind", ["list", "dict", "mixed", "tuple"])
@pytest.mark.parametrize("depth", [1, 100, 253, 254, 255, 256])
def test_the_scans_agree_as_deep_as_orjson_writes(depth: int, kind: str) -> None:
    for innermost in (1, math.nan, Color.RED):
        value = _nested(depth, kind, innermost)
        assert c_needs_tags(value) is needs_tags_python(value)


@pytest.mark.parametrize("depth", [257, 300, 600])
def test_past_256_lists_and_dicts_the_c_scan_says_what_orjson_does(depth: int) -> None:
    """True (the long way) past 256 lists and dicts: orjson refuses more than 254."""
    assert _speedups().SCAN_CONTAINER_LIMIT == 256
    for kind in ("list", "dict", "mixed"):
        arguments = {"p": _nested(depth, kind)}
        assert c_needs_tags(arguments) is True
        # The Python scan says False (plain data), but orjson refuses that depth: both scans
        # send the call the long way, which has no key for it either way.
        assert needs_tags_python(arguments) is False
        assert _fast_outcome(_canonical._fast_body_python, arguments) == "the long way"
        with pytest.raises(KeyDerivationError):
            canonical_bytes(arguments, "t", ("t", None))


@pytest.fixture
def default_recursion_limit() -> Any:
    """Python's default limit, whatever an earlier test (or hypothesis) left it at: where
    the Python scan gives up depends on it."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(before)


@pytest.mark.parametrize(
    "value",
    [
        *(_nested(depth, kind) for depth in (250, 252, 253, 254, 257) for kind in ("list", "dict")),
        *(_nested(depth, "tuple") for depth in (300, 600, 800)),
        *(_tuples_in_lists(depth) for depth in (400, 800, 1200)),
    ],
)
@pytest.mark.usefixtures("default_recursion_limit")
def test_the_hit_path_gives_the_same_bytes_with_either_scan_deep_down(value: Any) -> None:
    """Wherever the Python scan answers (the default recursion limit), the bytes agree."""
    arguments = {"p": value}
    python_outcome = _fast_outcome(_canonical._fast_body_python, arguments)
    assert _fast_outcome(_c_fast_body(), arguments) == python_outcome
    if python_outcome != "the long way":
        assert python_outcome == canonical_bytes(arguments, "t", ("t", None))


@pytest.mark.usefixtures("default_recursion_limit")
def test_past_1024_tuples_the_c_scan_sends_the_call_the_long_way() -> None:
    """A Python scan that deep needs a raised recursion limit; orjson crashes past ~2000."""
    assert _speedups().SCAN_TUPLE_LIMIT == 1024
    assert c_needs_tags(_nested(1024, "tuple")) is False
    assert c_needs_tags(_nested(1025, "tuple")) is True
    with pytest.raises(RecursionError):  # under the default limit
        needs_tags_python({"p": _nested(1025, "tuple")})
    with pytest.raises(KeyDerivationError):  # the long way writes tuples as lists
        canonical_bytes({"p": _nested(1025, "tuple")}, "t", ("t", None))


def test_a_self_referential_argument_is_a_key_error_with_either_scan() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert c_needs_tags(loop) is True  # stops at the depth limit, never raises on a hit
    with pytest.raises(RecursionError):
        needs_tags_python(loop)
    cache = llmcache.Cache(workspace="w", secret="s" * 32, tiers=["memory"])

    @cache.cached
    def fn(payload: Any) -> int:
        return 1

    with pytest.raises(KeyDerivationError):
        fn(loop)
    cache.close()


@pytest.mark.parametrize("kind", ["list", "dict", "tuple"])
def test_the_c_scan_keeps_to_its_own_stack_whatever_the_recursion_limit(kind: str) -> None:
    deep = _nested(200_000, kind)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)  # the C scan must not trust this to bound its stack
    try:
        assert c_needs_tags(deep) is True
    finally:
        sys.setrecursionlimit(limit)


# -- no leaks --------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_a_million_scans_leak_neither_references_nor_memory() -> None:
    scan = _speedups().needs_tags
    request = {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 256,
        "messages": [{"role": "system", "content": "x" * 200}, {"role": "user", "content": "y"}],
    }
    cases = [request, [request, (math.nan,)], {"e": Color.RED}, _nested(300, "list"), "plain"]
    watched = [request, request["messages"], request["messages"][0], Color.RED, math.nan]
    for case in cases:  # warm up: first calls may allocate caches of their own
        scan(case)
    references = [sys.getrefcount(obj) for obj in watched]
    rss = _rss_bytes()
    for _ in range(200_000):
        for case in cases:
            scan(case)
    assert [sys.getrefcount(obj) for obj in watched] == references
    # A leak of one small object per call would be 1,000,000 objects (tens of MiB).
    assert _rss_bytes() - rss < 4 * 2**20
