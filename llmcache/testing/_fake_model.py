"""The deterministic "model" behind ``FakeOpenAIServer``: what it answers, no HTTP.

The same request always gets the same answer and different requests get different ones:
every choice is seeded by a stable hash of the request. ``plan_chat_choice`` and
``plan_response`` decide an answer (text, JSON, a tool call or a refusal) and its token
counts; ``embedding_vector`` and ``token_logprob`` give the numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSONDict = dict[str, Any]

#: Upper bound on the number of generated output tokens per choice.
MAX_OUTPUT_TOKENS = 512
#: Model-name prefixes treated as reasoning models (they report ``reasoning_tokens``).
REASONING_MODEL_PREFIXES = ("o1", "o3", "o4", "gpt-5")
#: Text that, anywhere in the input, makes the model refuse.
REFUSAL_TRIGGER = "REFUSE"
REFUSAL_MESSAGE = "I'm sorry, but I can't help with that request."

WORDS = (
    "the", "cache", "answer", "model", "quickly", "returns", "a", "stable", "result",
    "for", "every", "request", "and", "saves", "time", "money", "tokens", "while",
    "keeping", "tenants", "safe", "from", "each", "other", "because", "keys", "are",
    "hashed", "carefully", "so", "repeated", "prompts", "never", "reach", "upstream",
    "again", "which", "makes", "latency", "drop", "to", "almost", "nothing", "in",
    "practice", "with", "clear", "metrics", "about", "hits", "misses", "costs",
    "simple", "data", "flows", "through", "fast", "local", "storage", "layers",
    "under", "load", "today",
)  # fmt: skip

_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of JSON-serialisable parts that is stable across processes."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=repr)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")


def estimate_tokens(text: str) -> int:
    """The usual rough estimate: one token per four characters."""
    return math.ceil(len(text) / 4) if text else 0


def split_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces whose concatenation is exactly ``text``."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail and pieces:
        pieces[-1] += tail
    elif tail:
        pieces.append(tail)
    return pieces


def _content_text(content: Any) -> str:
    """The plain text of a message ``content`` (a string or a list of content parts)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        return json.dumps(content, sort_keys=True)
    texts = []
    for part in content:
        if isinstance(part, dict):
            part = next((part[k] for k in ("text", "refusal", "output", "transcript")
                         if isinstance(part.get(k), str)), None)  # fmt: skip
        if isinstance(part, str):
            texts.append(part)
    return "\n".join(texts)


def message_text(message: Any) -> str:
    """All text in a chat message or Responses input item (content, tool calls, outputs)."""
    if not isinstance(message, dict):
        return _content_text(message)
    texts = [_content_text(message.get("content"))]
    texts += [
        message[k] for k in ("output", "arguments", "name") if isinstance(message.get(k), str)
    ]
    calls = message.get("tool_calls") or []
    texts += [json.dumps(call, sort_keys=True) for call in calls if isinstance(call, dict)]
    return "\n".join(t for t in texts if t)


def _resolve_ref(ref: str, root: Mapping[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in filter(None, ref.lstrip("#").strip("/").split("/")):
        if not isinstance(node, dict):
            return {}
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
    return node


def _example_for_schema(schema: Any, root: Mapping[str, Any], depth: int = 0) -> Any:
    """A simple value that satisfies ``schema`` (required properties only)."""
    if not isinstance(schema, dict) or depth > 16:
        return "example"
    if isinstance(schema.get("$ref"), str):
        return _example_for_schema(_resolve_ref(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return _example_for_schema((non_null or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "string":
        fmt = schema.get("format")
        return _STRING_FORMATS.get(fmt, "example") if isinstance(fmt, str) else "example"
    if kind in ("integer", "number"):
        value: float = 1 if kind == "integer" else 1.5
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if isinstance(minimum, int | float) and value < minimum:
            value = minimum
        if isinstance(maximum, int | float) and value > maximum:
            value = maximum
        return int(value) if kind == "integer" else value
    if kind in ("boolean", "null"):
        return True if kind == "boolean" else None
    if kind == "array":
        min_items = schema.get("minItems")
        if isinstance(min_items, int) and min_items > 0:
            return [_example_for_schema(schema.get("items"), root, depth + 1)] * min_items
        return []
    properties, required = schema.get("properties"), schema.get("required")
    if not isinstance(properties, dict) or not isinstance(required, list):
        return {}
    return {
        name: _example_for_schema(properties.get(name), root, depth + 1)
        for name in required
        if isinstance(name, str)
    }


def schema_example_json(schema: Any) -> str:
    return json.dumps(_example_for_schema(schema, schema if isinstance(schema, dict) else {}))


def token_logprob(token: str, seed: int, position: int, top_n: int) -> JSONDict:
    """A ``ChatCompletionTokenLogprob``-shaped dict; the token is its own top alternative."""
    rng = random.Random(stable_hash(seed, position))
    logprob = -round(rng.random() * 0.5, 6)
    top: list[JSONDict] = [{"token": token, "bytes": list(token.encode()), "logprob": logprob}]
    for rank in range(1, top_n):
        alt = " " + rng.choice(WORDS)
        lp = round(logprob - rank - rng.random(), 6)
        top.append({"token": alt, "bytes": list(alt.encode()), "logprob": lp})
    return {**top[0], "top_logprobs": top[:top_n]}


def embedding_vector(item: Any, dimensions: int) -> list[float]:
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
        rng = random.Random(stable_hash(key, dimensions))
        for i in range(dimensions):
            vector[i] += weight * rng.gauss(0.0, 1.0)
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    # Round through float32 so the float and base64 encodings carry identical values.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in vector))
    return list(struct.unpack(f"<{dimensions}f", packed))


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass
class Plan:
    """The answer for one choice (chat) or one response (Responses API)."""

    content: str | None = None
    pieces: list[str] = field(default_factory=list)
    refusal: str | None = None
    tool_call: ToolCall | None = None
    finish_reason: str = "stop"
    reasoning_tokens: int = 0
    seed: int = 0

    @property
    def completion_tokens(self) -> int:
        if self.tool_call is not None:
            visible = len(split_pieces(self.tool_call.arguments)) + 2
        elif self.refusal is not None:
            visible = len(split_pieces(self.refusal))
        else:
            visible = len(self.pieces)
        return visible + self.reasoning_tokens


def _pick_tool(tools: list[JSONDict], choice: Any, named: Any, after_result: bool) -> Any:
    """The function tool (``{"type", "name", "parameters"}``) to call, or None for text."""
    if not tools or choice == "none" or (after_result and choice in ("auto", None)):
        return None  # after a tool result the model answers in prose, unless a tool is forced
    if named is not None:
        for tool in tools:
            if tool.get("name") == named:
                return tool
    return next((t for t in tools if t.get("type") == "function"), None)


def _requested_length(body: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, MAX_OUTPUT_TOKENS)
    return None


def _plan(seed: int, model: str, texts: list[str], tool: Any, fmt: Any, length: int | None) -> Plan:
    """The answer, in order of precedence: refusal, tool call, JSON schema, text or JSON text."""
    reasoning = 16 + (seed >> 8) % 48 if model.startswith(REASONING_MODEL_PREFIXES) else 0
    if any(REFUSAL_TRIGGER in text for text in texts):
        return Plan(refusal=REFUSAL_MESSAGE, reasoning_tokens=reasoning, seed=seed)
    if tool is not None:
        arguments = schema_example_json(tool.get("parameters") or {})
        call = ToolCall(f"call_{seed:016x}", str(tool.get("name", "tool")), arguments)
        return Plan(tool_call=call, reasoning_tokens=reasoning, seed=seed)
    fmt = fmt if isinstance(fmt, dict) else {}
    if fmt.get("type") == "json_schema":
        content = schema_example_json(fmt.get("schema") or {})
        return Plan(content, split_pieces(content), reasoning_tokens=reasoning, seed=seed)
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(max(1, length or 8 + seed % 17))]
    # Word tokens: the answer to max_tokens=n is a prefix of the answer to n + k.
    tokens = [words[0].capitalize()] + [" " + word for word in words[1:]]
    tokens[-1] += "."
    if fmt.get("type") == "json_object":
        content = json.dumps({"answer": "".join(tokens)})
        return Plan(content, split_pieces(content), reasoning_tokens=reasoning, seed=seed)
    return Plan("".join(tokens), tokens, reasoning_tokens=reasoning, seed=seed)


def plan_chat_choice(body: Mapping[str, Any], index: int) -> Plan:
    model, messages = str(body.get("model")), body.get("messages") or []
    tools = [
        {"type": t.get("type", "function"), **(t.get("function") or {})}
        for t in body.get("tools") or []
        if isinstance(t, dict)
    ]
    choice = body.get("tool_choice", "auto")
    named = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    tool = _pick_tool(tools, choice, named, last.get("role") == "tool")
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        response_format = {"type": "json_schema", **(response_format.get("json_schema") or {})}
    plan = _plan(
        stable_hash("chat", model, messages, index),
        model,
        [message_text(m) for m in messages],
        tool,
        response_format,
        _requested_length(body, "max_completion_tokens", "max_tokens"),
    )
    if plan.tool_call is not None:
        plan.finish_reason = "tool_calls"
    return plan


def responses_items(body: Mapping[str, Any]) -> list[Any]:
    raw = body.get("input")
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return list(raw) if isinstance(raw, list) else [raw]


def plan_response(body: Mapping[str, Any]) -> Plan:
    model, items = str(body.get("model")), responses_items(body)
    instructions = body.get("instructions")
    texts = [message_text(item) for item in items]
    if isinstance(instructions, str):
        texts.append(instructions)
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice", "auto")
    named = (
        choice.get("name")
        if isinstance(choice, dict) and choice.get("type") == "function"
        else None
    )
    last = items[-1] if items and isinstance(items[-1], dict) else {}
    tool = _pick_tool(tools, choice, named, last.get("type") == "function_call_output")
    return _plan(
        stable_hash("responses", model, instructions, items),
        model,
        texts,
        tool,
        (body.get("text") or {}).get("format"),
        _requested_length(body, "max_output_tokens"),
    )


def prompt_tokens(texts: list[str], tools: Any) -> int:
    extra = json.dumps(tools) if tools else ""
    return max(1, estimate_tokens("\n".join(texts)) + estimate_tokens(extra))
