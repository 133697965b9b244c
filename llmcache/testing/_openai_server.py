"""A local OpenAI-compatible HTTP server for tests and demos, built on the SDK's own types.

``FakeOpenAIServer`` speaks enough of the OpenAI REST API for the real ``openai`` SDK
(sync ``OpenAI`` and ``AsyncOpenAI``) to work against it without any network access::

    with FakeOpenAIServer(latency_per_token=0.01) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert server.requests == 1

Answers are deterministic (see ``_fake_model``): the same request always gets the same
content, different requests get different content. Every response carries a fresh ``id``
(like the real API), so a cached response can be told apart from a freshly generated one.
Each answer is an ``openai.types`` object (``ChatCompletion``, ``ChatCompletionChunk``,
``Response`` and its stream events, ``CreateEmbeddingResponse``), so what the server sends
is what the SDK parses.

Endpoints (under ``/v1``), one handler each:

* ``POST /chat/completions`` - text, ``n``, ``max_tokens``/``max_completion_tokens``,
  function tools, ``logprobs``/``top_logprobs``, ``response_format`` (``json_schema``,
  ``json_object``), refusals (any message containing ``REFUSE``), SSE streaming (optional
  ``stream_options.include_usage``).
* ``POST /responses`` - string or item-list ``input``, ``instructions``,
  ``max_output_tokens``, ``text.format`` json_schema, function tools, refusals, streaming
  with typed ``event:`` lines.
* ``POST /embeddings`` - ``str``/``list[str]``/token-list inputs, ``dimensions``,
  ``encoding_format`` ``float`` or ``base64``.
* ``GET /models`` and ``GET /models/{id}``.

Anything else answers 404 with an OpenAI-style error body.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self, cast, get_args
from urllib.parse import unquote, urlsplit

from openai.types import CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject
from pydantic import BaseModel

from llmcache.testing import _fake_model as fake
from llmcache.testing._loopback import LoopbackHTTPServer

__all__ = ["FakeOpenAIServer"]

JSONDict = dict[str, Any]
#: What one streamed event is: its ``event:`` name (None for chat) and its data.
SSEEvent = tuple[str | None, BaseModel | str]

#: Default embedding dimension when the request does not pass ``dimensions``.
DEFAULT_EMBEDDING_DIMENSIONS = 8
SYSTEM_FINGERPRINT = "fp_llmcache_fake"
_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "o3-mini",
           "text-embedding-3-small", "text-embedding-3-large")  # fmt: skip
_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", "timeout"),
    409: ("conflict", "conflict"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
}
# The Responses stream event classes by their ``type``: the SDK's union has ~60 members.
_RESPONSE_EVENTS: dict[str, type[BaseModel]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls
    for cls in get_args(get_args(ResponseStreamEvent)[0])
}


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def _error_body(status: int, message: str, param: str | None = None) -> JSONDict:
    error_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    error = ErrorObject(message=message, type=error_type, param=param, code=code)
    return {"error": error.model_dump(exclude_unset=True, by_alias=True)}


def _dump(model: BaseModel) -> str:
    """The model as the API sends it: the fields that were set, under their wire names."""
    return model.model_dump_json(exclude_unset=True, by_alias=True)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _require(body: JSONDict, key: str, kind: type, message: str) -> Any:
    """``body[key]`` if it is a non-empty ``kind``; else the API's 400 error."""
    value = body.get(key)
    if not isinstance(value, kind) or not value:
        raise _HTTPError(400, message, key)
    return value


# --------------------------------------------------------------------------------------
# The HTTP handler: routing, JSON and SSE writing, latency
# --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    @property
    def owner(self) -> FakeOpenAIServer:
        return cast(FakeOpenAIServer, self.server.owner)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = urlsplit(self.path).path.rstrip("/")
            fail_status = self.owner._record(path, body, dict(self.headers.items()))
            if fail_status is not None:
                message = f"Simulated failure (HTTP {fail_status})."
                self.send_json(fail_status, _error_body(fail_status, message), retry_ms="1")
                return
            if body is not None and not isinstance(body, dict):
                raise _HTTPError(400, "We could not parse the JSON body of your request.")
            route = _ROUTES.get((self.command, path))
            if route is None and self.command == "GET" and path.startswith("/v1/models/"):
                route = _model
            if route is None:
                raise _HTTPError(404, f"Invalid URL ({self.command} {self.path})")
            route(self, body or {})
        except _HTTPError as exc:
            self.send_json(exc.status, _error_body(exc.status, exc.message, exc.param))
        except OSError:  # the client went away
            self.close_connection = True

    def send_json(self, status: int, body: BaseModel | JSONDict, retry_ms: str = "") -> None:
        payload = _dump(body).encode() if isinstance(body, BaseModel) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", _new_id("req_"))
        self.send_header("openai-processing-ms", "1")
        if retry_ms:
            self.send_header("retry-after-ms", retry_ms)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def send_events(self, events: Iterator[SSEEvent]) -> None:
        """Stream ``events`` as Server-Sent Events in HTTP/1.1 chunks.

        After ``abort_stream_after(n)`` the connection is cut after n events, without the
        terminating chunk, so the client sees an incomplete body.
        """
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", _new_id("req_"))
        self.end_headers()
        abort_after = self.owner._take_abort()
        try:
            for sent, (name, data) in enumerate(events):
                if abort_after is not None and sent >= abort_after:
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                text = data if isinstance(data, str) else _dump(data)
                chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                self.wfile.write(f"{len(chunk.encode()):x}\r\n{chunk}\r\n".encode())
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # the client went away
            self.close_connection = True

    def sleep_for(self, tokens: int, *, first: bool = False) -> None:
        """Simulated generation time of ``tokens`` tokens, plus time to first token if first."""
        delay = self.owner.latency_per_token * tokens + (self.owner.base_latency if first else 0)
        if delay > 0:
            time.sleep(delay)


# --------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------


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


def _chat_completions(request: _Handler, body: JSONDict) -> None:
    model = _require(body, "model", str, "you must provide a model parameter")
    _require(body, "messages", list, "'messages' must be a non-empty array")
    n = body.get("n") or 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        raise _HTTPError(400, "'n' must be an integer between 1 and 128", "n")
    plans = [fake.plan_chat_choice(body, index) for index in range(n)]
    texts = [fake.message_text(m) for m in body["messages"]]
    usage = _usage(fake.prompt_tokens(texts, body.get("tools")), plans)
    top_n, logprobs = body.get("top_logprobs") or 0, bool(body.get("logprobs"))
    head = {"id": _new_id("chatcmpl-"), "created": int(time.time()), "model": model,
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


def _responses(request: _Handler, body: JSONDict) -> None:
    model = _require(body, "model", str, "Missing required parameter: 'model'.")
    if body.get("input") is None and body.get("prompt") is None:
        raise _HTTPError(400, "Missing required parameter: 'input'.", "input")
    plan = fake.plan_response(body)
    call, item_id = plan.tool_call, _new_id("fc_" if plan.tool_call is not None else "msg_")
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
        "id": _new_id("resp_"),
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


def _embeddings(request: _Handler, body: JSONDict) -> None:
    model = _require(body, "model", str, "you must provide a model parameter")
    raw = body.get("input")
    tokenised = isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw)
    if isinstance(raw, str) or tokenised:
        inputs: list[Any] = [raw]  # one string, or one pre-tokenised input
    elif isinstance(raw, list) and raw:
        inputs = raw
    else:
        raise _HTTPError(400, "'input' must be a non-empty string or array", "input")
    if not all(isinstance(i, str | list) for i in inputs):
        raise _HTTPError(400, "'input' items must be strings or token arrays", "input")
    dimensions = body.get("dimensions") or DEFAULT_EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 8192:
        raise _HTTPError(400, "'dimensions' must be an integer >= 1", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _HTTPError(400, "'encoding_format' must be 'float' or 'base64'", "encoding_format")
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


def _models(request: _Handler, body: JSONDict) -> None:
    request.send_json(200, {"object": "list", "data": [_model_object(m) for m in _MODELS]})


def _model(request: _Handler, body: JSONDict) -> None:
    path = urlsplit(request.path).path.rstrip("/")
    request.send_json(200, _model_object(unquote(path.removeprefix("/v1/models/"))))


_ROUTES: dict[tuple[str, str], Callable[[_Handler, JSONDict], None]] = {
    ("POST", "/v1/chat/completions"): _chat_completions,
    ("POST", "/v1/responses"): _responses,
    ("POST", "/v1/embeddings"): _embeddings,
    ("GET", "/v1/models"): _models,
}


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


class FakeOpenAIServer:
    """An OpenAI-compatible HTTP server on ``127.0.0.1`` running in a daemon thread.

    Args:
        latency_per_token: seconds slept per generated output token (streamed responses
            sleep between chunks; non-streamed responses sleep the total up front).
        base_latency: seconds slept before any response body (time to first token).
        port: TCP port to bind; ``0`` (the default) picks a free port.

    Counters (``requests``, ``requests_by_path``) count every HTTP request received,
    including the ones failed on purpose via :meth:`fail_next`.
    """

    def __init__(
        self, *, latency_per_token: float = 0.0, base_latency: float = 0.0, port: int = 0
    ) -> None:
        self.latency_per_token = latency_per_token
        self.base_latency = base_latency
        self._requested_port = port
        self._lock = threading.Lock()
        self._httpd: LoopbackHTTPServer | None = None
        self._requests = 0
        self._by_path: dict[str, int] = {}
        self._fail_remaining = 0
        self._fail_status = 500
        self._abort_after: int | None = None
        self._last_body: Any = None
        self._last_headers: dict[str, str] = {}

    def start(self) -> Self:
        """Bind and start serving (idempotent). Returns ``self``."""
        if self._httpd is None:
            # Clients hang up mid-response on purpose (aborted streams): no tracebacks.
            self._httpd = LoopbackHTTPServer(
                _Handler, self, port=self._requested_port, report_errors=False
            )
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; call start() first")
        return self._httpd.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` - pass it as ``base_url`` to ``OpenAI(...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Total number of HTTP requests received since start / the last reset."""
        with self._lock:
            return self._requests

    @property
    def requests_by_path(self) -> dict[str, int]:
        """A snapshot of request counts keyed by URL path (e.g. ``/v1/chat/completions``)."""
        with self._lock:
            return dict(self._by_path)

    @property
    def last_request_body(self) -> Any:
        """The parsed JSON body of the most recent request (``None`` if it had none)."""
        with self._lock:
            return self._last_body

    @property
    def last_request_headers(self) -> dict[str, str]:
        """The headers of the most recent request (names lower-cased)."""
        with self._lock:
            return dict(self._last_headers)

    def reset_counts(self) -> None:
        """Zero ``requests`` and ``requests_by_path``."""
        with self._lock:
            self._requests, self._by_path = 0, {}

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests (any path) with HTTP ``status`` and an error body.

        The SDK retries 408/409/429/5xx by default; retries consume failures too.
        """
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error code")
        with self._lock:
            self._fail_remaining, self._fail_status = n, status

    def abort_stream_after(self, n_chunks: int) -> None:
        """Make the next streamed response drop its connection after ``n_chunks`` events."""
        if n_chunks < 0:
            raise ValueError("n_chunks must be >= 0")
        with self._lock:
            self._abort_after = n_chunks

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> int | None:
        """Count a request; the HTTP status to fail it with, if ``fail_next`` asked for one."""
        with self._lock:
            self._requests += 1
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self._last_body = body
            self._last_headers = {k.lower(): v for k, v in headers.items()}
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                return self._fail_status
            return None

    def _take_abort(self) -> int | None:
        with self._lock:
            abort, self._abort_after = self._abort_after, None
            return abort
