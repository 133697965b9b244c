"""Canonical requests and keys: stable, order-free, and sensitive to everything keyed."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import llmcache
from llmcache._canonical import Binder, canonical_bytes

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
    assert short.startswith(cache.keys.workspace_prefix() + "ns:")
    assert cache.keys.workspace_prefix().startswith("llmc:ws#")
    assert len(short) == len(long)
    assert "zebras" not in long


def test_invalidate_changes_generation_in_key() -> None:
    cache = _cache()
    fn = _keyer(cache)
    before = fn.cache_key("q")
    cache.invalidate("ns")
    after = fn.cache_key("q")
    assert before != after
    assert after.startswith(cache.keys.workspace_prefix() + "ns:")
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
