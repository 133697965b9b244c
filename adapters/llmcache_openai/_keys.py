"""The key policy: which parameters of an OpenAI call are in its cache key. The one place.

A cached answer may only be reused for a request that would have produced the same answer,
so the key holds every parameter that can change the output, and none that only changes how
the request travels or is billed. Anything not listed in ``EXCLUDED`` is keyed, so a
parameter added to the SDK after this list was written is keyed too (the safe default: it
can only cost a miss, never serve a wrong answer).

Keyed (``INCLUDED`` lists them for readers and tests; the rule is "not excluded"):

* what the model reads: ``model``, ``messages`` / ``input``, ``instructions``, ``prompt``,
  ``previous_response_id`` (a response id names immutable server state), ``tools``,
  ``tool_choice``, ``parallel_tool_calls``, ``functions`` / ``function_call``,
  ``prediction``, ``context_management``, ``image``, ``web_search_options``
* what shapes the output: ``response_format`` (for ``parse()``, the JSON schema the SDK
  sends for the pydantic model), ``text`` (format and JSON schema), ``modalities``,
  ``audio``, ``include``, ``verbosity``, ``moderation``, ``max_tokens``,
  ``max_completion_tokens``, ``max_output_tokens``, ``max_tool_calls``, ``truncation``,
  ``stop``, ``logprobs``, ``top_logprobs``, ``logit_bias``
* sampling: ``temperature``, ``top_p``, ``n``, ``seed``, ``presence_penalty``,
  ``frequency_penalty``, ``reasoning`` / ``reasoning_effort``. Calls with ``temperature > 0``
  or ``n > 1`` are cached like any other (what notebook users want); to ask for a fresh
  sample on purpose, use ``llmcache.options(sample=...)``, which enters the key and is never
  sent to the provider.
* embeddings: ``input``, ``dimensions``, ``encoding_format`` (floats and base64 are
  different results)
* provider-specific parameters: ``extra_body``, and ``extra_query`` (query parameters can
  select an API version); ``access_programs``, ``background_options`` (only meaningful for
  background calls, which are not cached anyway)
* where the request goes: the client's ``base_url`` (two endpoints serving the same model
  name must not share entries) and its ``default_query`` when it has one (Azure's
  ``api-version``).

Not keyed (``EXCLUDED``), with the reason:

* credentials and accounts: ``api_key``, ``organization``, ``project`` (client settings, not
  call parameters; isolation between tenants is the cache's workspace, not the API key)
* transport: ``timeout``, ``max_retries``, ``extra_headers``
* who asks and what is logged: ``user``, ``safety_identifier``, ``metadata``, ``store`` (a hit
  is not stored at OpenAI again, which is the point of a cache)
* how the answer is delivered: ``stream`` (streamed and plain calls are stored apart anyway,
  as different call sites), ``stream_options`` (the adapter always asks for the usage chunk
  and hides it unless the caller asked)
* provider-side prompt caching and scheduling, which change cost and latency but not the
  answer: ``prompt_cache_key``, ``prompt_cache_options``, ``prompt_cache_retention``,
  ``service_tier``

Never cached, passed straight through (see ``uncacheable``): ``background=True`` (the result
is a pending job, not an answer) and ``conversation`` (it names server state that grows with
every turn, so the same request means something new each time).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openai import NotGiven, Omit

__all__ = ["EXCLUDED", "INCLUDED", "PASSED_THROUGH", "request_of", "uncacheable"]

INCLUDED = frozenset(
    {
        "model",
        "messages",
        "input",
        "instructions",
        "prompt",
        "previous_response_id",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "prediction",
        "context_management",
        "image",
        "web_search_options",
        "response_format",
        "text",
        "modalities",
        "audio",
        "include",
        "verbosity",
        "moderation",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "max_tool_calls",
        "truncation",
        "stop",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "temperature",
        "top_p",
        "n",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "reasoning",
        "reasoning_effort",
        "dimensions",
        "encoding_format",
        "extra_body",
        "extra_query",
        "access_programs",
        "background_options",
    }
)

EXCLUDED = frozenset(
    {
        "api_key",
        "organization",
        "project",
        "timeout",
        "max_retries",
        "extra_headers",
        "user",
        "safety_identifier",
        "metadata",
        "store",
        "stream",
        "stream_options",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "service_tier",
    }
)

# Parameters that, when set (background=True, any conversation), make a call uncacheable.
PASSED_THROUGH = frozenset({"background", "conversation"})

_ABSENT = (NotGiven, Omit)  # the SDK's "not given" markers: the same as leaving it out
_ABSENT_TYPES = frozenset(_ABSENT)  # `type(v) in` a set: cheaper than isinstance per argument


def request_of(kwargs: Mapping[str, Any], client_fields: Mapping[str, Any]) -> dict[str, Any]:
    """The keyed request: the call's output-affecting arguments plus the client's fields."""
    request = {
        name: value
        for name, value in kwargs.items()
        if name not in EXCLUDED and type(value) not in _ABSENT_TYPES
    }
    request.update(client_fields)
    return request


def uncacheable(kwargs: Mapping[str, Any]) -> bool:
    """True for calls whose result is not an answer that can be reused (see the docstring)."""
    background = kwargs.get("background")
    conversation = kwargs.get("conversation")
    return background is True or (
        conversation is not None and not isinstance(conversation, _ABSENT)
    )


def client_fields(client: Any) -> dict[str, Any]:
    """The parts of a client's configuration that are keyed: its base URL and default query.

    Read once per wrapped client: ``str(client.base_url)`` costs microseconds, more than a
    whole memory hit should.
    """
    fields: dict[str, Any] = {"base_url": str(client.base_url)}
    default_query = getattr(client, "default_query", None)
    if default_query:
        fields["default_query"] = {str(k): v for k, v in dict(default_query).items()}
    return fields
