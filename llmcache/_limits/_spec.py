"""Rate limits as the user writes them (`Cache(limits=...)`), parsed once into `Rules`.

Two forms, mixed freely::

    {"gpt-4o-mini": "500/min; 200000 tokens/min", "*": "60/min"}
    {"gpt-4o-mini": llmcache.Limit(requests=500, tokens=200_000, per="min")}

A text limit is ``<amount> [requests|tokens]/[<n>]<unit>`` (``100/10s``: 100 requests per 10
seconds), several separated by ``;``. Keys:

* a model name: the limits of calls to that model;
* ``"*"``: the limits of each model not named (each model its own window), and of calls that
  name no model (one window together);
* a namespace mapped to such a dict (``{"research": {"*": "10/min"}}``): limits of that
  namespace's calls, enforced in addition to the workspace's.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .._errors import ConfigError

__all__ = ["ANY_MODEL", "Limit", "Rate", "Rules", "parse_limits", "parse_rates"]

ANY_MODEL = "*"
EXAMPLE = (
    'limits={"gpt-4o-mini": "500/min; 200000 tokens/min", "*": "60/min"} or '
    '{"gpt-4o-mini": llmcache.Limit(requests=500, tokens=200_000, per="min")}'
)
UNITS: dict[str, float] = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
}
_KINDS: dict[str, Literal["requests", "tokens"]] = {
    **dict.fromkeys(("", "request", "requests", "req", "reqs", "calls", "call"), "requests"),
    **dict.fromkeys(("token", "tokens", "tok"), "tokens"),
}
# "500/min", "200_000 tokens / 10 s", "5 requests/1.5min"
_TEXT = re.compile(
    r"\s*(?P<amount>[0-9][0-9_]*)\s*(?P<kind>[A-Za-z]*)\s*/\s*"
    r"(?P<count>[0-9]*\.?[0-9]+)?\s*(?P<unit>[A-Za-z]+)\s*"
)


@dataclasses.dataclass(frozen=True)
class Rate:
    """One limit: at most `amount` requests (or tokens) in any `window_s` seconds."""

    amount: int
    kind: Literal["requests", "tokens"]
    window_s: float
    text: str  # as the user wrote it (normalised), for messages: "500/min"


@dataclasses.dataclass(frozen=True)
class Limit:
    """A rate limit in typed form: ``Limit(requests=500, tokens=200_000, per="min")``.

    `per` is a unit ("s", "min", "hour", "day"), a window such as "10s", or seconds.
    """

    requests: int | None = None
    tokens: int | None = None
    per: str | float = "min"

    def __post_init__(self) -> None:
        self.rates()  # a bad limit fails where it is written

    def rates(self) -> list[Rate]:
        for name, value in (("requests", self.requests), ("tokens", self.tokens)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(
                    f"Limit({name}={value!r}): {name} must be a whole number, 1 or more, e.g. "
                    f'Limit(requests=500, tokens=200_000, per="min")'
                )
        if self.requests is None and self.tokens is None:
            raise ConfigError(
                'Limit() needs requests= and/or tokens=, e.g. Limit(requests=500, per="min")'
            )
        window, per_text = _window(self.per, f"Limit(per={self.per!r})")
        rates = []
        if self.requests is not None:
            rates.append(Rate(self.requests, "requests", window, f"{self.requests}/{per_text}"))
        if self.tokens is not None:
            rates.append(Rate(self.tokens, "tokens", window, f"{self.tokens} tokens/{per_text}"))
        return rates


def _window(per: Any, where: str) -> tuple[float, str]:
    """(seconds, text) of a window: "min", "10s", "1.5 hours", or a number of seconds."""
    if isinstance(per, int | float) and not isinstance(per, bool):
        if not (math.isfinite(per) and per > 0):
            raise ConfigError(f"{where}: the window must be more than 0 seconds, e.g. per=60")
        return float(per), f"{per:g}s"
    if isinstance(per, str):
        found = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)?\s*([A-Za-z]+)\s*", per)
        if found is not None and found.group(2).lower() in UNITS:
            count = float(found.group(1)) if found.group(1) else 1.0
            if count > 0:
                unit = found.group(2).lower()
                text = unit if found.group(1) is None else f"{count:g}{unit}"
                return count * UNITS[unit], text
    raise ConfigError(
        f"{where}: unknown window {per!r}; use s, min, hour or day, optionally with a count "
        f'("10s", "5min"), or a number of seconds'
    )


def parse_rates(spec: Any, where: str) -> tuple[Rate, ...]:
    """The rates of one key's value: text (";"-separated), a `Limit`, or a list of those."""
    if isinstance(spec, Limit):
        return tuple(spec.rates())
    if isinstance(spec, str):
        parts = [part for part in spec.split(";") if part.strip()]
        if not parts:
            raise ConfigError(f"{where} is empty; write e.g. {EXAMPLE}")
        return tuple(_parse_text(part, where) for part in parts)
    if isinstance(spec, Sequence) and spec and not isinstance(spec, bytes | bytearray):
        return tuple(rate for item in spec for rate in parse_rates(item, where))
    raise ConfigError(
        f"{where} must be a text such as '500/min; 200000 tokens/min', a llmcache.Limit or a "
        f"list of those; got {spec!r}. E.g. {EXAMPLE}"
    )


def _parse_text(part: str, where: str) -> Rate:
    found = _TEXT.fullmatch(part)
    kind = _KINDS.get(found.group("kind").lower()) if found is not None else None
    if found is None or kind is None:
        raise ConfigError(
            f"{where}: cannot read the limit {part.strip()!r}; write "
            f"'<number>/<window>' for requests or '<number> tokens/<window>', windows "
            f"s, min, hour or day ('100/10s' too), several separated by ';': "
            f"'500/min; 200000 tokens/min'"
        )
    amount = int(found.group("amount").replace("_", ""))
    if amount < 1:
        raise ConfigError(f"{where}: the limit {part.strip()!r} allows nothing; use 1 or more")
    count = found.group("count") or ""
    window, per_text = _window(f"{count}{found.group('unit')}", f"{where}: {part.strip()!r}")
    text = f"{amount}/{per_text}" if kind == "requests" else f"{amount} tokens/{per_text}"
    return Rate(amount, kind, window, text)


#: {(namespace or None for the workspace, model or "*"): its rates}
Rules = dict[tuple[str | None, str], tuple[Rate, ...]]


def parse_limits(spec: Any) -> Rules:
    """`Cache(limits=...)` as `Rules`; a ConfigError that names the bad part otherwise."""
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(f"limits must be a dict of model names to limits, e.g. {EXAMPLE}")
    rules: Rules = {}
    for key, value in spec.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"limits keys are model names, '*' or namespaces, not {key!r}")
        if isinstance(value, Mapping):
            from .._keys import check_name

            check_name("limits namespace", key)
            if not value:
                raise ConfigError(
                    f"limits[{key!r}] (a namespace) is empty; write e.g. "
                    f'{{{key!r}: {{"*": "10/min"}}}}'
                )
            for model, rates in value.items():
                if not isinstance(model, str) or not model.strip() or isinstance(rates, Mapping):
                    raise ConfigError(
                        f"limits[{key!r}] holds model names (or '*') and their limits, e.g. "
                        f'{{{key!r}: {{"gpt-4o": "10/min"}}}}; got {model!r}: {rates!r}'
                    )
                rules[(key, model)] = parse_rates(rates, f"limits[{key!r}][{model!r}]")
        else:
            rules[(None, key)] = parse_rates(value, f"limits[{key!r}]")
    return rules
