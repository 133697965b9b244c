"""DSPy's cached values ↔ JSON data, and what a value's real call used.

DSPy caches, through ``dspy.cache``:

* the native engine's results: ``CallResult.dump()``, a dict of plain data (the common case);
* the LiteLLM engine's raw responses: LiteLLM's ``ModelResponse`` (chat),
  ``TextCompletionResponse`` (text) and ``ResponsesAPIResponse`` (``model_type="responses"``);
* ``request_cache``-decorated functions' results: ``dspy.Embedder``'s list of vectors, and
  whatever a user's own decorated function returns.

Plain JSON data is stored as it is. A LiteLLM response is stored as its JSON dump under a
type name from a fixed list, and rebuilt as that type on a hit: never pickle, never an
import by a name read from storage. Anything else is returned to DSPy unstored.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from llmcache.ext import Usage

__all__ = ["MARK", "decode", "encode", "usage_of"]

# The key of a stored wrapper: {MARK: type name, "data": ..., "cost": ...}. A plain dict that
# happens to hold it is wrapped too (as "json"), so every value reads back exactly.
MARK = "__llmcache_dspy__"

# name -> (module, class): the only types a stored value is ever rebuilt as.
_TYPES: dict[str, tuple[str, str]] = {
    "litellm.ModelResponse": ("litellm.types.utils", "ModelResponse"),
    "litellm.TextCompletionResponse": ("litellm.types.utils", "TextCompletionResponse"),
    "litellm.EmbeddingResponse": ("litellm.types.utils", "EmbeddingResponse"),
    "litellm.ResponsesAPIResponse": ("litellm.types.llms.openai", "ResponsesAPIResponse"),
}
_NAMES: dict[tuple[str, str], str] = {where: name for name, where in _TYPES.items()}
_CLASSES: dict[str, Any] = {}


def _class(name: str) -> Any:
    found = _CLASSES.get(name)
    if found is None:
        module, attribute = _TYPES[name]
        found = _CLASSES[name] = getattr(importlib.import_module(module), attribute)
    return found


def _name_of(value: Any) -> str | None:
    """The stored name of a LiteLLM response type (subclasses are not ours to rebuild)."""
    cls = type(value)
    return _NAMES.get((cls.__module__, cls.__qualname__))


def encode(value: Any) -> Any:
    """The JSON data to store for `value`, or `value` itself (plain data, or unstorable)."""
    if isinstance(value, dict):
        return {MARK: "json", "data": value} if MARK in value else value
    name = _name_of(value)
    if name is None:
        return value  # plain data as it is; anything else is refused by the call site
    cost = _field(getattr(value, "_hidden_params", None), "response_cost")
    return {MARK: name, "data": value.model_dump(mode="json", warnings=False), "cost": cost}


def decode(stored: Any) -> Any:
    """The value `encode` stored (a fresh object: the call site copies mutable data)."""
    if not isinstance(stored, dict) or MARK not in stored:
        return stored
    name = stored[MARK]
    if name == "json":
        return stored["data"]
    cls = _class(name)
    data = stored["data"]
    # LiteLLM's own constructors rebuild their nested types; the Responses model validates.
    responses = name == "litellm.ResponsesAPIResponse"
    value = cls.model_validate(data) if responses else cls(**data)
    if stored.get("cost") is not None:
        # LiteLLM's stated cost, which DSPy reads from a LiteLLM response (a dict on chat
        # responses, LiteLLM's `HiddenParams` on text completions: both take item writes).
        value._hidden_params["response_cost"] = stored["cost"]
    return value


def _field(container: Any, name: str) -> Any:
    if isinstance(container, Mapping):
        return container.get(name)
    return getattr(container, name, None)


def usage_of(value: Any, requested_model: Any) -> Usage | None:
    """What the real call that returned `value` used, priced by genai-prices; None if unknown.

    Reads DSPy's native record (``usage`` in OpenAI's chat shape, ``response_model``) and
    LiteLLM's responses (``usage``, ``model``). The provider is the prefix of DSPy's model
    string (``openai/gpt-4o-mini``), the genai-prices id LiteLLM and DSPy both use.
    """
    usage = _field(value, "usage")
    if not usage:
        return None
    model = _field(value, "response_model") or _field(value, "model")
    provider = None
    if isinstance(requested_model, str) and "/" in requested_model:
        provider, _, bare = requested_model.partition("/")
        model = model or bare
    if not isinstance(model, str) or not model:
        return None
    prompt_details = _field(usage, "prompt_tokens_details") or {}
    output_details = _field(usage, "completion_tokens_details") or {}
    inputs = _field(usage, "prompt_tokens")
    outputs = _field(usage, "completion_tokens")
    if inputs is None and outputs is None:  # the Responses API's names
        inputs, outputs = _field(usage, "input_tokens"), _field(usage, "output_tokens")
        prompt_details = _field(usage, "input_tokens_details") or {}
        output_details = _field(usage, "output_tokens_details") or {}
    return Usage(
        model=model,
        provider=provider,
        input_tokens=inputs or 0,
        output_tokens=outputs or 0,
        cache_read_tokens=_field(prompt_details, "cached_tokens") or 0,
        cache_write_tokens=_field(prompt_details, "cache_creation_tokens") or 0,
        reasoning_tokens=_field(output_details, "reasoning_tokens") or 0,
    )
