"""A local, dependency-free, OpenAI-compatible HTTP server for tests and demos.

``FakeOpenAIServer`` speaks enough of the OpenAI REST API for the real ``openai`` SDK
(sync ``OpenAI`` and ``AsyncOpenAI``) to work against it without any network access::

    with FakeOpenAIServer(latency_per_token=0.01) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert server.requests == 1

Answers are deterministic: the same request always gets the same content, different
requests get different content. Every response carries a fresh ``id`` (like the real API),
so a cached response can be told apart from a freshly generated one.

Supported endpoints (all under ``/v1``):

* ``POST /chat/completions`` - text, ``n``, ``max_tokens``/``max_completion_tokens``,
  tools (function tool calls), ``logprobs``/``top_logprobs``, ``response_format``
  (``json_schema`` and ``json_object``), refusals (any message containing ``REFUSE``),
  streaming (SSE, optional ``stream_options.include_usage``).
* ``POST /responses`` - string or message-list ``input``, ``instructions``,
  ``max_output_tokens``, ``text.format`` json_schema, function tools, refusals, streaming
  with typed ``event:`` lines.
* ``POST /embeddings`` - ``str``/``list[str]``/token-list inputs, ``dimensions``,
  ``encoding_format`` ``float`` or ``base64``.
* ``GET /models`` and ``GET /models/{id}``.

Anything else answers 404 with an OpenAI-style error body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import unquote, urlsplit

from llmcache.testing._loopback import LoopbackHTTPServer

__all__ = ["FakeOpenAIServer"]

JSONDict = dict[str, Any]

#: Upper bound on the number of generated output tokens per choice.
MAX_OUTPUT_TOKENS = 512
#: Default embedding dimension when the request does not pass ``dimensions``.
DEFAULT_EMBEDDING_DIMENSIONS = 8
#: Model-name prefixes treated as reasoning models (they report ``reasoning_tokens``).
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
#: Text that, anywhere in the input, makes the model refuse.
REFUSAL_TRIGGER = "REFUSE"
REFUSAL_MESSAGE = "I'm sorry, but I can't help with that request."
SYSTEM_FINGERPRINT = "fp_llmcache_fake"

_MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o3-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
)

_WORDS = (
    "the", "cache", "answer", "model", "quickly", "returns", "a", "stable", "result",
    "for", "every", "request", "and", "saves", "time", "money", "tokens", "while",
    "keeping", "tenants", "safe", "from", "each", "other", "because", "keys", "are",
    "hashed", "carefully", "so", "repeated", "prompts", "never", "reach", "upstream",
    "again", "which", "makes", "latency", "drop", "to", "almost", "nothing", "in",
    "practice", "with", "clear", "metrics", "about", "hits", "misses", "costs",
    "simple", "data", "flows", "through", "fast", "local", "storage", "layers",
    "under", "load", "today",
)  # fmt: skip

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


# --------------------------------------------------------------------------------------
# Pure helpers: hashing, text generation, token estimates, schema examples
# --------------------------------------------------------------------------------------


def _stable_hash(*parts: Any) -> int:
    """A 64-bit hash of JSON-serialisable parts that is stable across processes."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=repr)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def _content_text(content: Any) -> str:
    """The plain text of a message ``content`` (a string or a list of content parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                for key in ("text", "refusal", "output", "transcript"):
                    value = part.get(key)
                    if isinstance(value, str):
                        texts.append(value)
                        break
        return "\n".join(texts)
    return json.dumps(content, sort_keys=True)


def _message_text(message: Any) -> str:
    """All text in a chat message or Responses input item (content, tool calls, outputs)."""
    if not isinstance(message, dict):
        return _content_text(message)
    texts = [_content_text(message.get("content"))]
    for key in ("output", "arguments", "name"):
        value = message.get(key)
        if isinstance(value, str):
            texts.append(value)
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            texts.append(json.dumps(call, sort_keys=True))
    return "\n".join(t for t in texts if t)


def _estimate_tokens(text: str) -> int:
    """The usual rough estimate: one token per four characters."""
    return math.ceil(len(text) / 4) if text else 0


def _split_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces whose concatenation is exactly ``text``."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces.append(tail)
    return pieces


def _sentence_tokens(seed: int, count: int) -> list[str]:
    """``count`` word tokens forming a sentence; a prefix of the tokens for ``count + k``."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(max(1, count))]
    words[0] = words[0].capitalize()
    tokens = [words[0]] + [" " + word for word in words[1:]]
    tokens[-1] += "."
    return tokens


def _natural_length(seed: int) -> int:
    return 8 + seed % 17


def _requested_length(body: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, MAX_OUTPUT_TOKENS)
    return None


def _is_reasoning_model(model: str) -> bool:
    return model.startswith(REASONING_MODEL_PREFIXES)


def _reasoning_tokens(model: str, seed: int) -> int:
    return 16 + (seed >> 8) % 48 if _is_reasoning_model(model) else 0


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        if not isinstance(node, dict):
            return {}
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
    return node


_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _example_for_schema(schema: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """A simple value that satisfies ``schema`` (required properties only)."""
    if not isinstance(schema, dict) or depth > 16:
        return "example"
    if "$ref" in schema and isinstance(schema["$ref"], str):
        return _example_for_schema(_resolve_ref(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _example_for_schema(non_null[0] if non_null else options[0], root, depth + 1)
    schema_type = schema.get("type")
    if isinstance(schema_type, list):
        non_null_types = [t for t in schema_type if t != "null"]
        schema_type = non_null_types[0] if non_null_types else "null"
    if schema_type is None:
        schema_type = "object" if "properties" in schema else "string"
    if schema_type == "string":
        fmt = schema.get("format")
        return _STRING_FORMATS.get(fmt, "example") if isinstance(fmt, str) else "example"
    if schema_type in ("integer", "number"):
        value: float = 1 if schema_type == "integer" else 1.5
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if isinstance(minimum, int | float) and value < minimum:
            value = minimum
        if isinstance(maximum, int | float) and value > maximum:
            value = maximum
        return int(value) if schema_type == "integer" else value
    if schema_type == "boolean":
        return True
    if schema_type == "null":
        return None
    if schema_type == "array":
        min_items = schema.get("minItems")
        if isinstance(min_items, int) and min_items > 0:
            return [_example_for_schema(schema.get("items"), root, depth + 1)] * min_items
        return []
    # object
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, dict) or not isinstance(required, list):
        return {}
    return {
        name: _example_for_schema(properties.get(name), root, depth + 1)
        for name in required
        if isinstance(name, str)
    }


def _schema_example_json(schema: Any) -> str:
    root = schema if isinstance(schema, dict) else {}
    return json.dumps(_example_for_schema(schema, root))


def _token_logprob(token: str, seed: int, position: int, top_n: int) -> JSONDict:
    rng = random.Random(_stable_hash(seed, position))
    logprob = -round(rng.random() * 0.5, 6)
    top: list[JSONDict] = [{"token": token, "bytes": list(token.encode()), "logprob": logprob}]
    for rank in range(1, top_n):
        alt = " " + rng.choice(_WORDS)
        lp = round(logprob - rank - rng.random(), 6)
        top.append({"token": alt, "bytes": list(alt.encode()), "logprob": lp})
    return {
        "token": token,
        "bytes": list(token.encode()),
        "logprob": logprob,
        "top_logprobs": top[:top_n],
    }


def _embedding_vector(item: Any, dimensions: int) -> list[float]:
    """A unit vector: a bag of hashed words plus a little of the exact input's hash.

    Inputs sharing words get similar vectors (handy for semantic-cache demos), equal
    inputs get equal vectors and different inputs get different vectors.
    """
    if isinstance(item, list):
        words = [str(token) for token in item]
    else:
        words = re.findall(r"\w+", str(item).lower()) or [str(item)]
    vector = [0.0] * dimensions
    for weight, key in [(1.0, ("w", w)) for w in words] + [(0.25, ("x", item))]:
        rng = random.Random(_stable_hash(key, dimensions))
        for i in range(dimensions):
            vector[i] += weight * rng.gauss(0.0, 1.0)
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    # Round through float32 so the float and base64 encodings carry identical values.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in vector))
    return list(struct.unpack(f"<{dimensions}f", packed))


# --------------------------------------------------------------------------------------
# Request planning: what the fake model "decides" to answer
# --------------------------------------------------------------------------------------


@dataclass
class _ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass
class _Plan:
    """The answer for one choice (chat) or one response (Responses API)."""

    content: str | None = None
    pieces: list[str] = field(default_factory=list)
    refusal: str | None = None
    tool_call: _ToolCall | None = None
    finish_reason: str = "stop"
    reasoning_tokens: int = 0
    seed: int = 0

    @property
    def visible_tokens(self) -> int:
        if self.tool_call is not None:
            return len(_split_pieces(self.tool_call.arguments)) + 2
        if self.refusal is not None:
            return len(_split_pieces(self.refusal))
        return len(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return self.visible_tokens + self.reasoning_tokens


def _wants_refusal(texts: list[str]) -> bool:
    return any(REFUSAL_TRIGGER in text for text in texts)


def _pick_chat_tool(body: Mapping[str, Any]) -> JSONDict | None:
    """The function tool the model should call, or ``None`` to answer with text."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    messages = body.get("messages") or []
    # After a tool result the model answers in prose (unless a tool is forced).
    last_role = messages[-1].get("role") if messages and isinstance(messages[-1], dict) else None
    if last_role == "tool" and choice in ("auto", None):
        return None
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        for tool in tools:
            if (tool.get("function") or {}).get("name") == named:
                return tool
    function_tools = [t for t in tools if t.get("type", "function") == "function"]
    return function_tools[0] if function_tools else None


def _pick_responses_tool(body: Mapping[str, Any], items: list[Any]) -> JSONDict | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    last_type = items[-1].get("type") if items and isinstance(items[-1], dict) else None
    if last_type == "function_call_output" and choice in ("auto", None):
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        for tool in tools:
            if tool.get("name") == choice.get("name"):
                return tool
    function_tools = [t for t in tools if t.get("type") == "function"]
    return function_tools[0] if function_tools else None


def _text_plan(seed: int, length: int | None, json_mode: bool) -> _Plan:
    tokens = _sentence_tokens(seed, length or _natural_length(seed))
    if json_mode:
        content = json.dumps({"answer": "".join(tokens)})
        return _Plan(content=content, pieces=_split_pieces(content), seed=seed)
    return _Plan(content="".join(tokens), pieces=tokens, seed=seed)


def _plan_chat_choice(body: Mapping[str, Any], index: int) -> _Plan:
    model = str(body.get("model"))
    messages = body.get("messages") or []
    seed = _stable_hash("chat", model, messages, index)
    reasoning = _reasoning_tokens(model, seed)
    if _wants_refusal([_message_text(m) for m in messages]):
        return _Plan(refusal=REFUSAL_MESSAGE, reasoning_tokens=reasoning, seed=seed)
    tool = _pick_chat_tool(body)
    if tool is not None:
        function = tool.get("function") or {}
        arguments = _schema_example_json(function.get("parameters") or {})
        call = _ToolCall(f"call_{seed:016x}", str(function.get("name", "tool")), arguments)
        return _Plan(
            tool_call=call, finish_reason="tool_calls", reasoning_tokens=reasoning, seed=seed
        )
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        content = _schema_example_json(schema)
        return _Plan(
            content=content, pieces=_split_pieces(content), reasoning_tokens=reasoning, seed=seed
        )
    json_mode = isinstance(response_format, dict) and response_format.get("type") == "json_object"
    length = _requested_length(body, "max_completion_tokens", "max_tokens")
    plan = _text_plan(seed, length, json_mode)
    plan.reasoning_tokens = reasoning
    return plan


def _responses_items(body: Mapping[str, Any]) -> list[Any]:
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return list(raw) if isinstance(raw, list) else [raw]


def _plan_response(body: Mapping[str, Any]) -> _Plan:
    model = str(body.get("model"))
    items = _responses_items(body)
    instructions = body.get("instructions")
    seed = _stable_hash("responses", model, instructions, items)
    reasoning = _reasoning_tokens(model, seed)
    texts = [_message_text(item) for item in items]
    if isinstance(instructions, str):
        texts.append(instructions)
    if _wants_refusal(texts):
        return _Plan(refusal=REFUSAL_MESSAGE, reasoning_tokens=reasoning, seed=seed)
    tool = _pick_responses_tool(body, items)
    if tool is not None:
        arguments = _schema_example_json(tool.get("parameters") or {})
        call = _ToolCall(f"call_{seed:016x}", str(tool.get("name", "tool")), arguments)
        return _Plan(tool_call=call, reasoning_tokens=reasoning, seed=seed)
    fmt = (body.get("text") or {}).get("format") or {}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        content = _schema_example_json(fmt.get("schema") or {})
        return _Plan(
            content=content, pieces=_split_pieces(content), reasoning_tokens=reasoning, seed=seed
        )
    json_mode = isinstance(fmt, dict) and fmt.get("type") == "json_object"
    plan = _text_plan(seed, _requested_length(body, "max_output_tokens"), json_mode)
    plan.reasoning_tokens = reasoning
    return plan


def _chat_prompt_tokens(body: Mapping[str, Any]) -> int:
    text = "\n".join(_message_text(m) for m in body.get("messages") or [])
    extra = json.dumps(body["tools"]) if body.get("tools") else ""
    return max(1, _estimate_tokens(text) + _estimate_tokens(extra))


def _responses_prompt_tokens(body: Mapping[str, Any]) -> int:
    texts = [_message_text(item) for item in _responses_items(body)]
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    extra = json.dumps(body["tools"]) if body.get("tools") else ""
    return max(1, _estimate_tokens("\n".join(texts)) + _estimate_tokens(extra))


def _chat_usage(prompt_tokens: int, plans: list[_Plan]) -> JSONDict:
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


# --------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------


class _AbortStream(Exception):
    """Raised inside the handler to drop a streamed response's connection."""


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def _error_body(status: int, message: str, param: str | None = None) -> JSONDict:
    error_type, code = _ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class _SSEWriter:
    """Writes Server-Sent Events as HTTP/1.1 chunks; may abort after N events."""

    def __init__(self, handler: _Handler, abort_after: int | None) -> None:
        self._handler = handler
        self._abort_after = abort_after
        self.sent = 0

    def send(self, data: JSONDict | str, event: str | None = None) -> None:
        if self._abort_after is not None and self.sent >= self._abort_after:
            raise _AbortStream
        payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        text = (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
        self._handler.write_chunk(text.encode())
        self.sent += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    @property
    def owner(self) -> FakeOpenAIServer:
        return cast(FakeOpenAIServer, cast(LoopbackHTTPServer, self.server).owner)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- low-level writing

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send_json(
        self, status: int, body: JSONDict, headers: Mapping[str, str] | None = None
    ) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-request-id", _new_id("req_"))
        self.send_header("openai-processing-ms", "1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_error(self, status: int, message: str, param: str | None = None) -> None:
        self._send_json(status, _error_body(status, message, param))

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", _new_id("req_"))
        self.end_headers()
        self.wfile.flush()

    def _stream(self, events: Callable[[_SSEWriter], None]) -> None:
        self._start_stream()
        writer = _SSEWriter(self, self.owner._take_abort())
        try:
            events(writer)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except _AbortStream:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client went away
            self.close_connection = True

    # -- dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            path = urlsplit(self.path).path.rstrip("/")
            fail_status = self.owner._record(path, body, dict(self.headers.items()))
            if fail_status is not None:
                self._send_json(
                    fail_status,
                    _error_body(fail_status, f"Simulated failure (HTTP {fail_status})."),
                    {"retry-after-ms": "1"},
                )
                return
            if body is not None and not isinstance(body, dict):
                raise _HTTPError(400, "We could not parse the JSON body of your request.")
            request: JSONDict = body or {}
            if method == "POST" and path == "/v1/chat/completions":
                self._chat_completions(request)
            elif method == "POST" and path == "/v1/responses":
                self._responses(request)
            elif method == "POST" and path == "/v1/embeddings":
                self._embeddings(request)
            elif method == "GET" and path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [_model(m) for m in _MODELS]})
            elif method == "GET" and path.startswith("/v1/models/"):
                self._send_json(200, _model(unquote(path.removeprefix("/v1/models/"))))
            else:
                raise _HTTPError(404, f"Invalid URL ({method} {self.path})")
        except _HTTPError as exc:
            self._send_error(exc.status, exc.message, exc.param)
        except OSError:
            self.close_connection = True

    # -- endpoints

    def _sleep(self, tokens: int) -> None:
        delay = self.owner.base_latency + self.owner.latency_per_token * tokens
        if delay > 0:
            time.sleep(delay)

    def _token_sleep(self, tokens: int = 1) -> None:
        if self.owner.latency_per_token > 0 and tokens > 0:
            time.sleep(self.owner.latency_per_token * tokens)

    def _chat_completions(self, body: JSONDict) -> None:
        model = body.get("model")
        messages = body.get("messages")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", "model")
        if not isinstance(messages, list) or not messages:
            raise _HTTPError(400, "'messages' must be a non-empty array", "messages")
        n = body.get("n") or 1
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
            raise _HTTPError(400, "'n' must be an integer between 1 and 128", "n")
        plans = [_plan_chat_choice(body, i) for i in range(n)]
        top_n = body.get("top_logprobs") or 0
        logprobs = bool(body.get("logprobs"))
        prompt_tokens = _chat_prompt_tokens(body)
        completion_id = _new_id("chatcmpl-")
        created = int(time.time())
        if body.get("stream"):
            stream_options = body.get("stream_options") or {}
            include_usage = bool(stream_options.get("include_usage"))
            self._stream(
                lambda w: self._chat_stream(
                    w,
                    completion_id,
                    created,
                    model,
                    plans,
                    prompt_tokens,
                    logprobs,
                    top_n,
                    include_usage,
                )
            )
            return
        self._sleep(max(plan.completion_tokens for plan in plans))
        choices = []
        for index, plan in enumerate(plans):
            message: JSONDict = {
                "role": "assistant",
                "content": plan.content,
                "refusal": plan.refusal,
                "annotations": [],
            }
            if plan.tool_call is not None:
                message["tool_calls"] = [_chat_tool_call(plan.tool_call)]
            choice_logprobs = None
            if logprobs:
                choice_logprobs = {
                    "content": [
                        _token_logprob(tok, plan.seed, i, top_n)
                        for i, tok in enumerate(plan.pieces)
                    ]
                    if plan.content is not None
                    else None,
                    "refusal": None,
                }
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": choice_logprobs,
                    "finish_reason": plan.finish_reason,
                }
            )
        self._send_json(
            200,
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": _chat_usage(prompt_tokens, plans),
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            },
        )

    def _chat_stream(
        self,
        writer: _SSEWriter,
        completion_id: str,
        created: int,
        model: str,
        plans: list[_Plan],
        prompt_tokens: int,
        logprobs: bool,
        top_n: int,
        include_usage: bool,
    ) -> None:
        def chunk(choices: list[JSONDict]) -> JSONDict:
            data: JSONDict = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = None
            return data

        def choice(index: int, delta: JSONDict, **extra: Any) -> JSONDict:
            return {
                "index": index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": None,
                **extra,
            }

        # Per-choice sequences of chunk "choices" entries; emitted round-robin like the API.
        sequences: list[list[JSONDict]] = []
        for index, plan in enumerate(plans):
            seq: list[JSONDict] = []
            first: JSONDict = {"role": "assistant", "content": None, "refusal": None}
            if plan.content is not None:
                first["content"] = ""
            seq.append(choice(index, first))
            if plan.tool_call is not None:
                call = plan.tool_call
                head = {
                    "index": 0,
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
                seq.append(choice(index, {"tool_calls": [head]}))
                for piece in _split_pieces(call.arguments):
                    part = {"index": 0, "function": {"arguments": piece}}
                    seq.append(choice(index, {"tool_calls": [part]}))
            elif plan.refusal is not None:
                for piece in _split_pieces(plan.refusal):
                    seq.append(choice(index, {"refusal": piece}))
            else:
                for position, piece in enumerate(plan.pieces):
                    lp = None
                    if logprobs:
                        token_lp = _token_logprob(piece, plan.seed, position, top_n)
                        lp = {"content": [token_lp], "refusal": None}
                    seq.append(choice(index, {"content": piece}, logprobs=lp))
            seq.append(choice(index, {}, finish_reason=plan.finish_reason))
            sequences.append(seq)

        time.sleep(self.owner.base_latency)
        self._token_sleep(max(plan.reasoning_tokens for plan in plans))
        for step in range(max(len(seq) for seq in sequences)):
            if step > 0:
                self._token_sleep()
            for seq in sequences:
                if step < len(seq):
                    writer.send(chunk([seq[step]]))
        if include_usage:
            usage_chunk = chunk([])
            usage_chunk["usage"] = _chat_usage(prompt_tokens, plans)
            writer.send(usage_chunk)
        writer.send("[DONE]")

    def _responses(self, body: JSONDict) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "Missing required parameter: 'model'.", "model")
        if body.get("input") is None and body.get("prompt") is None:
            raise _HTTPError(400, "Missing required parameter: 'input'.", "input")
        plan = _plan_response(body)
        response_id = _new_id("resp_")
        item_id = _new_id("fc_" if plan.tool_call is not None else "msg_")
        created = int(time.time())
        prompt_tokens = _responses_prompt_tokens(body)
        final = _response_object(body, response_id, created, model)
        final["status"] = "completed"
        final["completed_at"] = created
        final["output"] = [_response_output_item(plan, item_id, done=True)]
        final["usage"] = {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": plan.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": plan.reasoning_tokens},
            "total_tokens": prompt_tokens + plan.completion_tokens,
        }
        if body.get("stream"):
            start = _response_object(body, response_id, created, model)
            self._stream(lambda w: self._responses_stream(w, plan, item_id, start, final))
            return
        self._sleep(plan.completion_tokens)
        self._send_json(200, final)

    def _responses_stream(
        self, writer: _SSEWriter, plan: _Plan, item_id: str, start: JSONDict, final: JSONDict
    ) -> None:
        sequence = iter(range(1_000_000))

        def emit(event_type: str, **fields: Any) -> None:
            event = {"type": event_type, "sequence_number": next(sequence), **fields}
            writer.send(event, event=event_type)

        where = {"item_id": item_id, "output_index": 0}
        emit("response.created", response=start)
        emit("response.in_progress", response=start)
        time.sleep(self.owner.base_latency)
        self._token_sleep(plan.reasoning_tokens)
        emit(
            "response.output_item.added", output_index=0, item=_response_output_item(plan, item_id)
        )
        if plan.tool_call is not None:
            for piece in _split_pieces(plan.tool_call.arguments):
                self._token_sleep()
                emit("response.function_call_arguments.delta", delta=piece, **where)
            emit(
                "response.function_call_arguments.done", arguments=plan.tool_call.arguments, **where
            )
        elif plan.refusal is not None:
            emit("response.content_part.added", content_index=0, part=_refusal_part(""), **where)
            for piece in _split_pieces(plan.refusal):
                self._token_sleep()
                emit("response.refusal.delta", content_index=0, delta=piece, **where)
            emit("response.refusal.done", content_index=0, refusal=plan.refusal, **where)
            emit(
                "response.content_part.done",
                content_index=0,
                part=_refusal_part(plan.refusal),
                **where,
            )
        else:
            text = plan.content or ""
            emit("response.content_part.added", content_index=0, part=_text_part(""), **where)
            for piece in plan.pieces:
                self._token_sleep()
                emit(
                    "response.output_text.delta", content_index=0, delta=piece, logprobs=[], **where
                )
            emit("response.output_text.done", content_index=0, text=text, logprobs=[], **where)
            emit("response.content_part.done", content_index=0, part=_text_part(text), **where)
        emit("response.output_item.done", output_index=0, item=final["output"][0])
        emit("response.completed", response=final)

    def _embeddings(self, body: JSONDict) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _HTTPError(400, "you must provide a model parameter", "model")
        raw = body.get("input")
        inputs: list[Any]
        if isinstance(raw, str):
            inputs = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
            inputs = [raw]  # a single pre-tokenised input
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
            raise _HTTPError(
                400, "'encoding_format' must be 'float' or 'base64'", "encoding_format"
            )
        data = []
        for index, item in enumerate(inputs):
            vector = _embedding_vector(item, dimensions)
            embedding: list[float] | str = vector
            if encoding == "base64":
                packed = struct.pack(f"<{dimensions}f", *vector)
                embedding = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(i) if isinstance(i, list) else max(1, _estimate_tokens(i)) for i in inputs)
        self._sleep(0)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def _model(model_id: str) -> JSONDict:
    return {"id": model_id, "object": "model", "created": 1_700_000_000, "owned_by": "llmcache"}


def _chat_tool_call(call: _ToolCall) -> JSONDict:
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _text_part(text: str) -> JSONDict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _refusal_part(refusal: str) -> JSONDict:
    return {"type": "refusal", "refusal": refusal}


def _response_output_item(plan: _Plan, item_id: str, *, done: bool = False) -> JSONDict:
    status = "completed" if done else "in_progress"
    if plan.tool_call is not None:
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": plan.tool_call.call_id,
            "name": plan.tool_call.name,
            "arguments": plan.tool_call.arguments if done else "",
            "status": status,
        }
    content: list[JSONDict] = []
    if done:
        if plan.refusal is not None:
            content = [_refusal_part(plan.refusal)]
        else:
            content = [_text_part(plan.content or "")]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _response_object(
    body: Mapping[str, Any], response_id: str, created: int, model: str
) -> JSONDict:
    text_config = body.get("text") or {}
    return {
        "id": response_id,
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
        "text": {"format": text_config.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
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

    # -- lifecycle

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
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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

    # -- counters and inspection

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
            self._requests = 0
            self._by_path = {}

    # -- fault injection

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests (any path) with HTTP ``status`` and an error body.

        The SDK retries 408/409/429/5xx by default; retries consume failures too.
        """
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error code")
        with self._lock:
            self._fail_remaining = n
            self._fail_status = status

    def abort_stream_after(self, n_chunks: int) -> None:
        """Make the next streamed response drop its connection after ``n_chunks`` events.

        The response is sent with chunked transfer encoding and the connection is closed
        without the terminating chunk, so the client sees an incomplete body and raises.
        """
        if n_chunks < 0:
            raise ValueError("n_chunks must be >= 0")
        with self._lock:
            self._abort_after = n_chunks

    # -- called from handler threads

    def _record(self, path: str, body: Any, headers: dict[str, str]) -> int | None:
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
