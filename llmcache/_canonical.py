"""Canonical request: a call's arguments as stable bytes, one form per distinct value.

The same call must give the same bytes in every process, on every machine, in every run:
dict order and set order do not matter, and nothing depends on `repr()`, `hash()` or object
ids. And two calls Python tells apart must never give the same bytes (the form is
injective), or one would be served the other's result.

Plain JSON data (str, int, finite float, bool, None, lists, tuples and dicts with str keys)
is written by orjson as it is: that is the hit path's one `orjson.dumps` call. Every other
value is written as a *tagged* form, ``#"<tag>"<payload>``: ``#`` never appears outside a
string in JSON, so no argument, however it is built, can imitate a tagged form, and the
tag (a type's module and qualname where the type matters) keeps apart values whose
payloads agree: an Enum member and its value, two dataclasses with the same fields, a
`Path` and its text, a dict with int keys and one with str keys, nan and None.

Two choices keep keys shared where a program almost never means a difference: a tuple is
written like a list with the same items, and a frozenset like a set with the same members.

The bytes are only ever hashed, never parsed: they need not be valid JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import inspect
import os
import pathlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from ._errors import KeyDerivationError

__all__ = [
    "FAST_OPTION",
    "SPEEDUPS",
    "Binder",
    "TagNeeded",
    "arguments_need_tags",
    "canonical_bytes",
    "canonical_value",
    "fast_body",
    "fast_default",
    "needs_tags",
    "needs_tags_python",
]

# orjson writes datetimes, dataclasses and subclasses of str/int/dict/list like their plain
# counterparts; passed through, they reach `_default`, which sends them the long way.
_SORTED = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
_dumps = orjson.dumps
_Fragment = orjson.Fragment
# Types orjson writes natively and unambiguously (bool is not an int here: `true` vs `1`).
_LEAVES: frozenset[type] = frozenset({str, int, bool, type(None)})
_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson writes as a number


class _TagNeeded(TypeError):
    """The fast path met a value that needs a tagged form: take the long way."""


def _default(obj: Any) -> Any:
    """The fast path's `default`: anything orjson does not write natively needs a tag."""
    raise _TagNeeded


def needs_tags_python(value: Any, _leaves: frozenset[type] = _LEAVES) -> bool:
    """Whether orjson's own output for `value` could also be another value's.

    orjson writes an Enum member as its value, a UUID as its text, an `orjson.Fragment` as
    its bytes and nan or ±inf as `null`, without calling `default`: the hit path must not
    use its bytes for those (nor for anything else that is not plain JSON data). Dict keys
    are not looked at: orjson refuses non-str keys itself.

    This is the reference: `llmcache._speedups.needs_tags` is the same scan in C, used
    when it was built (see `needs_tags` below).
    """
    kind = type(value)
    if kind is dict:
        return _any_needs_tags(value.values())
    if kind is list or kind is tuple:
        return _any_needs_tags(value)
    if kind is float:
        return bool(value - value != 0.0)  # nan and ±inf give nan; finite floats 0.0
    return kind not in _leaves


def _any_needs_tags(items: Iterable[Any], _leaves: frozenset[type] = _LEAVES) -> bool:
    """Whether any of `items` needs tags: `needs_tags` of each, dispatched in the loop.

    This runs on every hit and costs a type look-up per item, so calls are what can be
    saved: containers are dispatched here, and a dict's fields are scanned in place (chat
    messages are a list of small dicts), a call only for what is nested deeper. Measured
    on the benchmark's chat request, C-level forms (`set(map(type, ...))`, flattening with
    `gc.get_referents`, `marshal.dumps` as a type check) cost as much or more: the per-item
    work is the same and their fixed cost per container is higher.
    """
    for item in items:
        kind = type(item)
        if kind in _leaves:
            continue
        if kind is dict:
            for field in item.values():
                kind = type(field)
                if kind in _leaves:
                    continue
                if kind is dict:
                    if _any_needs_tags(field.values()):
                        return True
                elif kind is list or kind is tuple:
                    if _any_needs_tags(field):
                        return True
                elif kind is not float or field - field != 0.0:  # not a finite float
                    return True
        elif kind is list or kind is tuple:
            if _any_needs_tags(item):
                return True
        elif kind is not float or item - item != 0.0:
            return True
    return False


def _fast_body_python(identity: str, version: Any, arguments: Mapping[str, Any]) -> bytes:
    """The hit path's canonical bytes, `[identity, version, {arguments}]`.

    Raises TypeError when the arguments need the long way (`canonical_bytes`), which gives
    the same bytes for everything this accepts.
    """
    if _any_needs_tags(arguments.values()):
        raise _TagNeeded
    return _dumps((identity, version, arguments), option=_SORTED, default=_default)


def _load_speedups() -> Callable[[Any], bool] | None:
    """The C scan (`llmcache._speedups`, built at install), or None: the Python one then.

    LLMCACHE_PURE_PYTHON=1 forces the Python scan (tests run both). The two give the same
    answer for every value nested at most 256 lists and dicts and 1024 tuples deep;
    deeper, the C scan answers True (the long way) where orjson refuses the value, or the
    Python scan exceeds the default recursion limit (see _speedups.c).
    """
    if os.environ.get("LLMCACHE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from ._speedups import needs_tags as scan
    except ImportError:  # not built (no compiler at install): the Python scan, same keys
        return None
    return scan


_c_needs_tags = _load_speedups()
SPEEDUPS = _c_needs_tags is not None  # whether the C scan is in use
needs_tags: Callable[[Any], bool] = _c_needs_tags or needs_tags_python

# `fast_body`'s parts, for the hot path to inline (`_hot.sync_wrapper`): the body is
# `orjson.dumps((identity, version, arguments), option=FAST_OPTION, default=fast_default)`
# unless `arguments_need_tags(arguments)`.
TagNeeded = _TagNeeded
FAST_OPTION = _SORTED
fast_default = _default
arguments_need_tags: Callable[[Mapping[str, Any]], bool]

if _c_needs_tags is None:
    fast_body = _fast_body_python

    def arguments_need_tags(arguments: Mapping[str, Any]) -> bool:
        return _any_needs_tags(arguments.values())

else:
    _c_scan = arguments_need_tags = _c_needs_tags

    def fast_body(identity: str, version: Any, arguments: Mapping[str, Any]) -> bytes:
        """The hit path's canonical bytes, `[identity, version, {arguments}]`.

        Raises TypeError when the arguments need the long way (`canonical_bytes`), which
        gives the same bytes for everything this accepts. (A Mapping that is not a dict
        counts as needing tags here; orjson would refuse it anyway.)
        """
        if _c_scan(arguments):
            raise _TagNeeded
        return _dumps((identity, version, arguments), option=_SORTED, default=_default)


def canonical_value(value: Any) -> bytes:
    """Canonical bytes of one value; raises TypeError if it has no canonical form."""
    if not needs_tags(value):
        try:
            return _dumps(value, option=_SORTED, default=_default)
        except TypeError:  # a non-str key, a huge int, a lone surrogate, a rich type
            pass
    return _dumps(_plain(value), option=_SORTED)


def canonical_bytes(arguments: Mapping[str, Any], where: str, head: tuple[Any, ...] = ()) -> bytes:
    """Canonical bytes of bound arguments; a clear `KeyDerivationError` names a bad one.

    `head` (a call site's function identity and version) comes first, in one JSON array
    with the arguments: `[identity, version, {arguments}]`, the bytes the hit path makes.
    """
    try:
        return canonical_value((*head, arguments))
    except (TypeError, ValueError, RecursionError):
        raise _explain(arguments, where) from None


def _explain(arguments: Mapping[str, Any], where: str) -> KeyDerivationError:
    for name, value in arguments.items():
        try:
            canonical_value(value)
        except (TypeError, ValueError, RecursionError) as error:
            return KeyDerivationError(
                f"cannot build a cache key for {where}: argument {name!r} "
                f"(a {type(value).__qualname__}) has no canonical form ({error}). "
                f"If it does not change the result, leave it out of the key (on a cached "
                f"function: ignore=({name!r},); in a provider adapter: leave it out of the "
                f"request); otherwise pass plain data (str, numbers, lists, dicts, "
                f"dataclasses, enums, pydantic models) or give its type a "
                f"__llmcache_key__(self) method returning plain data."
            )
    return KeyDerivationError(f"cannot build a cache key for {where}")


# -- the long way: plain JSON data as it is, everything else tagged ----------------------------
def _plain(value: Any) -> Any:
    """`value` with every part that is not plain JSON data replaced by its tagged form."""
    kind = type(value)
    if kind is str:
        return value if _utf8(value) else _tagged("str", _dumps(ascii(value)))
    if kind is int:
        low, high = _INT_RANGE
        return value if low <= value <= high else _tagged("int", _dumps(hex(value)))
    if kind is float:
        return value if not value - value else _tagged("float", _dumps(repr(value)))
    if kind is bool or value is None:
        return value
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is dict:
        if all(type(key) is str and _utf8(key) for key in value):
            return {key: _plain(item) for key, item in value.items()}
        # Keys of other types keep their type: the items, sorted by the keys' own forms.
        pairs = sorted((canonical_value(k), canonical_value(v)) for k, v in value.items())
        return _tagged("dict", _array(b"[" + k + b"," + v + b"]" for k, v in pairs))
    return _tag_object(value)


def _utf8(text: str) -> bool:
    """False for a str orjson refuses (a lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _tagged(tag: str, payload: bytes) -> orjson.Fragment:
    return _Fragment(b"#" + _dumps(tag) + payload)


def _array(members: Iterable[bytes]) -> bytes:
    return b"[" + b",".join(members) + b"]"


def _type_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


# Subclasses of these are keyed as their type's name plus the value as the base type; the
# base type's own method gives a plain copy (a subclass may override `__str__` and such).
_BASES: tuple[tuple[type, Callable[[Any], Any]], ...] = (
    (str, str.__str__),
    (int, int.__int__),
    (float, float.__float__),
    (dict, dict),
    (list, list),
    (tuple, tuple),
    (frozenset, frozenset),
    (set, frozenset),
    (bytes, bytes),
)


def _tag_object(value: Any) -> orjson.Fragment:
    """The tagged form of a value that is not plain JSON data, or TypeError if none."""
    kind = type(value)
    hook = getattr(kind, "__llmcache_key__", None)
    if hook is not None:
        return _tagged(f"key:{_type_name(kind)}", canonical_value(hook(value)))
    if isinstance(value, enum.Enum):
        return _tagged(f"enum:{_type_name(kind)}", canonical_value(value.value))
    if kind is set or kind is frozenset:
        # No order: members sorted by their own canonical bytes.
        return _tagged("set", _array(sorted(canonical_value(m) for m in value)))
    if kind is bytes or kind is bytearray or kind is memoryview:
        return _tagged(kind.__name__, _dumps(base64.b64encode(bytes(value)).decode("ascii")))
    if kind is uuid.UUID:
        return _tagged("uuid", _dumps(str(value)))
    if kind is decimal.Decimal:
        return _tagged("decimal", _dumps(str(value)))  # "1.10" and "1.1" stay apart
    if kind is datetime.datetime or kind is datetime.time:
        zone = None if value.tzinfo is None else str(value.tzinfo)
        return _tagged(kind.__name__, _dumps([value.isoformat(), zone]))
    if kind is datetime.date:
        return _tagged("date", _dumps(value.isoformat()))
    if kind is datetime.timedelta:
        return _tagged("timedelta", _dumps([value.days, value.seconds, value.microseconds]))
    if isinstance(value, pathlib.PurePath):
        # Pure and concrete paths of one flavour compare equal: they share a form.
        flavour = "windows-path" if isinstance(value, pathlib.PureWindowsPath) else "path"
        return _tagged(flavour, _dumps(value.as_posix()))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _tagged(f"dataclass:{_type_name(kind)}", canonical_value(fields))
    model_fields = getattr(kind, "model_fields", None)
    if isinstance(model_fields, dict) and hasattr(value, "model_dump"):  # a pydantic model
        fields = {name: getattr(value, name) for name in model_fields}
        fields.update(getattr(value, "__pydantic_extra__", None) or {})
        return _tagged(f"model:{_type_name(kind)}", canonical_value(fields))
    for base, plain_copy in _BASES:
        if isinstance(value, base):
            return _tagged(
                f"{base.__name__}:{_type_name(kind)}", canonical_value(plain_copy(value))
            )
    raise TypeError(f"type {kind.__qualname__} has no canonical form")


class Binder:
    """Turns (args, kwargs) into the name → value mapping the key is built from.

    Decided once per decorated function. Plain signatures (no *args, **kwargs or
    positional-only parameters) get a fast path that avoids `inspect.Signature.bind`, which
    costs microseconds; anything unusual falls back to it, so errors read as Python's own.
    """

    __slots__ = (
        "_defaults",
        "_fast",
        "_ignore",
        "_known",
        "_names",
        "_nparams",
        "_signature",
        "bind",
    )

    def __init__(self, function: Callable[..., Any], ignore: Iterable[str]) -> None:
        self._signature = inspect.signature(function)
        params = list(self._signature.parameters.values())
        names = {p.name for p in params}
        ignore_set = set(ignore)
        unknown = ignore_set - names
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in params):
            raise KeyDerivationError(
                f"ignore={tuple(sorted(unknown))!r} names no parameter of "
                f"{getattr(function, '__qualname__', function)}; its parameters are "
                f"{tuple(p.name for p in params)!r}"
            )
        # Like cachetools.cachedmethod, the instance or class of a method is not part of the
        # key: its identity differs per process. The qualname (in the key prefix) names it.
        if params and params[0].name in ("self", "cls"):
            ignore_set.add(params[0].name)
        self._ignore = tuple(sorted(ignore_set))
        simple = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        self._fast = simple
        self._names = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self._nparams = len(params)
        self._known = frozenset(p.name for p in params)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self.bind = self._bind_fast if simple else self._bind_slow
        if simple and len(self._names) == self._nparams:
            self.bind = self._all_positional(ignore_set)

    def _all_positional(self, ignore: set[str]) -> Callable[..., dict[str, Any]]:
        """A binder for the commonest call: every parameter given by position.

        A dict display is several times cheaper than `dict(zip(...))` on the hit path, so
        signatures keeping one or two arguments get one; other calls use `_bind_fast`.
        """
        arity = self._nparams
        kept = [(index, name) for index, name in enumerate(self._names) if name not in ignore]
        fallback = self._bind_fast
        if len(kept) == 1:
            ((index, name),) = kept

            def bind_one(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                if not kwargs and len(args) == arity:
                    return {name: args[index]}
                return fallback(args, kwargs)

            return bind_one
        if len(kept) == 2:
            (first, name1), (second, name2) = kept

            def bind_two(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                if not kwargs and len(args) == arity:
                    return {name1: args[first], name2: args[second]}
                return fallback(args, kwargs)

            return bind_two

        names = self._names
        if len(kept) == arity:  # nothing ignored

            def bind_all(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
                if not kwargs and len(args) == arity:
                    return dict(zip(names, args))  # noqa: B905 (lengths checked above)
                return fallback(args, kwargs)

            return bind_all

        def bind_many(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            if not kwargs and len(args) == arity:
                return {name: args[index] for index, name in kept}
            return fallback(args, kwargs)

        return bind_many

    def _bind_fast(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self._names
        if len(args) > len(names):
            return self._bind_slow(args, kwargs)
        bound = self._defaults.copy()
        bound.update(zip(names, args, strict=False))
        if kwargs:
            # An unknown name, or one given twice: let Python's own binding say so.
            if not self._known.issuperset(kwargs) or not kwargs.keys().isdisjoint(
                names[: len(args)]
            ):
                return self._bind_slow(args, kwargs)
            bound.update(kwargs)
        if len(bound) != self._nparams:  # a required argument is missing, or an unknown one
            return self._bind_slow(args, kwargs)
        for name in self._ignore:
            del bound[name]
        return bound

    def _bind_slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self._signature.bind(*args, **kwargs)  # raises Python's own TypeError
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        for param in self._signature.parameters.values():
            if param.kind is param.VAR_KEYWORD and param.name in arguments:
                arguments.update(arguments.pop(param.name))
        for name in self._ignore:
            arguments.pop(name, None)
        return arguments


def describe(function: Callable[..., Any]) -> str:
    """Function identity that is stable across processes: module and qualname."""
    module = getattr(function, "__module__", None) or "?"
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", "?")
    return f"{module}.{qualname}"
