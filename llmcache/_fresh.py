"""`fresh_copy(value, classes)`: a deep copy of a result kept as a template, so that a hit
can hand out new objects cheaply (an adapter's decoded entry, copied per hit).

The rules (the C form, `llmcache._speedups.fresh_copy`, follows them exactly; this is the
reference, used when the accelerator is not built or LLMCACHE_PURE_PYTHON=1):

* exact dict, list, tuple and set are copied; a dict's keys and a set's items are shared,
  and must be exact str or int (immutable, and hashing them runs no code);
* str, int, float, bool, None and bytes (subclasses too) are shared: immutable;
* an instance whose exact type is in `classes` is copied without running any of its code: a
  new object of its type with its __dict__ and __slots__ copied by these rules. Its type must
  be a Python class whose only built-in base is object (a pydantic model, a dataclass);
* anything else, or nesting deeper than 64, raises TypeError.

So a caller that changes what a hit gave it never changes what the next hit gets, and no
validator, __init__ or __deepcopy__ runs on the hit path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["NATIVE", "fresh_copy", "fresh_copy_python"]

DEPTH_LIMIT = 64
_SHARED = (str, int, float, bytes, type(None))  # bool is an int
_new = object.__new__
_set = object.__setattr__
_get = object.__getattribute__


def _slots(cls: type) -> list[str]:
    """The state slots of `cls` and its bases (not __dict__ and __weakref__)."""
    names = []
    for klass in cls.__mro__:
        declared = klass.__dict__.get("__slots__", ())
        for name in (declared,) if isinstance(declared, str) else declared:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):  # a private name, mangled
                name = f"_{klass.__name__.lstrip('_')}{name}"
            names.append(name)
    return names


def _plain_keys(keys: Any) -> None:
    for key in keys:
        kind = type(key)
        if kind is not str and kind is not int:
            raise TypeError(
                f"fresh_copy: cannot copy a dict key or set item of type {kind.__qualname__}"
            )


def _copy(value: Any, classes: set[type] | frozenset[type], depth: int) -> Any:
    if isinstance(value, _SHARED):
        return value
    if depth >= DEPTH_LIMIT:
        raise TypeError("fresh_copy: nested too deep")
    depth += 1
    kind = type(value)
    if kind is dict:
        _plain_keys(value)
        return {key: _copy(item, classes, depth) for key, item in value.items()}
    if kind is list:
        return [_copy(item, classes, depth) for item in value]
    if kind is tuple:
        return tuple([_copy(item, classes, depth) for item in value])
    if kind is set:
        _plain_keys(value)
        return set(value)
    if kind not in classes:
        raise TypeError(f"fresh_copy: cannot copy a {kind.__qualname__} (not in classes)")
    if not all(base is object or base.__flags__ & (1 << 9) for base in kind.__mro__):
        raise TypeError(
            f"fresh_copy: cannot copy a {kind.__qualname__} (a built-in type or a subclass of one)"
        )
    made = _new(kind)
    for name in _slots(kind):
        try:
            slot = _get(value, name)
        except AttributeError:  # an unset slot stays unset
            continue
        _set(made, name, _copy(slot, classes, depth))
    try:
        state = _get(value, "__dict__")
    except AttributeError:
        return made
    _set(made, "__dict__", _copy(state, classes, depth))
    return made


def fresh_copy_python(value: Any, classes: set[type] | frozenset[type]) -> Any:
    """`fresh_copy` in Python: the reference the C form is tested against."""
    if not isinstance(classes, set | frozenset):
        raise TypeError("fresh_copy(): classes must be a set or frozenset")
    return _copy(value, classes, 0)


def _load() -> Callable[[Any, Any], Any] | None:
    if os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from ._speedups import fresh_copy as native
    except ImportError:  # not built (no compiler at install): the Python copy, same objects
        return None
    return native


_native = _load()
NATIVE = _native is not None
fresh_copy: Callable[[Any, set[type] | frozenset[type]], Any] = _native or fresh_copy_python
