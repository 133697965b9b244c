"""The deterministic "model" behind ``FakeOpenAIServer``: what it answers, without HTTP.

Every answer is seeded by a stable hash of the request: the same request always gets the same
answer (text, JSON, a tool call or a refusal), different requests different ones.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
import struct
from dataclasses import dataclass
from typing import Any

JSONDict = dict[str, Any]

MAX_OUTPUT_TOKENS = 512  # per choice
REASONING_MODELS = ("o1", "o3", "o4", "gpt-5")  # prefixes: these report reasoning tokens
REFUSAL_TRIGGER = "REFUSE"  # anywhere in the input, it makes the model refuse
REFUSAL = "I'm sorry, but I can't help with that request."
WORDS = (
    "the",
    "cache",
    "answer",
    "model",
    "quickly",
    "returns",
    "a",
    "stable",
    "result",
    "for",
    "every",
    "request",
    "and",
    "saves",
    "time",
    "money",
    "tokens",
    "while",
    "keeping",
    "tenants",
    "safe",
    "from",
    "each",
    "other",
    "because",
    "keys",
    "are",
    "hashed",
    "carefully",
    "so",
    "repeated",
    "prompts",
    "never",
    "reach",
    "upstream",
    "again",
    "which",
    "makes",
    "latency",
    "drop",
    "to",
    "almost",
    "nothing",
    "in",
    "practice",
    "with",
    "clear",
    "metrics",
    "about",
    "hits",
    "misses",
    "costs",
    "simple",
    "data",
    "flows",
    "through",
    "fast",
    "local",
    "storage",
    "layers",
    "under",
    "load",
    "today",
)
_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_LABELS = frozenset({"role", "type", "id", "call_id", "tool_call_id", "status"})


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of JSON-serialisable parts, the same in every process."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=repr)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)  # the usual rough estimate: four characters a token


def split_pieces(text: str) -> list[str]:
    """Word-sized pieces (leading spaces kept) whose concatenation is exactly ``text``."""
    return re.findall(r"\s*\S+\s*\Z|\s*\S+", text) or ([text] if text else [])


def texts(value: Any) -> list[str]:
    """Every string a prompt is made of (contents, tool calls, outputs), not its labels."""
    if isinstance(value, list):
        value = dict(enumerate(value))
    if not isinstance(value, dict):
        return [value] if isinstance(value, str) else []
    return [text for key, item in value.items() if key not in _LABELS for text in texts(item)]


def prompt_tokens(prompt: Any, tools: Any) -> int:
    tool_text = json.dumps(tools) if tools else ""
    return max(1, estimate_tokens("\n".join(texts(prompt))) + estimate_tokens(tool_text))


def schema_example(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A simple value that satisfies a JSON schema (required properties only)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 16:
        return "example"
    if isinstance(schema.get("$ref"), str):  # a local pointer such as "#/$defs/Address"
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return schema_example(node, root, depth + 1)
    if "const" in schema or schema.get("enum"):
        return schema["const"] if "const" in schema else schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o != {"type": "null"}] or schema[key]
            return schema_example(options[0], root, depth + 1)
    kind = schema.get("type") or ("object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if isinstance(name, str)]
        return {name: schema_example(properties.get(name), root, depth + 1) for name in required}
    if kind == "array":
        return [schema_example(schema.get("items"), root, depth + 1)] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        value = max(1 if kind == "integer" else 1.5, schema.get("minimum", -math.inf))
        value = min(value, schema.get("maximum", math.inf))
        return int(value) if kind == "integer" else value
    if kind == "string":
        return _STRING_FORMATS.get(str(schema.get("format")), "example")
    return True if kind == "boolean" else None


def token_logprob(token: str, seed: int, position: int, top_n: int) -> JSONDict:
    """A ``ChatCompletionTokenLogprob`` as a dict; the token is its own top alternative."""
    rng = random.Random(stable_hash(seed, position))
    logprob = -round(rng.random() * 0.5, 6)
    top: list[JSONDict] = [{"token": token, "bytes": list(token.encode()), "logprob": logprob}]
    for rank in range(1, top_n):
        alt = " " + rng.choice(WORDS)
        lp = round(logprob - rank - rng.random(), 6)
        top.append({"token": alt, "bytes": list(alt.encode()), "logprob": lp})
    return {**top[0], "top_logprobs": top[:top_n]}


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A unit vector: a bag of hashed words (so inputs sharing words are alike, handy for
    semantic-cache demos) plus a little of the exact input's hash."""
    words = [str(t) for t in item] if isinstance(item, list) else re.findall(r"\w+", item.lower())
    vector = [0.0] * dimensions
    for weight, key in [(1.0, ("w", w)) for w in words or [str(item)]] + [(0.25, ("x", item))]:
        rng = random.Random(stable_hash(key, dimensions))
        for i in range(dimensions):
            vector[i] += weight * rng.gauss(0.0, 1.0)
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    # Rounded through float32, so the float and base64 encodings carry the same values.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in vector))
    return list(struct.unpack(f"<{dimensions}f", packed))


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str

    def chat(self, arguments: str | None = None) -> JSONDict:
        """As a chat completion carries it (with other ``arguments``, for a stream's start)."""
        function = {
            "name": self.name,
            "arguments": self.arguments if arguments is None else arguments,
        }
        return {"id": self.call_id, "type": "function", "function": function}


@dataclass
class Plan:
    """One answer (a chat choice or a response) and the pieces it streams in."""

    seed: int
    prompt_tokens: int
    reasoning_tokens: int
    pieces: list[str]  # of the content, the refusal or the tool call's arguments
    content: str | None = None
    refusal: str | None = None
    tool_call: ToolCall | None = None

    @property
    def finish_reason(self) -> str:
        return "stop" if self.tool_call is None else "tool_calls"

    @property
    def completion_tokens(self) -> int:  # a tool call costs 2 more: its name and the call
        return len(self.pieces) + (self.tool_call is not None) * 2 + self.reasoning_tokens


def _plan(body: JSONDict, seed: int, prompt: Any, tool: Any, fmt: Any, *length_keys: str) -> Plan:
    """The answer, in order of precedence: refusal, tool call (``tool``: the function to call),
    JSON schema, text or JSON text."""
    reasoning = 16 + (seed >> 8) % 48 if str(body["model"]).startswith(REASONING_MODELS) else 0
    answer = functools.partial(Plan, seed, prompt_tokens(prompt, body.get("tools")), reasoning)
    if any(REFUSAL_TRIGGER in text for text in texts(prompt)):
        return answer(split_pieces(REFUSAL), refusal=REFUSAL)
    if tool is not None:
        arguments = json.dumps(schema_example(tool.get("parameters") or {}))
        call = ToolCall(f"call_{seed:016x}", str(tool.get("name", "tool")), arguments)
        return answer(split_pieces(arguments), tool_call=call)
    fmt = fmt if isinstance(fmt, dict) else {}
    if fmt.get("type") == "json_schema":
        content = json.dumps(schema_example(fmt.get("schema") or {}))
        return answer(split_pieces(content), content=content)
    lengths = [body.get(key) for key in length_keys] + [8 + seed % 17]
    rng = random.Random(seed)
    words = [
        rng.choice(WORDS) for _ in range(min(next(n for n in lengths if n), MAX_OUTPUT_TOKENS))
    ]
    # Word tokens: the answer to max_tokens=n is a prefix of the answer to n + k.
    tokens = [words[0].capitalize()] + [" " + word for word in words[1:]]
    tokens[-1] += "."
    if fmt.get("type") == "json_object":
        content = json.dumps({"answer": "".join(tokens)})
        return answer(split_pieces(content), content=content)
    return answer(tokens, content="".join(tokens))


def _pick_tool(tools: list[JSONDict], choice: Any, after_result: bool) -> Any:
    """The function tool (``{"type", "name", "parameters"}``) to call, or None for text."""
    if not tools or choice == "none" or (after_result and choice in ("auto", None)):
        return None  # after a tool result the model answers in prose, unless a tool is forced
    named = choice.get("name") if isinstance(choice, dict) else None
    tool = next((t for t in tools if named is not None and t.get("name") == named), None)
    return tool or next((t for t in tools if t.get("type") == "function"), None)


def plan_chat(body: JSONDict, index: int) -> Plan:
    """Choice ``index`` of a chat completion."""
    messages = body["messages"]
    tools = [
        {"type": t.get("type", "function"), **(t.get("function") or {})}
        for t in body.get("tools") or []
        if isinstance(t, dict)
    ]
    choice = body.get("tool_choice", "auto")
    choice = choice.get("function") if isinstance(choice, dict) else choice
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        fmt = {"type": "json_schema", **(fmt.get("json_schema") or {})}
    seed = stable_hash("chat", body["model"], messages, index)
    tool = _pick_tool(tools, choice, last.get("role") == "tool")
    return _plan(body, seed, messages, tool, fmt, "max_completion_tokens", "max_tokens")


def plan_response(body: JSONDict) -> Plan:
    """The answer to a Responses request."""
    raw, instructions = body.get("input"), body.get("instructions")
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    last = items[-1] if items and isinstance(items[-1], dict) else {}
    seed = stable_hash("responses", body["model"], instructions, items)
    tool = _pick_tool(
        tools, body.get("tool_choice", "auto"), last.get("type") == "function_call_output"
    )
    fmt = (body.get("text") or {}).get("format")
    return _plan(body, seed, [items, instructions], tool, fmt, "max_output_tokens")
