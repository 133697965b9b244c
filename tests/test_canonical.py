"""Canonical requests and keys: stable, order-free, and sensitive to everything keyed."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import pathlib
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import llmcache
from llmcache._canonical import Binder, canonical_bytes, canonical_value, fast_body

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
json_scalars |= st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _cache(workspace: str = "ws", secret: str = "s" * 32) -> llmcache.Cache:
    return llmcache.Cache(workspace=workspace, secret=secret, tiers=["memory"])


def _keyer(cache: llmcache.Cache, namespace: str = "ns", version: Any = None) -> Any:
    @cache.cached(namespace=namespace, version=version)
    def fn(payload: Any, other: Any = None) -> str:
        return "x"

    return fn


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=6), st.randoms())
def test_key_ignores_dict_order(mapping: dict[str, Any], rnd: Any) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    fn = _keyer(_cache())
    assert fn.cache_key(mapping) == fn.cache_key(dict(items))


@settings(max_examples=150, deadline=None)
@given(st.sets(st.text(max_size=10) | st.integers(), max_size=12), st.randoms())
def test_key_ignores_set_order(members: set[Any], rnd: Any) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)
    fn = _keyer(_cache())
    assert fn.cache_key(members) == fn.cache_key(set(shuffled))
    assert fn.cache_key(frozenset(shuffled)) == fn.cache_key(members)


@settings(max_examples=200, deadline=None)
@given(json_values, json_values)
def test_different_arguments_give_different_keys(a: Any, b: Any) -> None:
    fn = _keyer(_cache())
    same_bytes = canonical_bytes({"p": a}, "t") == canonical_bytes({"p": b}, "t")
    assert (fn.cache_key(a) == fn.cache_key(b)) == same_bytes


@settings(max_examples=50, deadline=None)
@given(json_values)
def test_namespace_version_workspace_and_secret_all_change_the_key(value: Any) -> None:
    base = _keyer(_cache()).cache_key(value)
    assert _keyer(_cache(), namespace="other").cache_key(value) != base
    assert _keyer(_cache(), version=2).cache_key(value) != base
    assert _keyer(_cache(workspace="ws2")).cache_key(value) != base
    assert _keyer(_cache(secret="t" * 32)).cache_key(value) != base
    assert _keyer(_cache()).cache_key(value, other=1) != base


def test_key_shape_is_fixed_length_and_has_no_prompt_text() -> None:
    cache = _cache()
    fn = _keyer(cache)
    short = fn.cache_key("hi")
    long = fn.cache_key("a secret prompt about zebras " * 2000)
    assert short.startswith(cache._keys.workspace_prefix() + "ns:")
    assert cache._keys.workspace_prefix().startswith("llmc:ws#")
    assert len(short) == len(long)
    assert "zebras" not in long


def test_invalidate_changes_generation_in_key() -> None:
    cache = _cache()
    fn = _keyer(cache)
    before = fn.cache_key("q")
    cache.invalidate("ns")
    after = fn.cache_key("q")
    assert before != after
    assert after.startswith(cache._keys.workspace_prefix() + "ns:")
    assert after.split(":")[3] != before.split(":")[3]  # the generation changed


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Message(BaseModel):
    role: str
    content: str


def test_rich_argument_types_have_stable_keys() -> None:
    fn = _keyer(_cache())
    values = [
        (1, 2),
        {1: "a", 2: "b"},
        b"\x00\x01",
        Color.RED,
        Point(1, 2),
        Message(role="user", content="hi"),
        datetime.datetime(2026, 1, 1, 12, 0),
        frozenset({"a", "b"}),
    ]
    keys = [fn.cache_key(v) for v in values]
    assert keys == [fn.cache_key(v) for v in values]  # stable
    assert len(set(keys)) == len(keys)  # distinct
    assert fn.cache_key(Message(role="user", content="hi")) != fn.cache_key(
        Message(role="user", content="ho")
    )
    assert fn.cache_key(Color.RED) != fn.cache_key(Color.BLUE)


def test_defaults_are_applied_so_explicit_and_implicit_calls_share_a_key() -> None:
    cache = _cache()

    @cache.cached
    def ask(question: str, model: str = "m1", *, temperature: float = 0.0) -> str:
        return question

    assert ask.cache_key("q") == ask.cache_key("q", "m1") == ask.cache_key(question="q", model="m1")
    assert ask.cache_key("q", temperature=0.0) == ask.cache_key("q")
    assert ask.cache_key("q", "m2") != ask.cache_key("q")


def test_uncanonicalisable_argument_is_a_clear_error() -> None:
    cache = _cache()

    @cache.cached
    def ask(client: object, question: str) -> str:
        return question

    with pytest.raises(llmcache.KeyDerivationError) as raised:
        ask(object(), "q")
    message = str(raised.value)
    assert "'client'" in message and "ignore=('client',)" in message


def test_ignore_drops_arguments_from_the_key() -> None:
    cache = _cache()
    calls = []

    @cache.cached(ignore=("client",))
    def ask(client: object, question: str) -> str:
        calls.append(question)
        return question.upper()

    assert ask(object(), "q") == "Q"
    assert ask(object(), "q") == "Q"
    assert calls == ["q"]


def test_ignore_naming_no_parameter_is_an_error() -> None:
    with pytest.raises(llmcache.KeyDerivationError, match="names no parameter"):

        @_cache().cached(ignore=("clinet",))
        def ask(client: object, question: str) -> str:
            return question


def test_binder_matches_python_binding_errors() -> None:
    def fn(a: int, b: int = 2, *, c: int = 3) -> None: ...

    binder = Binder(fn, ())
    assert binder.bind((1,), {}) == {"a": 1, "b": 2, "c": 3}
    assert binder.bind((1, 5), {"c": 9}) == {"a": 1, "b": 5, "c": 9}
    with pytest.raises(TypeError):
        binder.bind((), {})
    with pytest.raises(TypeError):
        binder.bind((1, 2, 3), {})
    with pytest.raises(TypeError):
        binder.bind((1,), {"a": 2})
    with pytest.raises(TypeError):
        binder.bind((1,), {"zzz": 2})


def _one(a: int) -> None: ...


def _two(self: object, a: int, b: int = 2) -> None: ...


def _three(a: int, b: int, c: int = 3) -> None: ...


def _four_ignoring_b(a: int, b: object, c: int, d: int = 4) -> None: ...


@pytest.mark.parametrize(
    ("function", "ignore", "args", "kwargs"),
    [
        (_one, (), (1,), {}),
        (_one, (), (), {"a": 1}),
        (_two, (), (object(), 1, 5), {}),  # `self` is left out of the key
        (_two, (), (object(), 1), {}),
        (_two, (), (object(),), {"a": 1, "b": 7}),
        (_three, (), (1, 2, 3), {}),
        (_three, (), (1, 2), {}),
        (_three, (), (1,), {"b": 2}),
        (_four_ignoring_b, ("b",), (1, object(), 3, 4), {}),
        (_four_ignoring_b, ("b",), (1, object(), 3), {"d": 9}),
    ],
)
def test_fast_binders_agree_with_python_binding(
    function: Any, ignore: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """The specialised binders for positional calls give what `Signature.bind` gives."""
    binder = Binder(function, ignore)
    assert binder.bind(args, kwargs) == binder._bind_slow(args, kwargs)


def test_fast_binders_raise_python_errors_for_bad_calls() -> None:
    for function in (_one, _two, _three):
        binder = Binder(function, ())
        with pytest.raises(TypeError):
            binder.bind((1, 2, 3, 4, 5), {})
        with pytest.raises(TypeError):
            binder.bind((), {"zzz": 1})


def test_varargs_functions_are_keyed_by_all_arguments() -> None:
    cache = _cache()

    @cache.cached
    def join(*parts: str, sep: str = " ", **extra: Any) -> str:
        return sep.join(parts)

    assert join("a", "b") == "a b"
    assert join.cache_key("a", "b") != join.cache_key("a", "c")
    assert join.cache_key("a", flag=1) != join.cache_key("a", flag=2)


def test_methods_key_without_the_instance() -> None:
    cache = _cache()

    class Agent:
        def __init__(self) -> None:
            self.calls = 0

        @cache.cached
        def ask(self, question: str) -> str:
            self.calls += 1
            return question

    a, b = Agent(), Agent()
    assert a.ask("q") == b.ask("q") == "q"
    assert a.calls + b.calls == 1


def test_a_type_can_give_its_own_key() -> None:
    class Client:
        def __init__(self, endpoint: str) -> None:
            self.endpoint = endpoint
            self.session = object()  # not canonicalisable, and not part of the answer

        def __llmcache_key__(self) -> dict[str, str]:
            return {"endpoint": self.endpoint}

    fn = _keyer(_cache())
    assert fn.cache_key(Client("a")) == fn.cache_key(Client("a"))
    assert fn.cache_key(Client("a")) != fn.cache_key(Client("b"))


# -- injectivity (issue 9, item 16): arguments Python tells apart never share a key ------------
class Shade(enum.IntEnum):
    ONE = 1


class Tone(enum.StrEnum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class PairA:
    x: Any
    y: Any


@dataclasses.dataclass(frozen=True)
class PairB:
    x: Any
    y: Any


class ModelA(BaseModel):
    x: int


class ModelB(BaseModel):
    x: int


_BIG = 2**70
CONFUSABLE = [
    (float("nan"), None),
    (float("inf"), None),
    (float("-inf"), None),
    (float("inf"), float("-inf")),
    ({1: "a"}, {"1": "a"}),
    ({True: "a"}, {"True": "a"}),
    ({None: "a"}, {"null": "a"}),
    (PairA(1, 2), PairB(1, 2)),
    (PairA(1, 2), {"x": 1, "y": 2}),
    (ModelA(x=1), ModelB(x=1)),
    (ModelA(x=1), {"x": 1}),
    (Color.RED, "red"),
    (Shade.ONE, 1),
    (Tone.RED, "red"),
    (pathlib.Path("a/b"), "a/b"),
    (datetime.datetime(2026, 1, 1, 12, 0), "2026-01-01T12:00:00"),
    (datetime.date(2026, 1, 1), "2026-01-01"),
    (decimal.Decimal("1.5"), "1.5"),
    (decimal.Decimal("1.5"), {"__decimal__": "1.5"}),
    (_BIG, {"__int__": str(_BIG)}),
    (_BIG, str(_BIG)),
    (b"\x00\x01", {"__bytes__": "AAE="}),
    (b"\x00\x01", "AAE="),
    (uuid.UUID(int=1), str(uuid.UUID(int=1))),
    ({"a", "b"}, ["a", "b"]),
    (True, 1),
    (1, 1.0),
    (0.0, -0.0),
    ({"k": float("nan")}, {"k": None}),
    ([Color.RED], ["red"]),
]


@pytest.mark.parametrize(("a", "b"), CONFUSABLE, ids=[repr(pair) for pair in CONFUSABLE])
def test_confusable_arguments_get_their_own_results(a: Any, b: Any) -> None:
    """Each pair used to share a key: the second call was served the first one's result."""
    cache = _cache()
    calls: list[Any] = []

    @cache.cached
    def fn(payload: Any) -> int:
        calls.append(payload)
        return len(calls)

    assert (fn(a), fn(b)) == (1, 2)  # each is a miss: the hit path (fast key)
    assert (fn(a), fn(b)) == (1, 2)  # and each is then a hit on its own entry
    with llmcache.options(ttl=60):  # the long way (options set) finds the same entries
        assert (fn(a), fn(b)) == (1, 2)
    assert fn.cache_key(a) != fn.cache_key(b)


def test_a_string_cannot_imitate_a_tagged_form() -> None:
    fn = _keyer(_cache())
    assert fn.cache_key(_BIG) != fn.cache_key('#"int""' + hex(_BIG) + '"')
    assert canonical_value(_BIG) != canonical_value(orjson.loads(b'"#"'))


# A strict, type-aware equality: what "Python tells apart" means for keys. Two documented
# choices: a tuple is the same as a list with the same items, a frozenset as the same set.
def _kind(value: Any) -> Any:
    if type(value) in (list, tuple):
        return "sequence"
    if type(value) in (set, frozenset):
        return "set"
    if isinstance(value, pathlib.PurePosixPath):
        return "path"
    return type(value)


def same(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, enum.Enum):
        return a is b
    if _kind(a) == "sequence":
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if _kind(a) == "set":
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if type(a) is dict:
        return len(a) == len(b) and all(
            any(same(ka, kb) and same(va, vb) for kb, vb in b.items()) for ka, va in a.items()
        )
    if type(a) is float:
        return repr(a) == repr(b)  # nan is nan; -0.0 is not 0.0
    if dataclasses.is_dataclass(a):
        # Field by field, not `astuple`, which turns nested dataclasses into plain tuples
        # and so would call two different nested types "the same".
        fields = [f.name for f in dataclasses.fields(a)]
        return all(same(getattr(a, name), getattr(b, name)) for name in fields)
    if type(a) in (datetime.datetime, datetime.time):
        return a.isoformat() == b.isoformat() and str(a.tzinfo) == str(b.tzinfo)
    if type(a) is decimal.Decimal:
        return str(a) == str(b)
    if isinstance(a, pathlib.PurePath) and isinstance(b, pathlib.PurePath):
        # A PurePosixPath and a Path that compare equal share a key, as the README says.
        return bool(a == b)
    return bool(a == b) and repr(a) == repr(b)


_surrogates = st.sampled_from(["\ud800", "a\udfff", "\udc00\ud800"])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()  # nan, ±inf, -0.0 included
    | st.text(max_size=6)
    | _surrogates
    | st.binary(max_size=4)
    | st.sampled_from([Color.RED, Color.BLUE, Shade.ONE, Tone.RED])
    | st.datetimes(timezones=st.none() | st.just(datetime.UTC))
    | st.dates()
    | st.decimals(allow_nan=False, places=2)
    | st.sampled_from([pathlib.PurePosixPath("a/b"), pathlib.Path("a"), pathlib.Path("a/b")])
    | st.uuids()
    | st.sampled_from(["red", "1", "null", "True", "a/b", "AAE=", '#"int""0x1"'])
)
_keys = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3) | st.uuids()
_imitations = st.builds(
    lambda tag, payload: {tag: payload},
    st.sampled_from(["__int__", "__bytes__", "__decimal__", "__set__", "x"]),
    _scalars,
)
_values = st.recursive(
    _scalars | _imitations,
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(_keys, children, max_size=3)
        | st.dictionaries(st.text(max_size=3), children, max_size=3)
        | st.frozensets(_keys, max_size=3)
        | st.sets(st.integers(-2, 2) | st.text(max_size=2), max_size=3)
        | st.builds(PairA, children, children)
        | st.builds(PairB, children, children)
    ),
    max_leaves=8,
)


@settings(max_examples=400, deadline=None)
@given(_values, _values)
def test_canonical_form_is_injective(a: Any, b: Any) -> None:
    """Equal canonical bytes only for values that are the same, by a type-aware equality."""
    assert (canonical_value(a) == canonical_value(b)) == same(a, b)
    assert canonical_value(a) == canonical_value(a)  # and stable


@settings(max_examples=200, deadline=None)
@given(_values)
def test_the_hit_path_and_the_long_way_agree(value: Any) -> None:
    """The hit path's bytes (when it takes a value) are the long way's bytes."""
    arguments = {"p": value}
    try:
        fast = fast_body("t", None, arguments)
    except TypeError:
        return  # the long way only
    assert fast == canonical_bytes(arguments, "t", ("t", None))


@settings(max_examples=100, deadline=None)
@given(_values, _values)
def test_distinct_arguments_never_share_a_cached_result(a: Any, b: Any) -> None:
    cache = _cache()
    calls: list[Any] = []

    @cache.cached
    def fn(payload: Any) -> int:
        calls.append(payload)
        return len(calls)

    first, second = fn(a), fn(b)
    assert (first, second) == ((1, 1) if same(a, b) else (1, 2))
    assert fn(a) == first and fn(b) == second


# Values orjson writes without calling `default` (so its bytes could be another value's), at
# every depth the hit path's scan handles in place or by a call: the arguments, a dict
# argument's fields, a list of dicts' fields (chat messages), and deeper.
_NATIVE_BUT_AMBIGUOUS = [
    Color.RED,
    Shade.ONE,
    Tone.RED,
    uuid.UUID(int=7),
    orjson.Fragment(b'"red"'),
    float("nan"),
    float("inf"),
    float("-inf"),
]
_DEPTHS = [
    lambda x: x,
    lambda x: {"f": x},
    lambda x: [x],
    lambda x: ({"f": (1, x)},),
    lambda x: {"f": {"g": x}},
    lambda x: {"f": [{"g": "a", "h": x}]},
    lambda x: [{"g": {"h": [x]}}],
]


@pytest.mark.parametrize(
    "value",
    _NATIVE_BUT_AMBIGUOUS,
    ids=["enum", "int-enum", "str-enum", "uuid", "fragment", "nan", "inf", "-inf"],
)
@pytest.mark.parametrize("nest", _DEPTHS)
def test_the_hit_path_takes_the_long_way_for_values_orjson_writes_ambiguously(
    value: Any, nest: Any
) -> None:
    with pytest.raises(TypeError):
        fast_body("t", None, {"p": nest(value)})
