"""Canonical request: a call's arguments as stable bytes.

The same call must give the same bytes in every process, on every machine, in every run:
dict order and set order do not matter, and nothing depends on `repr()`, `hash()` or object
ids. orjson with sorted keys does the heavy lifting; `_default` covers the types orjson does
not serialise natively. An argument that cannot be canonicalised is an error that names it.
"""

from __future__ import annotations

import base64
import decimal
import inspect
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from ._errors import KeyDerivationError

__all__ = ["Binder", "canonical_bytes", "canonical_value"]

_SORTED = orjson.OPT_SORT_KEYS
# Non-str dict keys cost orjson a slower path, so they are only enabled on a retry (the bytes
# of str-keyed dicts are identical either way, so the retry never changes a key).
_SORTED_ANY_KEYS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _default(obj: Any) -> Any:
    """Serialise what orjson does not know natively, deterministically, or refuse."""
    hook = getattr(type(obj), "__llmcache_key__", None)
    if hook is not None:
        return hook(obj)
    if isinstance(obj, set | frozenset):
        # Sets have no order: sort the members by their own canonical bytes.
        members = sorted(canonical_value(m) for m in obj)
        return orjson.Fragment(b"[" + b",".join(members) + b"]")
    model_dump = getattr(obj, "model_dump", None)
    if model_dump is not None and hasattr(type(obj), "model_fields"):
        return model_dump(mode="json")
    if isinstance(obj, bytes | bytearray | memoryview):
        return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, decimal.Decimal):
        return {"__decimal__": str(obj)}
    if isinstance(obj, pathlib.PurePath):
        return obj.as_posix()
    raise TypeError(f"type {type(obj).__qualname__} has no canonical form")


def canonical_value(value: Any) -> bytes:
    """Canonical JSON bytes of one value; raises TypeError if it has no canonical form."""
    try:
        return orjson.dumps(value, option=_SORTED, default=_default)
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(value, option=_SORTED_ANY_KEYS, default=_default)
    except orjson.JSONEncodeError:
        return orjson.dumps(_widen_integers(value), option=_SORTED_ANY_KEYS, default=_default)


_INT64 = (-(2**63), 2**64 - 1)


def _widen_integers(value: Any) -> Any:
    """Replace integers orjson cannot hold (beyond 64 bits) with a tagged decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _INT64[0] <= value <= _INT64[1] else {"__int__": str(value)}
    if isinstance(value, dict):
        return {k: _widen_integers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_widen_integers(v) for v in value]
    return value


def canonical_bytes(arguments: Mapping[str, Any], where: str, head: tuple[Any, ...] = ()) -> bytes:
    """Canonical bytes of bound arguments; a clear `KeyDerivationError` names a bad one.

    `head` (a call site's function identity and version) comes first, in one JSON array
    with the arguments: `[identity, version, {arguments}]`. The first attempt is the one
    the hit path makes; the fallbacks run only for inputs that the first cannot take, so
    they never change the key of an input it can.
    """
    for option in (_SORTED, _SORTED_ANY_KEYS):
        try:
            return orjson.dumps((*head, arguments), option=option, default=_default)
        except (orjson.JSONEncodeError, TypeError, RecursionError):
            pass
    try:
        widened = _widen_integers(arguments)
        return orjson.dumps((*head, widened), option=_SORTED_ANY_KEYS, default=_default)
    except (orjson.JSONEncodeError, TypeError, RecursionError):
        raise _explain(arguments, where) from None


def _explain(arguments: Mapping[str, Any], where: str) -> KeyDerivationError:
    for name, value in arguments.items():
        try:
            canonical_value(value)
        except (orjson.JSONEncodeError, TypeError, RecursionError) as error:
            return KeyDerivationError(
                f"cannot build a cache key for {where}: argument {name!r} "
                f"(a {type(value).__qualname__}) has no canonical form ({error}). "
                f"If it does not change the result, leave it out of the key with "
                f"ignore=({name!r},); otherwise pass plain data (str, numbers, lists, dicts, "
                f"dataclasses, enums, pydantic models) or give its type a "
                f"__llmcache_key__(self) method returning plain data."
            )
    return KeyDerivationError(f"cannot build a cache key for {where}")


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
