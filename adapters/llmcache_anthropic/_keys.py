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
    "feature_headers",
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


_ABSENT = (NotGiven, Omit)  # the SDK's "not given" markers: the same as leaving it out
_ABSENT_TYPES = frozenset(_ABSENT)  # `type(v) in` a set: cheaper than isinstance per argument
_NOT_COPIED = EXCLUDED | {"betas"}  # betas are keyed with the header, as one feature set
_MARKER = "cache_control"
_KEPT = (list, tuple, str, Mapping)  # iterables that can be read twice
_READ_TWICE = frozenset({list, tuple, str, dict, type(None)})  # the same, tested by type: fast
_LISTS = frozenset({list, tuple})  # what a block list may be, tested by type
# Arguments that need more than copying: rare, so one set test on the hit path skips them.
_RARE = frozenset({"betas", "extra_headers", "stop_sequences"})
# A call naming none of these is keyed on the fast path (nothing to leave out or look at).
_ORDINARY = _NOT_COPIED | _RARE | PASSED_THROUGH


def request_of(kwargs: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The keyed request: the call's output-affecting arguments and the client's fields,
    ``{"call": {...}, "client": fields}``; None for a call that is never cached (see
    `uncacheable`).

    `fields` is `client_fields(client)`. A one-shot iterable argument (a generator of
    messages) is replaced in `kwargs` by a list, which both the key and the SDK then read.
    Written for the hit path (on the development machine a whole memory hit costs about
    10 µs, each microsecond of it counted): a call with nothing to leave out is keyed by
    its own arguments, nothing copied, after one set test and one scan of its values.
    """
    if _ORDINARY.isdisjoint(kwargs) and _ABSENT_TYPES.isdisjoint(map(type, kwargs.values())):
        if kwargs.get("max_tokens") == 0:
            return None
        args, rare = kwargs, False
    else:
        if uncacheable(kwargs):
            return None
        args = {
            name: value
            for name, value in kwargs.items()
            if name not in _NOT_COPIED and type(value) not in _ABSENT_TYPES
        }
        rare = not _RARE.isdisjoint(kwargs)
    messages = args.get("messages")
    if messages is not None:
        if messages.__class__ not in _READ_TWICE:
            messages = _listed(kwargs, args, "messages")
        for message in messages:
            content = message.get("content") if message.__class__ is dict else None
            if content.__class__ is not str and _marked_message(message):
                args = _replaced(args, kwargs, "messages", [_message_key(m) for m in messages])
                break
    system = args.get("system")
    if system is not None and system.__class__ is not str:
        args = _unmarked(args, kwargs, "system", system)
    tools = args.get("tools")
    if tools is not None:
        args = _unmarked(args, kwargs, "tools", tools)
    if not rare:
        return {"call": args, "client": fields}
    _listed(kwargs, args, "stop_sequences")
    _listed(kwargs, args, "betas")
    return {"call": args, "client": _with_headers(fields, kwargs)}


def _unmarked(args: dict[str, Any], kwargs: dict[str, Any], name: str, blocks: Any) -> Any:
    """`args` with the blocks (or tools) of `name` keyed without their markers."""
    if blocks.__class__ not in _READ_TWICE:
        blocks = _listed(kwargs, args, name)
    unmarked = _blocks_key(blocks)
    return args if unmarked is blocks else _replaced(args, kwargs, name, unmarked)


def _replaced(args: dict[str, Any], kwargs: dict[str, Any], name: str, value: Any) -> Any:
    """`args` with `name` set to `value`; a copy if `args` is the call's own `kwargs`."""
    if args is kwargs:
        args = dict(kwargs)
    args[name] = value
    return args


def _listed(kwargs: dict[str, Any], args: dict[str, Any], name: str) -> Any:
    """`kwargs[name]` as a list if it was another iterable (a tuple or string is kept); the
    keyed `args` (a copy of some of `kwargs`, or `kwargs`) get the same list."""
    value = kwargs.get(name)
    if value.__class__ in _READ_TWICE:
        return value
    if isinstance(value, Iterable) and not isinstance(value, _KEPT):
        value = kwargs[name] = list(value)
        if name in args:
            args[name] = value
    return value


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, Mapping) else None


def _marked_message(message: Any) -> bool:
    content = _content(message)
    return content.__class__ in _LISTS and _marked(content)


def _message_key(message: Any) -> Any:
    if not _marked_message(message):
        return message
    return {**message, "content": _blocks_key(message["content"])}


def _marked(blocks: Iterable[Any]) -> bool:
    """Whether a content block (or a block nested in one's ``content``) has a marker."""
    for block in blocks:
        if block.__class__ is dict or isinstance(block, Mapping):
            if _MARKER in block:
                return True
            inner = block.get("content")
            if inner.__class__ in _LISTS and _marked(inner):
                return True
    return False


def _blocks_key(blocks: Any) -> Any:
    """Content blocks (or tools) without their markers, nested ones included."""
    if blocks.__class__ not in _LISTS or not _marked(blocks):
        return blocks
    return [_block_key(block) for block in blocks]


def _block_key(block: Any) -> Any:
    if block.__class__ is not dict and not isinstance(block, Mapping):
        return block
    kept = dict(block)
    kept.pop(_MARKER, None)
    inner = kept.get("content")
    if inner.__class__ in _LISTS:
        kept["content"] = _blocks_key(inner)
    return kept


def _features(value: Any) -> list[str]:
    """The beta features a header value (or a ``betas`` list) switches on, sorted."""
    if value is None or type(value) in _ABSENT_TYPES:
        return []
    names = value.split(",") if isinstance(value, str) else [str(name) for name in value]
    return sorted({name.strip() for name in names if name.strip()})


def _with_headers(fields: Mapping[str, Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The client's fields with the call's own feature headers over its defaults, as the SDK
    sends them: ``betas`` become the ``anthropic-beta`` header, and a header in
    ``extra_headers`` wins over both (an `Omit` there removes it)."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        headers = {}
    given = {str(name).lower(): value for name, value in dict(headers).items()}
    betas = kwargs.get("betas")
    if BETA_HEADER not in given and betas is not None and type(betas) not in _ABSENT_TYPES:
        given[BETA_HEADER] = betas
    merged = dict(fields)
    for name in _KEYED_HEADERS:
        if name not in given:
            continue
        value = given[name]
        keyed = _features(value) if name == BETA_HEADER else value
        if keyed and type(keyed) not in _ABSENT_TYPES:
            merged[name] = keyed
        else:
            merged.pop(name, None)
    return merged


def feature_headers(request: Mapping[str, Any]) -> dict[str, str]:
    """The ``anthropic-beta`` header a keyed request's call sends, if any (as the SDK
    joins it)."""
    features = request["client"].get(BETA_HEADER)
    return {BETA_HEADER: ",".join(features)} if features else {}


def uncacheable(kwargs: Mapping[str, Any]) -> bool:
    """True for calls whose result is not an answer that can be reused (see the docstring)."""
    if kwargs.get("max_tokens") == 0:
        return True
    if PASSED_THROUGH.isdisjoint(kwargs):  # the hit path: one set test
        return False
    return any(
        kwargs[name] is not None and type(kwargs[name]) not in _ABSENT_TYPES
        for name in PASSED_THROUGH.intersection(kwargs)
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
