"""A local Anthropic-compatible HTTP server for tests and demos, built on the SDK's own types.

Each answer is deterministic (see ``_fake_claude``), has a fresh ``id``, and is validated as
the ``anthropic`` SDK's own type, then sent with the fields that were set. One handler per
endpoint: ``POST /v1/messages`` (with SSE streams), ``POST /v1/messages/count_tokens``,
``GET /v1/models`` and ``GET /v1/models/{id}``; anything else is a 404, and a request the
server cannot read a 400, with Anthropic's error body and a ``request-id`` header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, get_args

from anthropic import types as api
from pydantic import BaseModel

from llmcache.testing import _fake_claude as fake

# What both fake API servers share (the same list stands in _openai_server.py).
from llmcache.testing._loopback import (
    APIError,
    ErrorTexts,
    Event,
    JSONDict,
    LoopbackAPIServer,
    Reply,
    Routes,
    new_id,
)

__all__ = ["FakeAnthropicServer"]

MODELS = ("claude-opus-4-5", "claude-sonnet-4-6", "claude-haiku-4-5")  # what /v1/models lists
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_EVENTS: dict[str, type[BaseModel]] = {  # by their ``type``
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(api.RawMessageStreamEvent)[0])
}


class HTTPError(APIError):
    """An endpoint's failure, answered with an Anthropic error body."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(status, message)
        fallback = "api_error" if status >= 500 else "invalid_request_error"
        self.error_type = error_type or _ERROR_TYPES.get(status, fallback)

    def body(self, request_id: str) -> api.ErrorResponse:
        error = {"type": self.error_type, "message": str(self)}
        return api.ErrorResponse.model_validate(
            {"type": "error", "error": error, "request_id": request_id}
        )


_ID_DIGITS = 24  # Anthropic's ids are shorter than OpenAI's


def _new_id(prefix: str) -> str:
    return new_id(prefix, _ID_DIGITS)


def _messages(server: FakeAnthropicServer, body: JSONDict) -> Reply:
    prompt = fake.read_prompt(body)
    answer = fake.plan_message(body, prompt)  # before the cache: a rejected request writes none
    usage = {
        **server._cache_usage(body["model"], prompt),
        "output_tokens": answer.output_tokens,
        "service_tier": "standard",
    }
    message = {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [block.content() for block in answer.blocks],
        "stop_reason": answer.stop_reason,
        "stop_sequence": answer.stop_sequence,
        "usage": usage,
    }
    if not body.get("stream"):
        server._sleep(answer.output_tokens, first=True)
        return api.Message.model_validate(message)

    def event(event_type: str, **fields: Any) -> Event:
        return event_type, _EVENTS[event_type].model_validate({"type": event_type, **fields})

    def events() -> Iterator[Event]:
        unfinished: JSONDict = {"content": [], "stop_reason": None, "stop_sequence": None}
        yield event(
            "message_start",
            message={**message, **unfinished, "usage": {**usage, "output_tokens": 1}},
        )
        server._sleep(0, first=True)
        for index, block in enumerate(answer.blocks):
            yield event("content_block_start", index=index, content_block=block.content(empty=True))
            if index == 0:  # where the API sends its keep-alive
                yield "ping", {"type": "ping"}
            for delta in block.deltas():
                server._sleep(1)
                yield event("content_block_delta", index=index, delta=delta)
            yield event("content_block_stop", index=index)
        end = {"stop_reason": answer.stop_reason, "stop_sequence": answer.stop_sequence}
        yield event(
            "message_delta",
            delta=end,
            usage={k: v for k, v in usage.items() if k.endswith("tokens")},
        )
        yield event("message_stop")

    return events()


def _count_tokens(server: FakeAnthropicServer, body: JSONDict) -> Reply:
    return api.MessageTokensCount(input_tokens=fake.read_prompt(body).total)


def _model_info(model_id: str) -> api.ModelInfo:
    family, *version = model_id.removeprefix("claude-").split("-")
    return api.ModelInfo.model_validate(
        {
            "type": "model",
            "id": model_id,
            "display_name": f"Claude {family.title()} {'.'.join(version)}",
            "created_at": "2025-10-01T00:00:00Z",
            "lifecycle": "active",
        }
    )


def _models(server: FakeAnthropicServer, body: JSONDict, model_id: str | None = None) -> Reply:
    if model_id is not None:
        if model_id not in MODELS:
            raise HTTPError(404, f"model: {model_id}")
        return _model_info(model_id)
    data = [_model_info(model).model_dump(mode="json", exclude_unset=True) for model in MODELS]
    return {"data": data, "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]}


_ROUTES: Routes = {
    ("POST", "/v1/messages"): (_messages, ("model", "messages", "max_tokens")),
    ("POST", "/v1/messages/count_tokens"): (_count_tokens, ("model", "messages")),
    ("GET", "/v1/models(?:/([^/]+))?"): (_models, ()),
}


class FakeAnthropicServer(LoopbackAPIServer):
    """An Anthropic-compatible HTTP server on ``127.0.0.1``, served from a daemon thread::

        with FakeAnthropicServer(latency_per_token=0.01) as server:
            client = Anthropic(base_url=server.base_url, api_key="test")
            client.messages.create(model="claude-sonnet-4-6", max_tokens=256, messages=[...])
            assert server.requests == 1

    ``latency_per_token`` is slept per output token (streams sleep between deltas, other
    answers the total up front), ``base_latency`` before any answer (the time to first token);
    ``port=0`` binds a free port; with ``api_key`` set, a request that carries another key (as
    ``x-api-key`` or ``Authorization: Bearer``) gets a 401. ``requests`` and
    ``requests_by_path`` count every request received, the ones failed on purpose by
    :meth:`fail_next` included (529 answers ``overloaded_error``). Prompt caching is
    simulated: a prefix ending at a ``cache_control`` breakpoint is written the first time a
    server sees it and read after (see :meth:`clear_prompt_cache`). ``base_url`` is
    ``http://127.0.0.1:PORT``: Anthropic's paths (unlike OpenAI's) start with ``/v1``.
    """

    _routes = _ROUTES
    _error = HTTPError
    # The wording of the errors the base answers itself: the same fields as
    # FakeOpenAIServer's, in Anthropic's words (the one difference the two blocks hold).
    _texts = ErrorTexts(
        missing="{field}: Field required",
        invalid="{loc}: {msg}",
        malformed="{kind}: {exc}",
        not_found="Not found: {method} {path}",
        unparsable="There was an error parsing the body of your request.",
    )
    _request_id_header = "request-id"
    _id_digits = _ID_DIGITS

    def __init__(
        self,
        *,
        latency_per_token: float = 0.0,
        base_latency: float = 0.0,
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        super().__init__(latency_per_token=latency_per_token, base_latency=base_latency, port=port)
        self.api_key = api_key
        self._prompt_cache: dict[int, None] = {}  # the prefix keys seen, oldest first

    def clear_prompt_cache(self) -> None:
        """Forget every cached prefix: the next request with breakpoints writes them again."""
        with self._lock:
            self._prompt_cache.clear()

    def abort_stream_after(self, n_events: int, *, error: str | None = None) -> None:
        """Make the next stream drop its connection after ``n_events`` SSE events (the
        ``ping`` after the first ``content_block_start`` counts), or, with ``error`` (such as
        ``"overloaded_error"``), send an ``error`` event then, as the API does mid-stream."""
        if n_events < 0 or (error is not None and error not in _ERROR_TYPES.values()):
            raise ValueError(f"n_events must be >= 0 and error one of {_ERROR_TYPES.values()}")
        failure = None if error is None else HTTPError(500, f"Simulated {error} mid-stream.", error)
        self._cut_next_stream(n_events, failure)

    def _cache_usage(self, model: str, prompt: fake.Prompt) -> JSONDict:
        with self._lock:
            return fake.cache_usage(prompt, model, self._prompt_cache)

    def _refusal(self) -> HTTPError | None:
        """A 401 for a request that carries another key than ``api_key`` (when it is set)."""
        if self.api_key is None or self.api_key in self._api_keys():
            return None
        return HTTPError(401, "invalid x-api-key")

    def _api_keys(self) -> tuple[str | None, str]:
        """The key a request carries: SDKs send ``x-api-key`` or a bearer token."""
        headers = self.last_request_headers
        return headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer ")
