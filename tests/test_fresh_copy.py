"""`llmcache.ext.fresh_copy`: a deep copy that shares only immutable values and runs no code
of the objects it copies; the C form (`llmcache._speedups.fresh_copy`) gives what the Python
reference gives."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import os
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, PrivateAttr

from llmcache import _fresh
from llmcache.ext import fresh_copy

BUILD_HINT = 'the C accelerator is not built: run pip install -e ".[all,dev]" (needs gcc)'


def _native() -> Any:
    try:
        from llmcache._speedups import fresh_copy as native
    except ImportError as error:  # a failure, not a skip: CI builds it
        pytest.fail(f"{BUILD_HINT} ({error})")
    return native


COPIES = [_fresh.fresh_copy_python, pytest.param(None, id="native")]


def _copy_function(which: Any) -> Any:
    return _native() if which is None else which


class Inner(BaseModel):
    tags: list[str] = []


INITS: list[Any] = []


class Outer(BaseModel, extra="allow"):
    name: str
    inner: Inner
    meta: dict[str, Any] = {}
    _note: dict[str, int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any) -> None:
        INITS.append(self)


@dataclasses.dataclass
class Point:
    x: list[int]


class Slotted:
    __slots__ = ("__hidden", "a", "b")

    def __init__(self) -> None:
        self.a = {"k": [1]}
        self.__hidden = [2]  # mangled: _Slotted__hidden
        # b left unset


def _ids(value: Any, found: set[int]) -> set[int]:
    """ids of every mutable container and object in `value`."""
    if isinstance(value, str | int | float | bytes | type(None)) or value == ():
        return found  # immutable (the empty tuple is one object in CPython)
    found.add(id(value))
    if isinstance(value, dict):
        for item in value.values():
            _ids(item, found)
    elif isinstance(value, list | tuple | set):
        for item in value:
            _ids(item, found)
    else:
        for name in getattr(type(value), "__slots__", ()):
            if hasattr(value, name):
                _ids(getattr(value, name), found)
        for item in getattr(value, "__dict__", {}).values():
            _ids(item, found)
        for extra in ("__pydantic_private__", "__pydantic_extra__", "__pydantic_fields_set__"):
            if getattr(value, extra, None) is not None:
                _ids(getattr(value, extra), found)
    return found


@pytest.mark.parametrize("which", COPIES)
def test_models_dataclasses_and_slots_are_copied_without_running_their_code(which: Any) -> None:
    copy = _copy_function(which)
    model = Outer(name="n", inner=Inner(tags=["a"]), meta={"m": [1, {"z": (1, [2])}]}, more=[3])
    model._note["x"] = 1
    point, slotted = Point(x=[1, 2]), Slotted()
    value = {"model": model, "point": point, "slotted": slotted, "set": {1, 2}}
    inits = len(INITS)
    copied = copy(value, frozenset({Outer, Inner, Point, Slotted}))
    assert len(INITS) == inits  # no __init__, validator or post-init ran
    assert copied["model"] == model and copied["point"] == point
    assert copied["model"]._note == {"x": 1} and copied["model"].more == [3]
    assert copied["model"].model_fields_set == model.model_fields_set
    assert copied["slotted"].a == {"k": [1]} and copied["slotted"]._Slotted__hidden == [2]
    assert not hasattr(copied["slotted"], "b")
    assert copied["set"] == {1, 2}
    # Nothing mutable is shared: changing the copy leaves the original as it was.
    assert not _ids(copied, set()) & _ids(value, set())
    copied["model"].inner.tags.append("changed")
    copied["model"].meta["m"][1]["z"][1].append(9)
    assert model.inner.tags == ["a"] and model.meta == {"m": [1, {"z": (1, [2])}]}


@pytest.mark.parametrize("which", COPIES)
def test_immutable_values_are_shared(which: Any) -> None:
    text, number, data = "x" * 100, 10**30, b"bytes"
    copied = _copy_function(which)([text, number, data, 1.5, True, None], frozenset())
    assert all(a is b for a, b in zip(copied, [text, number, data, 1.5, True, None], strict=True))


class Unlisted(BaseModel):
    a: int = 1


class DictSubclass(dict[str, Any]):
    pass


@pytest.mark.parametrize("which", COPIES)
@pytest.mark.parametrize(
    ("value", "classes", "message"),
    [
        (Unlisted(), frozenset(), "not in classes"),
        ([datetime.date(2026, 1, 1)], frozenset({datetime.date}), "built-in type"),
        (DictSubclass(a=1), frozenset({DictSubclass}), "built-in type"),
        ({"deep": object()}, frozenset(), "not in classes"),
        ({("tuple", "key"): 1}, frozenset(), "dict key or set item of type tuple"),
        ([{1.5: "float key"}], frozenset(), "dict key or set item of type float"),
        ({"s": {frozenset()}}, frozenset(), "dict key or set item of type frozenset"),
    ],
)
def test_what_it_cannot_copy_raises_type_error(
    which: Any, value: Any, classes: frozenset[type], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        _copy_function(which)(value, classes)


@pytest.mark.parametrize("which", COPIES)
def test_nesting_is_bounded_and_classes_must_be_a_set(which: Any) -> None:
    copy = _copy_function(which)
    deep: Any = []
    for _ in range(_fresh.DEPTH_LIMIT):
        deep = [deep]
    with pytest.raises(TypeError, match="too deep"):
        copy(deep, frozenset())
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="too deep"):
        copy(loop, frozenset())
    assert copy(deep[0], frozenset()) == deep[0]  # one level less: copied
    with pytest.raises(TypeError, match="set or frozenset"):
        copy([], [Outer])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.tuples(inner, inner)
    ),
    max_leaves=30,
)


@given(json_values)
def test_c_and_python_copies_are_equal_and_independent(value: Any) -> None:
    native, python = _native()(value, frozenset()), _fresh.fresh_copy_python(value, frozenset())
    assert native == python == value
    assert not _ids(native, set()) & _ids(value, set())
    assert not _ids(python, set()) & _ids(value, set())


def test_ext_uses_the_copy_its_environment_asks_for() -> None:
    pure = os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0")
    assert fresh_copy is (_fresh.fresh_copy_python if pure else _native())


def test_the_fallback_is_the_python_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        monkeypatch.setenv("LLMCACHE_PURE_PYTHON", "1")
        reloaded = importlib.reload(_fresh)
        assert reloaded.fresh_copy is reloaded.fresh_copy_python and not reloaded.NATIVE
        monkeypatch.delenv("LLMCACHE_PURE_PYTHON")
        monkeypatch.setitem(sys.modules, "llmcache._speedups", None)  # import fails
        reloaded = importlib.reload(_fresh)
        assert reloaded.fresh_copy is reloaded.fresh_copy_python
    finally:
        monkeypatch.undo()
        importlib.reload(_fresh)
    assert _fresh.NATIVE is (os.environ.get("LLMCACHE_PURE_PYTHON", "") in ("", "0"))
