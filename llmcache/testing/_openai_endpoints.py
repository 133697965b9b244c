"""The endpoints of ``FakeOpenAIServer``, one function each, and the routing table.

Each endpoint validates the request like the API does, asks ``_fake_model`` for the
answer, and sends it as the openai SDK's own type (``ChatCompletion``,
``ChatCompletionChunk``, ``Response`` and its stream events, ``CreateEmbeddingResponse``,
``Model``), through the ``Exchange`` the HTTP handler provides.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol, get_args
from urllib.parse import unquote, urlsplit

from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel

from llmcache.testing import _fake_model as fake

JSONDict = dict[str, Any]
#: What one streamed event is: its ``event:`` name (None for chat) and its data.
SSEEvent = tuple[str | None, BaseModel | str]

#: Default embedding dimension when the request does not pass ``dimensions``.
DEFAULT_EMBEDDING_DIMENSIONS = 8
SYSTEM_FINGERPRINT = "fp_llmcache_fake"
_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o3-mini",
           "text-embedding-3-small", "text-embedding-3-large")  # fmt: skip
# The Responses stream event classes by their ``type``: the SDK's union has ~60 members.
_RESPONSE_EVENTS: dict[str, type[BaseModel]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}


class Exchange(Protocol):
    """One HTTP request/response, as the endpoints see it."""

    path: str

    def send_json(self, status: int, body: BaseModel | JSONDict) -> None: ...

    def send_events(self, events: Iterator[SSEEvent]) -> None: ...

    def sleep_for(self, tokens: int, *, first: bool = False) -> None: ...


class HTTPError(Exception):
    """Raised by an endpoint to answer with an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _require(body: JSONDict, key: str, kind: type, message: str) -> Any:
    """``body[key]`` if it is a non-empty ``kind``; else the API's 400 error."""
    value = body.get(key)
    if not isinstance(value, kind) or not value:
        raise HTTPError(400, message, key)
    return value


def _usage(prompt_tokens: int, plans: list[fake.Plan]) -> JSONDict:
    completion = sum(plan.completion_tokens for plan in plans)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": sum(plan.reasoning_tokens for plan in plans),
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_completions(request: Exchange, body: JSONDict) -> None:
    model = _require(body, "model", str, "you must provide a model parameter")
    _require(body, "messages", list, "'messages' must be a non-empty array")
    n = body.get("n") or 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        raise HTTPError(400, "'n' must be an integer between 1 and 128", "n")
    plans = [fake.plan_chat_choice(body, index) for index in range(n)]
    texts = [fake.message_text(m) for m in body["messages"]]
    usage = _usage(fake.prompt_tokens(texts, body.get("tools")), plans)
    top_n, logprobs = body.get("top_logprobs") or 0, bool(body.get("logprobs"))
    head = {"id": new_id("chatcmpl-"), "created": int(time.time()), "model": model,
            "service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT}  # fmt: skip

    def token_logprobs(plan: fake.Plan, start: int, pieces: list[str]) -> JSONDict:
        tokens = [fake.token_logprob(p, plan.seed, start + i, top_n) for i, p in enumerate(pieces)]
        return {"content": tokens, "refusal": None}

    if not body.get("stream"):
        request.sleep_for(max(plan.completion_tokens for plan in plans), first=True)
        choices = []
        for index, plan in enumerate(plans):
            message: JSONDict = {"role": "assistant", "content": plan.content,
                                 "refusal": plan.refusal, "annotations": []}  # fmt: skip
            if plan.tool_call is not None:
                message["tool_calls"] = [_chat_tool_call(plan.tool_call)]
            choice_logprobs = token_logprobs(plan, 0, plan.pieces) if logprobs else None
            if choice_logprobs is not None and plan.content is None:
                choice_logprobs["content"] = None
            choices.append({"index": index, "message": message, "logprobs": choice_logprobs,
                            "finish_reason": plan.finish_reason})  # fmt: skip
        completion = {**head, "object": "chat.completion", "choices": choices, "usage": usage}
        request.send_json(200, ChatCompletion.model_validate(completion))
        return

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(choices: list[JSONDict], **extra: Any) -> SSEEvent:
        if include_usage:
            extra.setdefault("usage", None)
        fields = {**head, "object": "chat.completion.chunk", "choices": choices, **extra}
        return None, ChatCompletionChunk.model_validate(fields)

    def deltas(plan: fake.Plan) -> Iterator[tuple[JSONDict, JSONDict | None]]:
        """One choice's (delta, logprobs) pairs, without the final finish_reason one."""
        yield {"role": "assistant", "content": None if plan.content is None else "",
               "refusal": None}, None  # fmt: skip
        if plan.tool_call is not None:
            call = _chat_tool_call(plan.tool_call)
            call["function"]["arguments"] = ""
            yield {"tool_calls": [{"index": 0, **call}]}, None
            for piece in fake.split_pieces(plan.tool_call.arguments):
                yield {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, None
        elif plan.refusal is not None:
            for piece in fake.split_pieces(plan.refusal):
                yield {"refusal": piece}, None
        else:
            for position, piece in enumerate(plan.pieces):
                lp = token_logprobs(plan, position, [piece]) if logprobs else None
                yield {"content": piece}, lp

    def events() -> Iterator[SSEEvent]:
        sequences = []
        for index, plan in enumerate(plans):
            steps: list[JSONDict] = [
                {"index": index, "delta": delta, "logprobs": lp, "finish_reason": None}
                for delta, lp in deltas(plan)
            ]
            steps.append({"index": index, "delta": {}, "logprobs": None,
                          "finish_reason": plan.finish_reason})  # fmt: skip
            sequences.append(steps)
        request.sleep_for(max(plan.reasoning_tokens for plan in plans), first=True)
        # Choices are interleaved one token at a time, like the API does.
        for step in range(max(len(steps) for steps in sequences)):
            if step > 0:
                request.sleep_for(1)
            for steps in sequences:
                if step < len(steps):
                    yield chunk([steps[step]])
        if include_usage:
            yield chunk([], usage=usage)
        yield None, "[DONE]"

    request.send_events(events())


def _chat_tool_call(call: fake.ToolCall) -> JSONDict:
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": call.call_id, "type": "function", "function": function}


def _responses(request: Exchange, body: JSONDict) -> None:
    model = _require(body, "model", str, "Missing required parameter: 'model'.")
    if body.get("input") is None and body.get("prompt") is None:
        raise HTTPError(400, "Missing required parameter: 'input'.", "input")
    plan = fake.plan_response(body)
    call, item_id = plan.tool_call, new_id("fc_" if plan.tool_call is not None else "msg_")
    texts = [fake.message_text(item) for item in fake.responses_items(body)]
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    input_tokens = fake.prompt_tokens(texts, body.get("tools"))
    created = int(time.time())
    start = _response_fields(body, model, created)
    if call is not None:
        part: JSONDict = {}
        item: JSONDict = {"type": "function_call", "id": item_id, "call_id": call.call_id,
                "name": call.name, "arguments": call.arguments}  # fmt: skip
    elif plan.refusal is not None:
        part = {"type": "refusal", "refusal": plan.refusal}
        item = {"type": "message", "id": item_id, "role": "assistant", "content": [part]}
    else:
        part = {"type": "output_text", "text": plan.content, "annotations": [], "logprobs": []}
        item = {"type": "message", "id": item_id, "role": "assistant", "content": [part]}
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
        "total_tokens": input_tokens + plan.completion_tokens,
    }
    done_item = {**item, "status": "completed"}
    final = Response.model_validate({**start, "status": "completed", "completed_at": created,
                                     "output": [done_item], "usage": usage})  # fmt: skip
    if not body.get("stream"):
        request.sleep_for(plan.completion_tokens, first=True)
        request.send_json(200, final)
        return

    sequence_numbers = iter(range(1_000_000))

    def event(event_type: str, **fields: Any) -> SSEEvent:
        fields.update(type=event_type, sequence_number=next(sequence_numbers))
        return event_type, _RESPONSE_EVENTS[event_type].model_validate(fields)

    def deltas(kind: str, pieces: list[str], done: JSONDict) -> Iterator[SSEEvent]:
        where: JSONDict = {"item_id": item_id, "output_index": 0}
        if kind != "function_call_arguments":
            where["content_index"] = 0
            empty = {k: "" if isinstance(v, str) and k != "type" else v for k, v in part.items()}
            yield event("response.content_part.added", part=empty, **where)
        extra: JSONDict = {"logprobs": []} if kind == "output_text" else {}
        for piece in pieces:
            request.sleep_for(1)
            yield event(f"response.{kind}.delta", delta=piece, **where, **extra)
        yield event(f"response.{kind}.done", **done, **where, **extra)
        if kind != "function_call_arguments":
            yield event("response.content_part.done", part=part, **where)

    def events() -> Iterator[SSEEvent]:
        in_progress = Response.model_validate(start)
        yield event("response.created", response=in_progress)
        yield event("response.in_progress", response=in_progress)
        request.sleep_for(plan.reasoning_tokens, first=True)
        added: JSONDict = {**item, "status": "in_progress"}
        if call is not None:
            added["arguments"] = ""
            yield event("response.output_item.added", output_index=0, item=added)
            pieces = fake.split_pieces(call.arguments)
            yield from deltas("function_call_arguments", pieces, {"arguments": call.arguments})
        else:
            added["content"] = []
            yield event("response.output_item.added", output_index=0, item=added)
            if plan.refusal is not None:
                pieces = fake.split_pieces(plan.refusal)
                yield from deltas("refusal", pieces, {"refusal": plan.refusal})
            else:
                yield from deltas("output_text", plan.pieces, {"text": plan.content})
        yield event("response.output_item.done", output_index=0, item=done_item)
        yield event("response.completed", response=final)

    request.send_events(events())


def _response_fields(body: JSONDict, model: str, created: int) -> JSONDict:
    """An in-progress ``Response`` echoing the request's settings."""
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "service_tier": "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": (body.get("text") or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _embeddings(request: Exchange, body: JSONDict) -> None:
    model = _require(body, "model", str, "you must provide a model parameter")
    raw = body.get("input")
    tokenised = isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)
    if isinstance(raw, str) or tokenised:
        inputs: list[Any] = [raw]  # one string, or one pre-tokenised input
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise HTTPError(400, "'input' must be a non-empty string or array", "input")
    if not all(isinstance(i, str | list) for i in inputs):
        raise HTTPError(400, "'input' items must be strings or token arrays", "input")
    dimensions = body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 8192:
        raise HTTPError(400, "'dimensions' must be an integer >= 1", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise HTTPError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
    vectors = [fake.embedding_vector(item, dimensions) for item in inputs]
    tokens = sum(len(i) if isinstance(i, list) else max(1, fake.estimate_tokens(i)) for i in inputs)
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    response = CreateEmbeddingResponse.model_validate(
        {"object": "list", "data": data, "model": model, "usage": usage}
    ).model_dump(exclude_unset=True, by_alias=True)
    if encoding == "base64":  # the SDK's type holds floats; the wire carries float32 bytes
        for entry, vector in zip(response["data"], vectors, strict=True):
            packed = struct.pack(f"<{dimensions}f", *vector)
            entry["embedding"] = base64.b64encode(packed).decode("ascii")
    request.sleep_for(0, first=True)
    request.send_json(200, response)


def _model_object(model_id: str) -> JSONDict:
    model = Model(id=model_id, object="model", created=1_700_000_000, owned_by="llmcache")
    return model.model_dump(exclude_unset=True)


def _models(request: Exchange, body: JSONDict) -> None:
    request.send_json(200, {"object": "list", "data": [_model_object(m) for m in _MODELS]})


def _model(request: Exchange, body: JSONDict) -> None:
    path = urlsplit(request.path).path.rstrip("/")
    request.send_json(200, _model_object(unquote(path.removeprefix("/v1/models/"))))


Endpoint = Callable[[Exchange, JSONDict], None]
_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): _chat_completions,
    ("POST", "/v1/responses"): _responses,
    ("POST", "/v1/embeddings"): _embeddings,
    ("GET", "/v1/models"): _models,
}


def find_endpoint(method: str, path: str) -> Endpoint | None:
    """The endpoint for ``method`` and ``path`` (no trailing slash), None for a 404."""
    if method == "GET" and path.startswith("/v1/models/"):
        return _model
    return _ROUTES.get((method, path))
