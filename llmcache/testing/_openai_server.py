"""A local OpenAI-compatible HTTP server for tests and demos, built on the SDK's own types.

Each answer is deterministic (see ``_fake_model``), has a fresh ``id``, and is validated as the
``openai`` SDK's own type, then sent with the fields that were set. One handler per endpoint,
under ``/v1``: ``POST /chat/completions``, ``POST /responses`` (both with SSE streams),
``POST /embeddings``, ``GET /models`` and ``GET /models/{id}``; anything else is a 404, and a
request the SDK's types reject or the server cannot read a 400, with OpenAI's error body.
"""

from __future__ import annotations

import base64
import itertools
import struct
import time
from collections.abc import Iterator
from typing import Any, get_args

from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject
from pydantic import BaseModel

from llmcache.testing import _fake_model as fake

# What both fake API servers share (the same list stands in _anthropic_server.py).
from llmcache.testing._loopback import (
    APIError,
    APIHandler,
    ErrorTexts,
    Event,
    JSONDict,
    LoopbackAPIServer,
    Reply,
    Routes,
    new_id,
)

__all__ = ["FakeOpenAIServer"]

EMBEDDING_DIMENSIONS = 8  # when the request does not pass ``dimensions``
_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)
_ERROR_CODES = {
    401: "invalid_api_key",
    403: "unsupported_country_region_territory",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    429: "rate_limit_exceeded",
}
_RESPONSE_EVENTS: dict[str, type[BaseModel]] = {  # by their ``type``: the union has ~60 members
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}
# What a Response echoes of its request, with the defaults for what the request leaves out.
_ECHOED: JSONDict = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "temperature": 1.0,
    "tools": [],
    "tool_choice": "auto",
    "top_p": 1.0,
    "truncation": "disabled",
}


class HTTPError(APIError):
    """An endpoint's failure, answered with an OpenAI-style error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        code = _ERROR_CODES.get(status)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        kind = code if code and status in (408, 409, 429) else kind
        self.error = ErrorObject(message=message, type=kind, param=None, code=code)

    def body(self, request_id: str) -> JSONDict:
        return {"error": self.error.model_dump(exclude_unset=True)}


def _chat_completions(server: FakeOpenAIServer, body: JSONDict) -> Reply:
    plans = [fake.plan_chat(body, index) for index in range(body.get("n") or 1)]
    head = {
        "id": new_id("chatcmpl-"),
        "created": int(time.time()),
        "model": body["model"],
        "service_tier": "default",
        "system_fingerprint": "fp_llmcache_fake",
    }
    prompt, completion = plans[0].prompt_tokens, sum(plan.completion_tokens for plan in plans)
    reasoning = {"reasoning_tokens": sum(plan.reasoning_tokens for plan in plans)}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": reasoning,
        "prompt_tokens_details": {"cached_tokens": 0},
    }

    def logprobs(plan: fake.Plan, start: int, pieces: list[str]) -> JSONDict | None:
        if not body.get("logprobs"):
            return None
        top_n = body.get("top_logprobs") or 0
        tokens = [fake.token_logprob(p, plan.seed, start + i, top_n) for i, p in enumerate(pieces)]
        return {"content": None if plan.content is None else tokens, "refusal": None}

    if not body.get("stream"):
        server._sleep(max(plan.completion_tokens for plan in plans), first=True)
        choices = []
        for index, plan in enumerate(plans):
            calls = {"tool_calls": [plan.tool_call.chat()]} if plan.tool_call else {}
            message = {
                "role": "assistant",
                "content": plan.content,
                "refusal": plan.refusal,
                "annotations": [],
                **calls,
            }
            lp = logprobs(plan, 0, plan.pieces)
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": lp,
                    "finish_reason": plan.finish_reason,
                }
            )
        reply = {**head, "object": "chat.completion", "choices": choices, "usage": usage}
        return ChatCompletion.model_validate(reply)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices: list[JSONDict], **fields: Any) -> Event:
        fields = {"usage": None, **fields} if include_usage else fields
        reply = {**head, "object": "chat.completion.chunk", "choices": choices, **fields}
        return None, ChatCompletionChunk.model_validate(reply)

    def deltas(plan: fake.Plan) -> Iterator[tuple[JSONDict, JSONDict | None]]:
        """One choice's (delta, logprobs): the role (and the call), then one per piece."""
        empty = None if plan.content is None else ""
        yield {"role": "assistant", "content": empty, "refusal": None}, None
        if plan.tool_call is not None:
            yield {"tool_calls": [{"index": 0, **plan.tool_call.chat(arguments="")}]}, None
        for position, piece in enumerate(plan.pieces):
            if plan.tool_call is not None:
                yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None
            elif plan.refusal is not None:
                yield {"refusal": piece}, None
            else:
                yield {"content": piece}, logprobs(plan, position, [piece])
        yield {}, None  # the finish reason

    def events() -> Iterator[Event]:
        server._sleep(max(plan.reasoning_tokens for plan in plans), first=True)
        for index, plan in enumerate(plans):
            for position, (delta, lp) in enumerate(deltas(plan)):
                server._sleep(1 if position else 0)
                end = None if delta else plan.finish_reason
                yield chunk(
                    [{"index": index, "delta": delta, "logprobs": lp, "finish_reason": end}]
                )
        if include_usage:
            yield chunk([], usage=usage)
        yield None, "[DONE]"

    return events()


def _responses(server: FakeOpenAIServer, body: JSONDict) -> Reply:
    plan, created = fake.plan_response(body), int(time.time())
    call, item_id = plan.tool_call, new_id("fc_" if plan.tool_call is not None else "msg_")
    start = {
        **{key: body.get(key, default) for key, default in _ECHOED.items()},
        "id": new_id("resp_"),
        "object": "response",
        "created_at": created,
        "model": body["model"],
        "status": "in_progress",
        "output": [],
        "error": None,
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "service_tier": "default",
        "incomplete_details": None,
    }
    done: JSONDict
    if call is not None:
        kind, done, part = "function_call_arguments", {"arguments": call.arguments}, {}
        item: JSONDict = {
            "type": "function_call",
            "id": item_id,
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        }
    else:
        kind = "output_text" if plan.refusal is None else "refusal"
        done = {"text": plan.content} if plan.refusal is None else {"refusal": plan.refusal}
        text_only: JSONDict = {"annotations": [], "logprobs": []} if plan.refusal is None else {}
        part = {"type": kind, **done, **text_only}
        item = {"type": "message", "id": item_id, "role": "assistant", "content": [part]}
    usage = {
        "input_tokens": plan.prompt_tokens,
        "output_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
    }
    done_item = {**item, "status": "completed"}
    final = Response.model_validate(
        {
            **start,
            "status": "completed",
            "completed_at": created,
            "output": [done_item],
            "usage": usage,
        }
    )
    if not body.get("stream"):
        server._sleep(plan.completion_tokens, first=True)
        return final
    numbers = itertools.count()

    def event(event_type: str, **fields: Any) -> Event:
        fields.update(type=event_type, sequence_number=next(numbers))
        return event_type, _RESPONSE_EVENTS[event_type].model_validate(fields)

    def events() -> Iterator[Event]:
        yield event("response.created", response=Response.model_validate(start))
        yield event("response.in_progress", response=Response.model_validate(start))
        server._sleep(plan.reasoning_tokens, first=True)
        empty: JSONDict = {"arguments": ""} if call is not None else {"content": []}
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, **empty, "status": "in_progress"},
        )
        where: JSONDict = {"item_id": item_id, "output_index": 0}
        if call is None:  # a message: its one content part, empty, then filled by the deltas
            where["content_index"] = 0
            yield event(
                "response.content_part.added", part={**part, **dict.fromkeys(done, "")}, **where
            )
        extra: JSONDict = {"logprobs": []} if kind == "output_text" else {}
        for piece in plan.pieces:
            server._sleep(1)
            yield event(f"response.{kind}.delta", delta=piece, **where, **extra)
        yield event(f"response.{kind}.done", **done, **where, **extra)
        if call is None:
            yield event("response.content_part.done", part=part, **where)
        yield event("response.output_item.done", output_index=0, item=done_item)
        yield event("response.completed", response=final)

    return events()


def _embeddings(server: FakeOpenAIServer, body: JSONDict) -> Reply:
    raw, dimensions = body["input"], body.get("dimensions") or EMBEDDING_DIMENSIONS
    one = isinstance(raw, str) or all(isinstance(token, int) for token in raw)
    inputs: list[Any] = [raw] if one else raw  # one string, one token list, or a list of either
    vectors = [fake.embedding_vector(item, dimensions) for item in inputs]
    tokens = sum(len(i) if isinstance(i, list) else max(1, fake.estimate_tokens(i)) for i in inputs)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    reply = {"object": "list", "data": data, "model": body["model"], "usage": usage}
    response = CreateEmbeddingResponse.model_validate(reply).model_dump(exclude_unset=True)
    if body.get("encoding_format") == "base64":  # the SDK's type holds floats, the wire bytes
        for entry, vector in zip(response["data"], vectors, strict=True):
            entry["embedding"] = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
    server._sleep(0, first=True)
    return response


def _models(server: FakeOpenAIServer, body: JSONDict, model_id: str | None = None) -> Reply:
    models = [
        Model(id=m, object="model", created=1_700_000_000, owned_by="llmcache")
        for m in ([model_id] if model_id else _MODELS)
    ]
    listed = [model.model_dump(exclude_unset=True) for model in models]
    return models[0] if model_id else {"object": "list", "data": listed}


_ROUTES: Routes = {
    ("POST", "/v1/chat/completions"): (_chat_completions, ("model", "messages")),
    ("POST", "/v1/responses"): (_responses, ("model",)),
    ("POST", "/v1/embeddings"): (_embeddings, ("model", "input")),
    ("GET", "/v1/models(?:/([^/]+))?"): (_models, ()),
}


class _Handler(APIHandler):
    do_DELETE = APIHandler.do_GET  # answered, with a 404: no route takes it


class FakeOpenAIServer(LoopbackAPIServer):
    """An OpenAI-compatible HTTP server on ``127.0.0.1``, served from a daemon thread::

        with FakeOpenAIServer(latency_per_token=0.01) as server:
            client = OpenAI(base_url=server.base_url, api_key="test")
            client.chat.completions.create(model="gpt-4o-mini", messages=[...])
            assert server.requests == 1

    ``latency_per_token`` is slept per output token (streams sleep between chunks, other
    answers the total up front), ``base_latency`` before any answer (the time to first token);
    ``port=0`` binds a free port. ``requests`` and ``requests_by_path`` count every request
    received, the ones failed on purpose by :meth:`fail_next` included. ``base_url`` is
    ``http://127.0.0.1:PORT/v1``: OpenAI's paths do not start with ``/v1``.
    """

    _routes = _ROUTES
    _error = HTTPError
    # The wording of the errors the base answers itself: the same fields as
    # FakeAnthropicServer's, in OpenAI's words (the one difference the two blocks hold).
    _texts = ErrorTexts(
        missing="Missing required parameter: '{field}'.",
        invalid="Invalid request: {msg} at {loc}",
        malformed="Invalid request: {kind}: {exc}",
        not_found="Invalid URL ({method} {path})",
        unparsable="We could not parse the JSON body of your request.",
    )
    _request_id_header = "x-request-id"
    _base_path = "/v1"
    _handler = _Handler

    def abort_stream_after(self, n_chunks: int) -> None:
        """Make the next stream drop its connection after ``n_chunks`` events."""
        if n_chunks < 0:
            raise ValueError("n_chunks must be >= 0")
        self._cut_next_stream(n_chunks)
