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


def _load(text: str) -> list[Any]:
    """The generations in `text`, through LangChain's own loader (entries are authenticated)."""
    with warnings.catch_warnings():  # "load is in beta": not the caller's concern
        warnings.simplefilter("ignore")
        loaded = load(orjson.loads(text), allowed_objects="core")
    if not isinstance(loaded, list):
        raise TypeError(f"a stored entry holds {type(loaded).__name__}, not a list")
    return loaded


# Field values a copy may share with the template: nothing can change them in place (str
# subclasses too: LangChain's `text` is one, and is kept as it is).
_IMMUTABLE = (str, int, float, bool, type(None))


class _Model:
    """How to build one pydantic model of a template: its class, its fields set, and its
    field values split into those a copy may share (immutable) and those each copy gets new
    (dicts and lists, through orjson)."""

    __slots__ = ("cls", "extra", "fields_set", "immutable", "mutable")

    def __init__(self, model: BaseModel, skip: str = "") -> None:
        self.cls = type(model)
        self.fields_set = frozenset(model.__pydantic_fields_set__)
        self.extra = model.__pydantic_extra__ is not None
        fields = {name: getattr(model, name) for name in type(model).model_fields}
        fields.pop(skip, None)
        self.immutable = {k: v for k, v in fields.items() if isinstance(v, _IMMUTABLE)}
        self.mutable = tuple(k for k in fields if k not in self.immutable)

    def values(self, model: BaseModel) -> list[Any]:
        return [getattr(model, name) for name in self.mutable]

    def make(self, values: list[Any], message: Any = None) -> Any:
        fields = self.immutable.copy()
        fields.update(zip(self.mutable, values, strict=True))
        if message is not None:
            fields["message"] = message
        made: Any = _new(self.cls)
        _set(made, "__dict__", fields)
        _set(made, "__pydantic_fields_set__", set(self.fields_set))
        _set(made, "__pydantic_extra__", {} if self.extra else None)
        _set(made, "__pydantic_private__", None)
        return made


def _plain(model: Any) -> bool:
    """Whether the template can carry `model`: no private state, no extra fields."""
    return (
        isinstance(model, BaseModel)
        and getattr(model, "__pydantic_private__", None) is None
        and not model.__pydantic_extra__
    )


def _template(generations: Sequence[Any]) -> Callable[[], list[Any]] | None:
    """A fast builder of copies of `generations`, or None if one cannot be trusted."""
    models: list[tuple[_Model, _Model | None]] = []
    documents: list[list[Any]] = []
    for generation in generations:
        if not isinstance(generation, Generation) or not _plain(generation):
            return None
        message: Any = getattr(generation, "message", None)
        if message is not None and not _plain(message):
            return None
        outer = _Model(generation, skip="message")
        inner = None if message is None else _Model(message)
        models.append((outer, inner))
        documents.append([outer.values(generation), [] if inner is None else inner.values(message)])
    try:
        data = orjson.dumps(documents)
    except TypeError:  # a value JSON cannot carry (a big int, a non-str key, an object)
        return None
    shapes = tuple(models)

    def build() -> list[Any]:
        out = []
        for (outer, inner), (values, message_values) in zip(
            shapes, orjson.loads(data), strict=True
        ):
            message = None if inner is None else inner.make(message_values)
            out.append(outer.make(values, message))
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
