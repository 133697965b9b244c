"""The key policy: which parameters of an Anthropic call are in its cache key. The one place.

A cached answer may only be reused for a request that would have produced the same answer,
so the key holds every parameter that can change the output, and none that only changes how
the request travels or is billed. Anything not listed in ``EXCLUDED`` is keyed, so a
parameter added to the SDK after this list was written is keyed too (the safe default: it
can only cost a miss, never serve a wrong answer). Checked against ``anthropic`` 2.16
(``messages.create``, ``messages.stream``, ``messages.count_tokens`` and their
``beta.messages`` twins).

Keyed (``INCLUDED`` lists them for readers and tests; the rule is "not excluded"):

* what the model reads: ``model``, ``messages``, ``system`` (a string or text blocks),
  ``tools``, ``tool_choice``; content blocks are keyed as given (text, images, documents,
  tool use and tool results, thinking blocks passed back), without their ``cache_control``
  markers (below)
* what shapes the output: ``max_tokens``, ``stop_sequences``, ``thinking`` (on, off,
  adaptive, its budget), ``output_config`` (effort, the JSON output format)
* beta features that change the answer: ``context_management`` (what the server clears from
  the context), ``compaction`` (the answer is a summary), ``fallbacks`` (which models may
  answer)
* sampling: ``temperature``, ``top_p``, ``top_k``. The 2.x SDK has no arguments for them,
  so they travel in ``extra_body``, which is keyed whole; older SDKs take them as arguments,
  which are keyed by the rule above. Calls with ``temperature > 0`` are cached like any other
  (what notebook users want); to ask for a fresh sample on purpose, use
  ``llmcache.options(sample=...)``, which enters the key and is never sent.
* provider-specific parameters: ``extra_body`` and ``extra_query``
* feature switches sent as headers: ``betas`` and the ``anthropic-beta`` header (given in
  ``extra_headers`` or as a default header of the client), keyed together as the set of
  features the request switches on, whichever way it was given (the SDK sends ``betas`` as
  that header, and a request's header replaces the client's); ``anthropic-version`` (the API
  version, the client's default header or a request's), which can change the response
  shape. Unlike OpenAI's headers, these change what the API does.
* where the request goes: the client's ``base_url`` (two endpoints serving the same model
  name must not share entries) and its ``default_query`` when it has one.

Not keyed (``EXCLUDED``), with the reason:

* credentials and accounts: ``api_key``, ``auth_token`` (client settings, not call
  parameters; isolation between tenants is the cache's workspace, not the API key),
  ``workspace_id`` (the Anthropic workspace billed: a header), ``user_profile_id`` and
  ``billing_policy`` (who the request is attributed and billed to),
  ``fallback_credit_token`` (prices a retry's cache writes as reads: billing only)
* transport: ``timeout``, ``max_retries``, ``extra_headers`` other than the feature headers
  above (tracing ids, proxies' headers)
* who asks: ``metadata`` (a user id for abuse detection)
* how the answer is delivered: ``stream`` (streamed and plain calls are stored apart anyway,
  as different call sites; ``messages.stream(...)`` shares the entries of
  ``create(stream=True)``: the same events)
* scheduling and billing, which change cost and latency but not the answer:
  ``service_tier``, ``speed`` (fast mode: the same model, faster and dearer),
  ``inference_geo`` (the region the same model runs in)
* Anthropic's own prompt caching: the top-level ``cache_control`` and the
  ``cache_control`` marker of every content block (in ``system``, in ``tools``, in each
  message's content, and in blocks nested in a block's ``content``, such as a tool
  result's). A marker only tells the server which prefix to keep; the answer is the same
  with or without it. So two requests that differ only in their markers share one entry, and
  a hit returns what the first of them got, including its ``usage``: the
  ``cache_creation_input_tokens`` / ``cache_read_input_tokens`` it reports, and the cost a
  hit counts as saved, are those of the call that was stored, not what the other request's
  markers would have cost. Only markers are removed: a tool's ``input_schema`` or a tool
  use's ``input`` that has a property named ``cache_control`` is user data and stays keyed.

Never cached, passed straight through (see ``uncacheable``): calls that refer to
server-side state, whose meaning changes as that state does: ``container`` (a code
execution container), ``mcp_servers`` (remote tool servers), ``thread`` (a conversation the
server holds) and ``diagnostics`` (a report on the server's prompt cache against an earlier
request); ``max_tokens=0`` (a call that only warms Anthropic's prompt cache: answering it
from ours would leave that cache cold); and ``output_format`` (a pydantic type, for the
SDK's ``parse`` / ``stream`` helpers, which turn it into ``output_config`` themselves). Server
tools in ``tools`` (web search, code execution) are cached like any other call: use ``ttl``,
``max_age`` or ``refresh`` where fresh results matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from anthropic import NotGiven, Omit

__all__ = [
    "EXCLUDED",
    "INCLUDED",
    "PASSED_THROUGH",
    "client_fields",
    "request_of",
    "uncacheable",
]

INCLUDED = frozenset(
    {
        "model",
        "messages",
        "system",
        "tools",
        "tool_choice",
        "max_tokens",
        "stop_sequences",
        "thinking",
        "output_config",
        "context_management",
        "compaction",
        "fallbacks",
        "temperature",
        "top_p",
        "top_k",
        "extra_body",
        "extra_query",
        "betas",
        "anthropic-beta",
        "anthropic-version",
        "base_url",
        "default_query",
    }
)

EXCLUDED = frozenset(
    {
        "api_key",
        "auth_token",
        "workspace_id",
        "user_profile_id",
        "billing_policy",
        "fallback_credit_token",
        "timeout",
        "max_retries",
        "extra_headers",
        "metadata",
        "stream",
        "service_tier",
        "speed",
        "inference_geo",
        "cache_control",
    }
)

# Parameters that, when set (not None), make a call uncacheable: they name server-side state.
PASSED_THROUGH = frozenset({"container", "mcp_servers", "thread", "diagnostics", "output_format"})

# The headers that switch API behaviour on, keyed (lower-case, as compared).
BETA_HEADER = "anthropic-beta"
VERSION_HEADER = "anthropic-version"
_KEYED_HEADERS = (BETA_HEADER, VERSION_HEADER)

# Arguments the SDK takes as any iterable: a one-shot iterator is read twice (by the key and
# by the SDK), so it is made a list first.
_ITERABLES = ("messages", "tools", "system", "stop_sequences", "betas")

_ABSENT = (NotGiven, Omit)  # the SDK's "not given" markers: the same as leaving it out
_ABSENT_TYPES = frozenset(_ABSENT)  # `type(v) in` a set: cheaper than isinstance per argument
_NOT_COPIED = EXCLUDED | {"betas"}  # betas are keyed with the header, as one feature set
_MARKER = "cache_control"
_PLAIN = (list, tuple, str, dict)
_KEPT = (*_PLAIN, Mapping)  # iterables that are not one-shot
_SEQUENCES = frozenset({list, tuple})  # the block lists a marker is looked for in


def request_of(kwargs: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The keyed request: the call's output-affecting arguments plus the client's fields.

    `fields` is `client_fields(client)`. A one-shot iterable argument (a generator of
    messages) is replaced in `kwargs` by a list, which both the key and the SDK then read.
    """
    request = {
        name: value
        for name, value in kwargs.items()
        if name not in _NOT_COPIED and type(value) not in _ABSENT_TYPES
    }
    messages = request.get("messages")
    if type(messages) not in _SEQUENCES and messages is not None:
        messages = _listed(kwargs, request, "messages")
    if messages:
        request["messages"] = _messages_key(messages)
    for name in ("system", "tools"):
        blocks = request.get(name)
        if blocks is not None and type(blocks) is not str:
            if type(blocks) not in _SEQUENCES:
                blocks = _listed(kwargs, request, name)
            request[name] = _blocks_key(blocks)
    for name in ("stop_sequences", "betas"):
        if name in kwargs and type(kwargs[name]) not in _PLAIN:
            _listed(kwargs, request, name)
    request.update(fields)
    if "betas" in kwargs or kwargs.get("extra_headers"):
        _key_headers(request, kwargs)
    return request


def _listed(kwargs: dict[str, Any], request: dict[str, Any], name: str) -> Any:
    """`kwargs[name]` as a list if it was another iterable (a tuple or string is kept)."""
    value = kwargs[name]
    if isinstance(value, Iterable) and not isinstance(value, _KEPT):
        value = kwargs[name] = list(value)
        if name in request:
            request[name] = value
    return value


def _messages_key(messages: Any) -> Any:
    """The messages without cache_control markers; the very object when it has none (the
    common case, and the hit path: nothing is copied)."""
    for message in messages:
        if isinstance(message, Mapping):
            content: Any = message.get("content")
            if type(content) in _SEQUENCES and _marked(content):
                return [_message_key(m) for m in messages]
    return messages


def _message_key(message: Any) -> Any:
    if not isinstance(message, Mapping) or type(message.get("content")) not in _SEQUENCES:
        return message
    return {**message, "content": _blocks_key(message["content"])}


def _marked(blocks: Iterable[Any]) -> bool:
    """Whether a content block (or a block nested in one's ``content``) has a marker."""
    for block in blocks:
        if isinstance(block, Mapping):
            if _MARKER in block:
                return True
            inner: Any = block.get("content")
            if type(inner) in _SEQUENCES and _marked(inner):
                return True
    return False


def _blocks_key(blocks: Any) -> Any:
    """Content blocks (or tools) without their markers, nested ones included."""
    if type(blocks) not in _SEQUENCES or not _marked(blocks):
        return blocks
    return [_block_key(block) for block in blocks]


def _block_key(block: Any) -> Any:
    if not isinstance(block, Mapping):
        return block
    kept = {name: value for name, value in block.items() if name != _MARKER}
    inner = kept.get("content")
    if type(inner) in _SEQUENCES:
        kept["content"] = _blocks_key(inner)
    return kept


def _features(value: Any) -> list[str]:
    """The beta features a header value (or a ``betas`` list) switches on, sorted."""
    if value is None or type(value) in _ABSENT_TYPES:
        return []
    names = value.split(",") if isinstance(value, str) else [str(name) for name in value]
    return sorted({name.strip() for name in names if name.strip()})


def _key_headers(request: dict[str, Any], kwargs: Mapping[str, Any]) -> None:
    """Key the call's own feature headers over the client's defaults, as the SDK sends them:
    ``betas`` become the ``anthropic-beta`` header, and a header in ``extra_headers`` wins
    over both (an `Omit` there removes it)."""
    headers = kwargs.get("extra_headers") or {}
    given = {str(name).lower(): value for name, value in dict(headers).items()}
    betas = kwargs.get("betas")
    if BETA_HEADER not in given and betas is not None and type(betas) not in _ABSENT_TYPES:
        given[BETA_HEADER] = betas
    for name in _KEYED_HEADERS:
        if name not in given:
            continue
        value = given[name]
        keyed = _features(value) if name == BETA_HEADER else value
        if keyed and type(keyed) not in _ABSENT_TYPES:
            request[name] = keyed
        else:
            request.pop(name, None)


def uncacheable(kwargs: Mapping[str, Any]) -> bool:
    """True for calls whose result is not an answer that can be reused (see the docstring)."""
    if kwargs.get("max_tokens") == 0:
        return True
    named = kwargs.keys() & PASSED_THROUGH
    return any(
        kwargs[name] is not None and type(kwargs[name]) not in _ABSENT_TYPES for name in named
    )


def client_fields(client: Any) -> dict[str, Any]:
    """The parts of a client's configuration that are keyed: its base URL, default query and
    feature headers (``anthropic-version``, and ``anthropic-beta`` when it has one).

    Read once per wrapped client: ``str(client.base_url)`` and the default headers cost
    microseconds, more than a whole memory hit should.
    """
    fields: dict[str, Any] = {"base_url": str(client.base_url)}
    default_query = getattr(client, "default_query", None)
    if default_query:
        fields["default_query"] = {str(k): v for k, v in dict(default_query).items()}
    headers = {str(k).lower(): v for k, v in dict(getattr(client, "default_headers", {})).items()}
    if headers.get(VERSION_HEADER):
        fields[VERSION_HEADER] = str(headers[VERSION_HEADER])
    features = _features(headers.get(BETA_HEADER))
    if features:
        fields[BETA_HEADER] = features
    return fields
