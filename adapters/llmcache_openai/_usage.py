"""Reading OpenAI's usage fields: the only place that knows their names.

Chat completions report ``prompt_tokens`` / ``completion_tokens`` (cached prompt tokens in
``prompt_tokens_details``); the Responses API reports ``input_tokens`` / ``output_tokens``
(``input_tokens_details``); embeddings report ``prompt_tokens`` alone. The same shapes are
read from plain dicts (a response's ``model_dump()``, or a user's own function returning one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcache.ext import Usage

__all__ = ["usage_of"]


def _field(obj: Any, *names: str) -> Any:
    """The first of `names` that `obj` (a mapping or an object) has and is not None."""
    for name in names:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def usage_of(result: Any) -> Usage | None:
    """The `Usage` of an OpenAI response (or of a dict shaped like one), else None."""
    usage = _field(result, "usage")
    if usage is None:
        return None
    input_tokens = _field(usage, "prompt_tokens", "input_tokens")
    output_tokens = _field(usage, "completion_tokens", "output_tokens")
    if input_tokens is None and output_tokens is None:
        return None  # not a usage record we know
    details = _field(usage, "prompt_tokens_details", "input_tokens_details")
    cached = _field(details, "cached_tokens") if details is not None else None
    model = _field(result, "model")
    return Usage(
        model=str(model) if model else None,
        input_tokens=int(input_tokens or 0),
        output_tokens=int(output_tokens or 0),
        cached_tokens=int(cached or 0),
    )
