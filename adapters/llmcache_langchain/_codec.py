"""Generations as stored JSON, and back: LangChain's own serialisation, decoded fast.

An entry is the text `langchain_core.load.dumps(generations)` writes (JSON, never pickle).
`encode` stores it only if `loads` gives back generations equal to the originals, so what a
hit returns is what the miss returned.

Decoding that text with `langchain_core.load.loads` costs about 40 µs per generation, more
than the rest of a LangChain hit's cache work together. So the first decode of an entry in
this process (or its encode) also builds a *template*: each generation's pydantic fields as
one orjson document, with their classes and field sets. A hit then costs one `orjson.loads`
(fresh dicts and lists, so a caller that mutates its result cannot change the next one) and
an object built without re-validation from fields that were validated when the template was
made. A template is used only if the object it builds equals the validated one; otherwise
(a field orjson cannot carry, a nested model of an unknown shape) every hit goes through
`langchain_core.load`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from langchain_core.load import dumps, load
from langchain_core.outputs import Generation
from pydantic import BaseModel

__all__ = ["decode", "encode"]

log = logging.getLogger("llmcache")

#: At most this many templates (entries decoded in this process) are kept; the oldest go first.
MAX_TEMPLATES = 1024
#: And at most this many characters of stored text among them.
MAX_TEMPLATE_CHARS = 16 * 1024 * 1024

_new = object.__new__
_set = object.__setattr__
_templates: dict[str, Callable[[], list[Any]]] = {}
_template_chars = 0
_lock = threading.Lock()

# One generation's shape: (class, its fields set, its extra is a dict, message shape or None).
_Shape = tuple[type, frozenset[str], bool, "tuple[type, frozenset[str], bool] | None"]


def _load(text: str) -> list[Any]:
    """The generations in `text`, through LangChain's own loader (entries are authenticated)."""
    with warnings.catch_warnings():  # "load is in beta": not the caller's concern
        warnings.simplefilter("ignore")
        loaded = load(orjson.loads(text), allowed_objects="core")
    if not isinstance(loaded, list):
        raise TypeError(f"a stored entry holds {type(loaded).__name__}, not a list")
    return loaded


def _model_shape(model: BaseModel) -> tuple[type, frozenset[str], bool] | None:
    if getattr(model, "__pydantic_private__", None) is not None:
        return None  # private state the template would not carry
    extra = getattr(model, "__pydantic_extra__", None)
    if extra:
        return None
    return type(model), frozenset(model.__pydantic_fields_set__), extra is not None


def _fields(model: BaseModel) -> dict[str, Any]:
    """A model's field values, by its declared fields (what pydantic keeps per instance)."""
    return {name: getattr(model, name) for name in type(model).model_fields}


def _make(cls: type, fields_set: frozenset[str], extra: bool, fields: dict[str, Any]) -> Any:
    made: Any = _new(cls)
    _set(made, "__dict__", fields)
    _set(made, "__pydantic_fields_set__", set(fields_set))
    _set(made, "__pydantic_extra__", {} if extra else None)
    _set(made, "__pydantic_private__", None)
    return made


def _template(generations: Sequence[Any]) -> Callable[[], list[Any]] | None:
    """A fast builder of copies of `generations`, or None if one cannot be trusted."""
    shapes: list[_Shape] = []
    documents: list[list[Any]] = []
    for generation in generations:
        if not isinstance(generation, Generation):
            return None
        shape = _model_shape(generation)
        if shape is None:
            return None
        fields = _fields(generation)
        message = fields.pop("message", None)
        message_shape = None
        message_fields = None
        if message is not None:
            if not isinstance(message, BaseModel):
                return None
            message_shape = _model_shape(message)
            if message_shape is None:
                return None
            message_fields = _fields(message)
        shapes.append((*shape, message_shape))
        documents.append([fields, message_fields])
    try:
        data = orjson.dumps(documents)
    except TypeError:  # a value JSON cannot carry (a big int, a non-str key, an object)
        return None
    shaped = tuple(shapes)

    def build() -> list[Any]:
        out = []
        for (cls, fields_set, extra, message_shape), (fields, message_fields) in zip(
            shaped, orjson.loads(data), strict=True
        ):
            if message_shape is not None:
                fields["message"] = _make(*message_shape, message_fields)
            out.append(_make(cls, fields_set, extra, fields))
        return out

    copy = build()
    # Trusted only if a copy is indistinguishable from the validated originals.
    if copy != list(generations) or [type(g) for g in copy] != [type(g) for g in generations]:
        return None
    return build


def _remember(text: str, builder: Callable[[], list[Any]]) -> None:
    global _template_chars
    with _lock:
        if text in _templates:
            return
        _templates[text] = builder
        _template_chars += len(text)
        while len(_templates) > MAX_TEMPLATES or _template_chars > MAX_TEMPLATE_CHARS:
            oldest = next(iter(_templates))
            del _templates[oldest]
            _template_chars -= len(oldest)


def _builder_for(text: str, generations: Sequence[Any]) -> Callable[[], list[Any]]:
    builder = _template(generations)
    if builder is None:
        builder = lambda: _load(text)  # noqa: E731 - the slow path, every hit
    _remember(text, builder)
    return builder


def encode(generations: Sequence[Any]) -> str | None:
    """The entry text for `generations`, or None if they do not round-trip through it."""
    text = dumps(list(generations))
    if _load(text) != list(generations):
        return None
    _builder_for(text, generations)  # the first hit is then fast too
    return text


def decode(text: Any) -> list[Any]:
    """Fresh generations equal to the stored ones (a new list and new objects per call)."""
    builder = _templates.get(text)
    if builder is not None:
        return builder()
    generations = _load(text)
    _builder_for(text, generations)
    return generations
