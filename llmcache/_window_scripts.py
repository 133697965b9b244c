"""Rate limits' sliding windows for backends that speak Redis: two Lua scripts, each on one
key (one slot), in the public extension API (`llmcache.ext.window_scripts`).

A window is a sorted set: one member per call, ``<call id>:<cost>``, scored by when it was
taken in microseconds of the server's clock (``TIME``), so every process of every machine
goes by one clock; and the member ``#``, scored by minus the costs in the window (a running
total: scores of calls are positive, its own never is). A take drops what slid out (and
its cost from the total) and adds the call if the total stays within the limit, in one
script: no two processes can both take the last slot. Its reply is 0 (taken) or the
microseconds until enough has slid out. So a granted take costs O(log n) plus what slid
out, whatever the window holds; only a refused one walks the oldest calls. A settle
replaces a call's cost (a token estimate by the real usage), keeping its time. The key
expires a window after its last take.

Scores are written with ``%.0f``: Lua 5.1 turns numbers into text with 14 significant digits,
which would round microseconds since 1970 (16 digits) to hundreds.

The Redis adapter (standalone and Cluster) runs them with EVALSHA; the Upstash adapter sends
the same scripts by REST ``EVAL``. They live here, not in either adapter, because adapters
never import each other; a third-party backend for a Redis-compatible store can use them too.
"""

from __future__ import annotations

import hashlib

__all__ = ["SETTLE_SCRIPT", "TAKE_SCRIPT", "settle_args", "sha1", "take_args"]

# Where a cost sits in a member's name: after its last ':'.
_COST = "(tonumber(string.match({}, ':([^:]*)$')) or 0)"

TAKE_SCRIPT = """
local key = KEYS[1]
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local since = string.format('%.0f', now - window)
local gone = redis.call('ZRANGEBYSCORE', key, '(0', since)
if #gone > 0 then
    local freed = 0
    for i = 1, #gone do
        freed = freed + COST(gone[i])
    end
    redis.call('ZREMRANGEBYSCORE', key, '(0', since)
    if redis.call('ZCARD', key) <= 1 then
        redis.call('ZADD', key, 0, '#')  -- nothing left: no rounding carried over
    else
        redis.call('ZINCRBY', key, freed, '#')
    end
end
local total = -(tonumber(redis.call('ZSCORE', key, '#')) or 0)
if total + cost <= limit then
    redis.call('ZADD', key, string.format('%.0f', now), ARGV[4] .. ':' .. ARGV[3])
    redis.call('ZADD', key, string.format('%.17g', -(total + cost)), '#')
    redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1)
    return 0
end
local needed = total + cost - limit
local offset = 0
while true do
    local taken = redis.call(
        'ZRANGEBYSCORE', key, '(0', '+inf', 'WITHSCORES', 'LIMIT', offset, 64)
    if #taken == 0 then
        return window
    end
    for i = 1, #taken, 2 do
        needed = needed - COST(taken[i])
        if needed <= 0 then
            return math.max(tonumber(taken[i + 1]) + window - now, 1)
        end
    end
    offset = offset + 64
end
""".replace("COST(gone[i])", _COST.format("gone[i]")).replace(
    "COST(taken[i])", _COST.format("taken[i]")
)

SETTLE_SCRIPT = """
local old = ARGV[1] .. ':' .. ARGV[2]
local at = redis.call('ZSCORE', KEYS[1], old)
if not at then
    return 0
end
redis.call('ZREM', KEYS[1], old)
local change = -tonumber(ARGV[2])
if ARGV[3] ~= '' then
    redis.call('ZADD', KEYS[1], at, ARGV[1] .. ':' .. ARGV[3])
    change = change + tonumber(ARGV[3])
end
redis.call('ZINCRBY', KEYS[1], -change, '#')
return 1
"""


def sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def take_args(window_s: float, limit: float, cost: float, member: str) -> list[str]:
    """TAKE_SCRIPT's ARGV: the window in microseconds, the limit, the cost, the call's id."""
    return [str(max(1, round(window_s * 1_000_000))), _number(limit), _number(cost), member]


def settle_args(member: str, taken: float, cost: float | None) -> list[str]:
    """SETTLE_SCRIPT's ARGV: the call's id, what it took, its new cost ('' removes it)."""
    return [member, _number(taken), "" if cost is None else _number(cost)]
