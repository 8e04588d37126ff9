"""Range rules of config values, as the sections write them: ``(key, ok(value), rule)``.

``check_rules`` raises one ``PkmodelError`` sentence naming the first bad key, its value and the
rule it breaks; the builders below give the usual rules (a finite number in a range) their
usual sentences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from pkmodel.common.errors import PkmodelError

Rule = tuple[str, Callable[[Any], bool], str]


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def is_choice(value: Any, choices: Sequence[Any]) -> bool:
    """``value`` is one of a Literal's ``choices``, of the same type too: false is not 0,
    90.0 is not 90."""
    return any(type(value) is type(c) and value == c for c in choices)


def probability(key: str) -> Rule:
    return (key, lambda v: finite(v) and 0.0 <= v <= 1.0, "must be in [0, 1]")


def at_least(key: str, low: float, text: str | None = None) -> Rule:
    return (key, lambda v: finite(v) and v >= low, text or f"must be >= {low:g}")


def positive(key: str, text: str = "must be positive") -> Rule:
    return (key, lambda v: finite(v) and v > 0, text)


def positive_odd(key: str) -> Rule:
    """A window side in pixels: 1, 3, 5, ..."""
    return (key, lambda v: v >= 1 and v % 2 == 1, "must be a positive odd number")


def in_range(key: str, low: float, high: float, text: str) -> Rule:
    """``low <= value <= high``."""
    return (key, lambda v: finite(v) and low <= v <= high, text)


class RuleError(PkmodelError):
    """A config value that breaks its section's rule; ``keys``: the key broken, then the other
    keys the rule's text names (``section.key``), so that a caller who knows where each value
    came from can say so (:meth:`pkmodel.config.loader.Config.explain`)."""

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        super().__init__(message)
        self.keys = keys


def check_rules(section: str, values: Any, rules: Sequence[Rule]) -> None:
    """Raise RuleError (a PkmodelError) for the first rule that ``values.<key>`` breaks."""
    for key, ok, rule in rules:
        value = getattr(values, key)
        if not ok(value):
            named = re.findall(r"\b[a-z]+\.[a-z_0-9]+\b", rule)
            keys = tuple(dict.fromkeys([f"{section}.{key}", *named]))
            raise RuleError(f"{section}.{key} = {value!r} {rule}", keys)
