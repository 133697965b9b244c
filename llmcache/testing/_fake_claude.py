"""The deterministic "Claude" behind ``FakeAnthropicServer``: what it answers, without HTTP.

Seeded like ``_fake_model`` by a stable hash of the request, its ``cache_control`` markers left
out: the same request always gets the same blocks (thinking, then text or a tool use), and the
same prompt the same token estimate, which ``count_tokens`` reports too.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
from dataclasses import dataclass, field
from typing import Any

from llmcache.testing import _fake_model as base

JSONDict = dict[str, Any]

MIN_THINKING_BUDGET = 1024  # the API rejects a smaller ``thinking.budget_tokens``
FRAMING_TOKENS = 4  # the turn markers around a prompt: never cached, so input_tokens > 0
LOOKBACK_BLOCKS = 20  # how far before a breakpoint the API looks for a cached prefix
PROMPT_CACHE_SIZE = 256  # prefixes a server remembers; the oldest are forgotten first
_DELTAS = {  # a block's type -> its delta's type and the field the delta carries
    "thinking": ("thinking_delta", "thinking"),
    "text": ("text_delta", "text"),
    "tool_use": ("input_json_delta", "partial_json"),
}


@dataclass
class Prompt:
    """The prompt in the order the API caches it (tools, system, messages), one segment per
    tool or content block, and the segments that carry a ``cache_control`` breakpoint."""

    segments: list[Any] = field(default_factory=list)  # without their cache_control
    tokens: list[int] = field(default_factory=list)  # each segment's estimate
    breakpoints: list[tuple[int, str]] = field(default_factory=list)  # (segment, its ttl)

    @property
    def total(self) -> int:
        return sum(self.tokens) + FRAMING_TOKENS

    def add(self, segment: JSONDict, tokens: int) -> None:
        marker = segment.get("cache_control")
        if isinstance(marker, dict):
            self.breakpoints.append((len(self.segments), str(marker.get("ttl") or "5m")))
        self.segments.append({k: v for k, v in segment.items() if k != "cache_control"})
        self.tokens.append(tokens)


def _blocks(role: str, content: Any) -> list[JSONDict]:
    """A message's (or the system prompt's) content as blocks, each tagged with its role."""
    if content is None:
        return []
    blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
    return [{"role": role, **block} for block in blocks]


def read_prompt(body: JSONDict) -> Prompt:
    prompt = Prompt()
    for tool in body.get("tools") or []:
        prompt.add(tool, base.estimate_tokens(json.dumps(tool)))
    blocks = _blocks("system", body.get("system"))
    for message in body["messages"]:
        blocks += _blocks(message["role"], message.get("content"))
    for block in blocks:
        prompt.add(block, base.estimate_tokens("\n".join(base.texts(block))))
    top = body.get("cache_control")  # automatic caching: a breakpoint on the last block
    if isinstance(top, dict) and prompt.segments:
        prompt.breakpoints.append((len(prompt.segments) - 1, str(top.get("ttl") or "5m")))
    return prompt


def cache_usage(prompt: Prompt, model: str, cached: dict[int, None]) -> JSONDict:
    """The input side of ``usage``, Anthropic's way: the longest prefix cached before that ends
    at a breakpoint or up to ``LOOKBACK_BLOCKS`` blocks before one is read, the rest up to the
    last breakpoint written, and ``input_tokens`` is what follows (it excludes both). The
    prefixes that end at breakpoints are in ``cached`` after."""
    ends = list(itertools.accumulate(prompt.tokens))
    marks = [index for index, _ in prompt.breakpoints]
    looked = {j for i in marks for j in range(max(0, i - LOOKBACK_BLOCKS), i + 1)}
    key = {j: base.stable_hash(model, prompt.segments[: j + 1]) for j in looked}
    read = max((ends[j] for j in looked if key[j] in cached), default=0)
    written = ends[marks[-1]] - read if marks else 0
    for i in marks:
        cached.pop(key[i], None)  # re-inserted last: the most recently used is kept longest
        cached[key[i]] = None
    while len(cached) > PROMPT_CACHE_SIZE:
        del cached[next(iter(cached))]
    # What is written is split by the breakpoint that ends each stretch: the stretch up to a
    # "1h" breakpoint is kept one hour, the one up to a "5m" breakpoint five minutes.
    by_ttl = {"5m": 0, "1h": 0}
    start = read
    for index, ttl in prompt.breakpoints:
        end = ends[index]
        if end > start:
            by_ttl["1h" if ttl == "1h" else "5m"] += end - start
            start = end
    return {
        "input_tokens": prompt.total - read - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": by_ttl["5m"],
            "ephemeral_1h_input_tokens": by_ttl["1h"],
        },
    }


@dataclass
class Block:
    """One content block of the answer and the pieces it streams in."""

    type: str  # "thinking", "text" or "tool_use"
    pieces: list[str]  # of the thinking, the text or the tool input's JSON
    tokens: int
    fields: JSONDict = field(default_factory=dict)  # a thinking's signature; a tool's id, name

    def content(self, *, empty: bool = False) -> JSONDict:
        """The whole block, or (``empty``) the one a stream's ``content_block_start`` carries."""
        text = "" if empty else "".join(self.pieces)
        if self.type == "tool_use":
            return {"type": "tool_use", **self.fields, "input": {} if empty else json.loads(text)}
        if self.type == "thinking":
            signature = "" if empty else self.fields["signature"]
            return {"type": "thinking", "thinking": text, "signature": signature}
        return {"type": "text", "text": text}

    def deltas(self) -> list[JSONDict]:
        kind, key = _DELTAS[self.type]
        deltas = [{"type": kind, key: piece} for piece in self.pieces]
        if self.type == "thinking":  # the signature comes last, in a delta of its own
            deltas.append({"type": "signature_delta", "signature": self.fields["signature"]})
        return deltas


@dataclass
class Answer:
    blocks: list[Block]
    stop_reason: str
    stop_sequence: str | None = None

    @property
    def output_tokens(self) -> int:
        return sum(block.tokens for block in self.blocks)


def _sentence(rng: random.Random, length: int) -> list[str]:
    """Word tokens: a prefix of a longer sentence, but for the closing period."""
    words = [rng.choice(base.WORDS) for _ in range(length)]
    tokens = [words[0].capitalize()] + [" " + word for word in words[1:]]
    tokens[-1] += "."
    return tokens


def _thinks(body: JSONDict) -> bool:
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or not MIN_THINKING_BUDGET <= budget < body["max_tokens"]:
            raise ValueError(
                f"thinking.budget_tokens: must be >= {MIN_THINKING_BUDGET} and less than max_tokens"
            )
    return thinking.get("type") in ("enabled", "adaptive")


def _pick_tool(body: JSONDict) -> JSONDict | None:
    """The tool to use: the one ``tool_choice`` names, the first for ``any``, else (``auto``)
    the first one the last user turn mentions by name, unless that turn is a tool result."""
    tools = [tool for tool in body.get("tools") or [] if isinstance(tool, dict)]
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None
    if choice["type"] == "tool":
        named = [tool for tool in tools if tool.get("name") == choice.get("name")]
        if not named:
            raise ValueError(f"tool_choice.name: no tool named {choice.get('name')!r}")
        return named[0]
    if choice["type"] == "any":
        return tools[0]
    last = body["messages"][-1]
    content = last.get("content") if last.get("role") == "user" else None
    if isinstance(content, list) and any(block.get("type") == "tool_result" for block in content):
        return None  # after a tool result, Claude answers in prose
    asked = "\n".join(base.texts(content))
    return next((tool for tool in tools if str(tool.get("name")) in asked), None)


def _text(seed: int, rng: random.Random, budget: int, stops: list[str]) -> Answer:
    """A text answer, cut at the first stop sequence or at ``budget`` tokens, if it reaches
    either; a stop sequence counts as a token of its own."""
    tokens = _sentence(rng, 8 + seed % 17)
    text = "".join(tokens)
    if hits := sorted((text.find(stop), stop) for stop in stops if stop and stop in text):
        at, stop = hits[0]
        kept = base.split_pieces(text[:at])
        if len(kept) + 1 <= budget:
            return Answer([Block("text", kept, len(kept) + 1)], "stop_sequence", stop)
    if len(tokens) > budget:
        return Answer([Block("text", tokens[:budget], budget)] if budget else [], "max_tokens")
    return Answer([Block("text", tokens, len(tokens))], "end_turn")


def plan_message(body: JSONDict, prompt: Prompt) -> Answer:
    """The answer to a Messages request: a thinking block if ``thinking`` is on, then a tool
    use (see ``_pick_tool``) or text, within ``max_tokens`` (thinking counts toward it)."""
    seed = base.stable_hash("messages", body["model"], prompt.segments)
    rng, budget, thinking = random.Random(seed), int(body["max_tokens"]), []
    if _thinks(body):
        thought = _sentence(rng, min(6 + seed % 11, budget))
        digest = hashlib.sha256(f"{seed}:{''.join(thought)}".encode()).digest()
        signature = base64.b64encode(digest * 3).decode()
        thinking = [Block("thinking", thought, len(thought), {"signature": signature})]
        budget -= len(thought)
    tool = _pick_tool(body)
    if tool is None:
        answer = _text(seed, rng, budget, list(body.get("stop_sequences") or []))
        return Answer(thinking + answer.blocks, answer.stop_reason, answer.stop_sequence)
    pieces = base.split_pieces(json.dumps(base.schema_example(tool.get("input_schema") or {})))
    if len(pieces) + 2 > budget:  # a tool use costs its name and the call too
        return Answer(thinking, "max_tokens")
    call = {"id": f"toolu_{seed:016x}", "name": str(tool["name"])}
    return Answer([*thinking, Block("tool_use", pieces, len(pieces) + 2, call)], "tool_use")
