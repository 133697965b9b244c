"""Values ↔ JSON, with a type tag that is resolved only from types this process knows.

No pickle, and never an import by name: a tag read from a tier is looked up in the registry
(types passed to `register_type`, return annotations of decorated functions, types provider
adapters register). An unknown tag makes the entry a miss.

Tags:
    ``json``       plain JSON values (str, numbers, bools, None, lists and dicts of them)
    ``tuple``      a tuple of JSON values
    ``bytes``      bytes, as base64 text
    ``model:<n>``  a registered pydantic model, by `model_validate_json`
    ``annotation`` any value of the decorated function's return annotation, by TypeAdapter
"""

from __future__ import annotations

import base64
import functools
import math
import sys
import threading
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pydantic import BaseModel, TypeAdapter

__all__ = ["Unstorable", "ValueCodec", "register_type"]

_REGISTRY: dict[str, type[BaseModel]] = {}
_REGISTRY_LOCK = threading.Lock()
_IMMUTABLE = (str, int, bool, type(None))
# orjson serialises these natively, but they would come back as str / dict: refuse them in
# the plain-JSON path so they go through a faithful codec instead.
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_STRICT |= orjson.OPT_PASSTHROUGH_SUBCLASS


_PYDANTIC_BASE: list[type[BaseModel]] = []  # pydantic's BaseModel, once pydantic is loaded


class Unstorable(Exception):
    """A value that no codec can store faithfully (internal: the call still succeeds)."""


def _base_model() -> type[BaseModel] | None:
    """pydantic's BaseModel, or None while pydantic is not loaded.

    No value or annotation can be a pydantic model before something (the caller, an adapter)
    has imported pydantic, so llmcache never imports it just to ask: `import llmcache` and
    functions returning plain JSON do not pay for pydantic.
    """
    if not _PYDANTIC_BASE:
        if "pydantic" not in sys.modules:
            return None
        from pydantic import BaseModel

        _PYDANTIC_BASE.append(BaseModel)
    return _PYDANTIC_BASE[0]


def _tag_of(cls: type[BaseModel]) -> str:
    return f"model:{cls.__module__}.{cls.__qualname__}"


def register_type(cls: type[BaseModel]) -> type[BaseModel]:
    """Let cached values of this pydantic model type be decoded (usable as a decorator)."""
    from pydantic import BaseModel

    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise TypeError(f"register_type expects a pydantic BaseModel subclass, got {cls!r}")
    with _REGISTRY_LOCK:
        _REGISTRY[_tag_of(cls)] = cls
    return cls


@functools.cache
def _unset_safe(model: type[BaseModel]) -> bool:
    """Whether fields left unset may be left out of the stored JSON.

    Leaving them out stores what was actually set (like the provider's own response body):
    smaller, faster to decode, and `model_fields_set` comes back as it was. It is only safe
    when every default, in this model and the models it contains, is a constant: a
    `default_factory` (a timestamp, a new id) would produce a new value on each decode.
    """
    seen: set[type[BaseModel]] = set()
    pending = [model]
    while pending:
        current = pending.pop()
        if current in seen:
            continue  # recursive models: each class is checked once
        seen.add(current)
        for field in current.model_fields.values():
            if field.default_factory is not None:
                return False
            pending.extend(_models_in(field.annotation))
    return True


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Pydantic model classes named anywhere in a type annotation."""
    base_model = _base_model()
    if base_model is None:
        return []
    if isinstance(annotation, type) and issubclass(annotation, base_model):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _is_plain(annotation: Any) -> bool:
    """True when a return annotation adds nothing the plain JSON codec does not do."""
    plain = (str, int, float, bool, dict, list, type(None), Any, object)
    if annotation in plain or annotation is None:
        return True
    origin = typing.get_origin(annotation)
    if origin in (dict, list):
        return all(_is_plain(arg) for arg in typing.get_args(annotation))
    return False


class ValueCodec:
    """How one decorated function's results are stored; built once, at decoration time."""

    __slots__ = ("_adapter", "_annotation")

    def __init__(self, return_annotation: Any = None) -> None:
        for model in _models_in(return_annotation):
            register_type(model)
        rich = return_annotation is not None and not _is_plain(return_annotation)
        self._annotation = return_annotation
        self._adapter: TypeAdapter[Any] | None = None
        if rich:
            from pydantic import TypeAdapter  # an annotation beyond plain JSON needs pydantic

            try:
                self._adapter = TypeAdapter(return_annotation)
            except Exception:  # an annotation pydantic cannot handle: use the runtime path
                self._adapter = None

    def encode(self, value: Any) -> tuple[str, bytes, bool]:
        """(tag, value JSON, immutable?) of a value; raises Unstorable if none fits.

        Only Unstorable: the result it is given was paid for, and the caller must get it
        even when it cannot be stored (an int beyond 64 bits, a str with a lone surrogate,
        nan, a model its own serializer refuses...).
        """
        try:
            return self._encode(value)
        except Unstorable:
            raise
        except (TypeError, ValueError, OverflowError, RecursionError) as error:
            raise Unstorable(
                f"a {type(value).__qualname__} that JSON cannot store ({error})"
            ) from error

    def _encode(self, value: Any) -> tuple[str, bytes, bool]:
        kind = type(value)
        if kind in _IMMUTABLE or (kind is float and math.isfinite(value)):
            return "json", orjson.dumps(value), True
        base_model = _base_model()
        if (
            base_model is not None
            and isinstance(value, base_model)
            and (self._adapter is None or type(value) is self._annotation)
        ):
            register_type(type(value))
            model = type(value)
            data = value.__pydantic_serializer__.to_json(value, exclude_unset=_unset_safe(model))
            return _tag_of(model), data, False
        if self._adapter is not None:
            try:
                return "annotation", self._adapter.dump_json(value), False
            except Exception:
                pass  # the value does not match its annotation: try the runtime codecs
        if kind is bytes:
            return "bytes", orjson.dumps(base64.b64encode(value).decode("ascii")), True
        if kind in (dict, list, tuple):
            try:
                data = orjson.dumps(value, option=_STRICT)
            except (orjson.JSONEncodeError, TypeError) as error:
                raise Unstorable(f"{kind.__name__} holds a value JSON cannot store") from error
            round_trip = orjson.loads(data)
            if kind is tuple:
                round_trip = tuple(round_trip)
            if round_trip != value:  # NaN, enums, subclasses...: would not come back equal
                raise Unstorable(f"{kind.__name__} does not survive a JSON round trip")
            return ("tuple" if kind is tuple else "json"), data, False
        if kind is float:
            raise Unstorable(f"{value!r} has no JSON form")
        raise Unstorable(
            f"values of type {kind.__qualname__} cannot be cached: return JSON data or a "
            f"pydantic model, or annotate the function's return type"
        )

    def decoder(self, tag: str) -> Callable[[bytes], Any]:
        """The function that turns a stored value JSON back into a fresh value."""
        if tag == "json":
            return orjson.loads
        if tag.startswith("model:"):
            model = _REGISTRY.get(tag)
            if model is None:
                raise Unstorable(f"unknown type tag {tag!r}: register_type() it to decode")
            # The validator's own method: one Python call fewer than model_validate_json.
            validate: Callable[[bytes], Any] = model.__pydantic_validator__.validate_json
            return validate
        if tag == "annotation" and self._adapter is not None:
            return self._adapter.validate_json
        if tag == "tuple":
            return lambda data: tuple(orjson.loads(data))
        if tag == "bytes":
            return lambda data: base64.b64decode(orjson.loads(data))
        raise Unstorable(f"unknown type tag {tag!r}")

    def decode(self, tag: str, data: bytes) -> Any:
        return self.decoder(tag)(data)
