"""Generations as stored JSON, and back: LangChain's own serialisation, decoded fast.

An entry is the text `langchain_core.load.dumps(generations)` writes (JSON, never pickle).
`encode` stores it only if `loads` gives back generations equal to the originals, so what a
hit returns is what the miss returned.

Decoding that text with `langchain_core.load.loads` costs about 40 µs per generation, more
than the rest of a LangChain hit's cache work together. So the first decode of an entry in
this process (or its encode) also keeps a *template*: a private copy of the validated
generations. A hit is then `llmcache.ext.fresh_copy` of the template (new generations,
messages, dicts and lists, built without re-validation from objects validated once; strings
and numbers shared), so a caller that mutates its result cannot change the next one. A
template is used only if its copy equals the validated generations; otherwise (a field of a
type `fresh_copy` does not copy) every hit goes through `langchain_core.load`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import orjson
from langchain_core.load import dumps, load
from langchain_core.outputs import Generation
from pydantic import BaseModel

from llmcache.ext import fresh_copy

__all__ = ["decode", "encode", "templates"]

log = logging.getLogger("llmcache")

#: At most this many templates (entries decoded in this process) are kept; the oldest go first.
MAX_TEMPLATES = 1024
#: And at most this many characters of stored text among them.
MAX_TEMPLATE_CHARS = 16 * 1024 * 1024

#: Entry text -> a builder of fresh copies of its generations (see the module's docstring).
templates: dict[str, Callable[[], list[Any]]] = {}  # cleared in place, never rebound
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


def _classes(value: Any, found: set[type]) -> None:
    """Collect the pydantic model classes in `value` (generations, messages, nested models)."""
    if isinstance(value, BaseModel):
        found.add(type(value))
        for field in type(value).model_fields:
            _classes(getattr(value, field, None), found)
    elif isinstance(value, dict):
        for item in value.values():
            _classes(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _classes(item, found)


def _template(generations: Sequence[Any]) -> Callable[[], list[Any]] | None:
    """A fast builder of copies of `generations`, or None if one cannot be trusted."""
    originals = list(generations)
    if not all(isinstance(generation, Generation) for generation in originals):
        return None
    found: set[type] = set()
    _classes(originals, found)
    classes = frozenset(found)
    try:
        template = fresh_copy(originals, classes)  # private: never handed out
        copy = fresh_copy(template, classes)
    except (TypeError, RecursionError):  # a value fresh_copy does not copy
        return None
    # Trusted only if a copy is indistinguishable from the validated originals.
    if copy != originals or [type(g) for g in copy] != [type(g) for g in originals]:
        return None
    return partial(fresh_copy, template, classes)


def _remember(text: str, builder: Callable[[], list[Any]]) -> None:
    global _template_chars
    with _lock:
        if text in templates:
            return
        templates[text] = builder
        _template_chars += len(text)
        while len(templates) > MAX_TEMPLATES or _template_chars > MAX_TEMPLATE_CHARS:
            oldest = next(iter(templates))
            del templates[oldest]
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
    loaded = _load(text)
    if loaded != list(generations):
        return None
    _builder_for(text, loaded)  # the first hit is then fast too
    return text


def decode(text: Any) -> list[Any]:
    """Fresh generations equal to the stored ones (a new list and new objects per call)."""
    builder = templates.get(text)
    if builder is not None:
        return builder()
    generations = _load(text)
    _builder_for(text, generations)
    return generations
