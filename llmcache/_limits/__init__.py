"""Rate limits on real calls (`Cache(limits=...)`): parsed in `_spec`, kept in sliding
windows (`_window` in this process; the shared tier's through `Backend.window_take`), and
checked on the miss path by `LimitCheck` (`_check`)."""

from __future__ import annotations

from ._check import LimitCheck
from ._spec import Limit, parse_limits

__all__ = ["Limit", "LimitCheck", "parse_limits"]
