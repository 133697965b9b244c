"""Structured outputs: `chat.completions.parse()` hits that come back as the SDK makes them.

An entry holds the plain ChatCompletion JSON (the wire answer). A hit decodes it and runs the
SDK's own parsing helper on it, with the caller's `response_format` and `tools`, so
`.choices[0].message.parsed` is an instance of the caller's model and tool calls of
`openai.pydantic_function_tool(...)` tools carry their parsed arguments, exactly as on a
miss. The helper needs the call's `response_format` and `tools`, which the stored bytes
cannot name (nothing read from a tier may pick a class), so the wrapper hands them to the
decoder through a context variable for the duration of the cached call.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from typing import Annotated, Any

from openai import omit
from openai.types.chat import ChatCompletion
from pydantic import AfterValidator

# The SDK's structured-output helpers (there since openai 1.40). Should a future SDK move
# them, parse() is passed through uncached rather than answered differently from the SDK.
_helpers: Any
try:
    from openai.lib import _parsing as _helpers
except ImportError:  # pragma: no cover
    _helpers = None

__all__ = ["PARSE_CONTEXT", "PARSE_SUPPORTED", "ParsedCompletionValue", "response_format_key"]

PARSE_SUPPORTED = all(
    hasattr(_helpers, name) for name in ("parse_chat_completion", "type_to_response_format_param")
)

# (response_format, tools) of the parse() call being served, for the decoder below.
PARSE_CONTEXT: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "llmcache_openai_parse", default=None
)


def _parse_stored(completion: ChatCompletion) -> Any:
    context = PARSE_CONTEXT.get()
    response_format, tools = context if context is not None else (omit, omit)
    return _helpers.parse_chat_completion(
        response_format=response_format, input_tools=tools, chat_completion=completion
    )


# What the parse() call site stores (a ChatCompletion: the parsed fields are left out, being
# derived data) and returns (a ParsedChatCompletion[the caller's model]).
ParsedCompletionValue = Annotated[ChatCompletion, AfterValidator(_parse_stored)]

# Weak keys: a notebook that redefines its model class must not keep the old ones alive.
_SCHEMAS: weakref.WeakKeyDictionary[type, Any] = weakref.WeakKeyDictionary()
_SCHEMAS_LOCK = threading.Lock()


def response_format_key(response_format: Any) -> Any:
    """What parse() sends for `response_format`: for a type, its strict JSON schema.

    Building a JSON schema costs far more than a hit, so it is built once per type.
    """
    if not isinstance(response_format, type):
        return response_format
    found = _SCHEMAS.get(response_format)
    if found is None:
        found = _helpers.type_to_response_format_param(response_format)
        with _SCHEMAS_LOCK:
            _SCHEMAS[response_format] = found
    return found
