"""Rate limits' sliding windows on Redis: two Lua scripts, each on one key (one slot).

A window is a sorted set: one member per call, ``<call id>:<cost>``, scored by when it was
taken in microseconds of the server's clock (``TIME``), so every process of every machine
goes by one clock. A take drops what slid out, sums what is left and adds the call if it
fits, in one script: no two processes can both take the last slot. Its reply is 0 (taken)
or the microseconds until enough has slid out. A settle replaces a call's cost (a token
estimate by the real usage), keeping its time. The key expires a window after its last take.

Scores are written with ``%.0f``: Lua 5.1 turns numbers into text with 14 significant digits,
which would round microseconds since 1970 (16 digits) to hundreds.

Copied in llmcache_upstash/_windows.py, which sends the same scripts over REST (adapters never
import each other): change both together.
"""

from __future__ import annotations

import hashlib

__all__ = ["SETTLE_SCRIPT", "TAKE_SCRIPT", "settle_args", "sha1", "take_args"]

TAKE_SCRIPT = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window))
local taken = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local total = 0
for i = 1, #taken, 2 do
    total = total + (tonumber(string.match(taken[i], ':([^:]*)$')) or 0)
end
if total + cost <= limit then
    redis.call('ZADD', key, string.format('%.0f', now), ARGV[4] .. ':' .. ARGV[3])
    redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
    return 0
end
local needed = total + cost - limit
for i = 1, #taken, 2 do
    needed = needed - (tonumber(string.match(taken[i], ':([^:]*)$')) or 0)
    if needed <= 0 then
        return math.max(tonumber(taken[i + 1]) + window - now, 1)
    end
end
return window
"""

SETTLE_SCRIPT = """
local prefix = ARGV[1] .. ':'
local taken = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #taken, 2 do
    if string.sub(taken[i], 1, #prefix) == prefix then
        redis.call('ZREM', KEYS[1], taken[i])
        if ARGV[2] ~= '' then
            redis.call('ZADD', KEYS[1], taken[i + 1], prefix .. ARGV[2])
        end
        return 1
    end
end
return 0
"""


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def take_args(window_s: float, limit: float, cost: float, member: str) -> list[str]:
    """TAKE_SCRIPT's ARGV: the window in microseconds, the limit, the cost, the call's id."""
    return [str(max(1, round(window_s * 1_000_000))), _number(limit), _number(cost), member]


def settle_args(member: str, cost: float | None) -> list[str]:
    """SETTLE_SCRIPT's ARGV: the call's id and its new cost ('' removes it)."""
    return [member, "" if cost is None else _number(cost)]
